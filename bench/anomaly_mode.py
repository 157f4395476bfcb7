"""What RecBole's SINE import cost every run: epoch time with autograd's anomaly mode on (as every plugin run
trained before ``compat.import_sine_without_anomaly_mode``) against off (now), and proof the numbers are the same.

Each model is built through the plugin (``--emb`` tables at ``--budget``) twice from the same seed; one epoch of
each is timed in turn per round, anomaly mode switched on around the "on" trainer's epochs only. After the rounds
both have trained the same epochs on the same batches, so their weights must be identical.

    python bench/anomaly_mode.py [--rounds 3] [--models BPR LightGCN SASRec] [--emb uniform] [--budget 0.25]

Writes bench/results/anomaly_mode.json: median epoch seconds of each mode, their ratio, and whether the trained
weights are bit-identical.
"""

import argparse
import statistics

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from recbole_lightemb import Config, swap_embeddings
from common import alternate, epoch_seconds, machine, save_results


def trainer_for(model_name, emb, budget):
    config = Config(model=model_name, dataset="ml-100k", config_dict={
        "show_progress": False, "state": "WARNING", "emb": emb, "emb_budget": budget,
        **({"train_neg_sample_args": None} if model_name == "SASRec" else {})})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data.dataset)
    swap_embeddings(model, train_data.dataset, config)
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model), train_data


def seeded_epochs(trainer, data, anomaly):
    """A timer of ``trainer``'s next epoch; the n-th epoch is seeded by n, so both modes see the same batches."""
    done = []

    def epoch():
        init_seed(len(done), True)
        done.append(None)
        torch.autograd.set_detect_anomaly(anomaly)
        try:
            return epoch_seconds(trainer, data)
        finally:
            torch.autograd.set_detect_anomaly(False)

    return epoch


def measure(model_name, emb, budget, rounds):
    off, on = trainer_for(model_name, emb, budget), trainer_for(model_name, emb, budget)
    times = alternate({"off": seeded_epochs(*off, anomaly=False), "on": seeded_epochs(*on, anomaly=True)}, rounds)
    median = {mode: statistics.median(seconds) for mode, seconds in times.items()}
    same = all(torch.equal(a, b) for a, b in zip(off[0].model.state_dict().values(), on[0].model.state_dict().values()))
    print(f"{model_name:<9} {emb} {budget}: off {median['off']:.3f}s, on {median['on']:.3f}s, "
          f"on/off x{median['on'] / median['off']:.2f}; same weights after {rounds + 1} epochs each: {same}", flush=True)
    return {"model": model_name, "emb": emb, "budget": budget, "seconds": times, "median_s": median,
            "on_over_off": median["on"] / median["off"], "identical_weights": same}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["BPR", "LightGCN", "SASRec"])
    parser.add_argument("--emb", default="uniform")
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if torch.is_anomaly_enabled():
        raise SystemExit("anomaly mode is on at start: the plugin's fix did not hold")
    rows = [measure(m, args.emb, args.budget, args.rounds) for m in args.models]
    save_results("anomaly_mode", {"benchmark": "anomaly_mode", "dataset": "ml-100k", "rounds": args.rounds,
                                  "results": rows, "machine": machine()})


if __name__ == "__main__":
    main()
