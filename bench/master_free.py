"""Low-bit rows with float32 masters against master-free (``emb_master_free``): epoch time and bytes held.

The three forms are the same ``quant`` plan (4-bit rows at ``--budget`` of the bytes) swapped in through the plugin
and trained by RecBole's trainer, alternately, one epoch per round: float32 masters, master-free 4-bit codes, and
master-free 16-bit codes read on the 4-bit grid (``emb_master_free_bits: 16``). Quality is the frontier's question
(the ``*[master-free…]`` arms), not this script's.

    python bench/master_free.py [--rounds 5] [--models BPR LightGCN] [--budget 0.1]

Writes bench/results/master_free.json: median epoch seconds of each form and their ratio, and the bytes each
holds while training (``compression.training``: parameters, gradients, buffers, optimiser state; master-free
also its measured ``row_grad_bytes``) over full tables.
"""

import argparse
import statistics

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from recbole_lightemb import Config, swap_embeddings
from common import machine, save_results, time_and_memory

FORMS = {"masters": {}, "master-free": {"emb_master_free": True},
         "master-free, 16-bit codes": {"emb_master_free": True, "emb_master_free_bits": 16}}


def trainer_for(model_name, budget, keys):
    config = Config(model=model_name, dataset="ml-100k", config_dict={
        "show_progress": False, "state": "WARNING", "emb": "quant", "emb_budget": budget, **keys})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = get_model(config["model"])(config, train_data.dataset)
    swap_embeddings(model, train_data.dataset, config)
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model), train_data


def measure(model_name, budget, rounds):
    built = {form: trainer_for(model_name, budget, keys) for form, keys in FORMS.items()}
    times, memory = time_and_memory(built, rounds)
    median = {form: statistics.median(seconds) for form, seconds in times.items()}
    ratio = {form: median[form] / median["masters"] for form in FORMS if form != "masters"}
    print(f"{model_name:<9} budget {budget}: " + "  ".join(
        f"{form} {median[form]:.3f}s (x{ratio.get(form, 1.0):.2f}; holds {memory[form]['ratio']:.3f} of full, row "
        f"gradient {memory[form]['row_grad_bytes']} bytes)" for form in FORMS), flush=True)
    return {"model": model_name, "budget": budget, "seconds": times, "time_ratio_of_medians": ratio,
            "training_memory": memory}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["BPR", "LightGCN"])
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(m, args.budget, args.rounds) for m in args.models]
    save_results("master_free", {"benchmark": "master_free", "dataset": "ml-100k", "rounds": args.rounds,
                                 "results": rows, "machine": machine()})


if __name__ == "__main__":
    main()
