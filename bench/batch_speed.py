"""Epoch time with RecBole's own batch building and with the plugin's (:mod:`recbole_lightemb.batches`: the same
batches without per-sample Python loops), measured alternately in one run: the loader alone (an epoch of
batches, nothing trained) and a training epoch of BPR and LightGCN (``graph_csr: True``, as the frontier runs
it) at RecBole's batch 2048 and the CIESS authors' 10 000; whether each trains RecBole's weights bit for bit
(one seeded epoch).

    python bench/batch_speed.py [--rounds 3] [--data ../shared/datasets]   # ml-100k, and Beauty when there

Writes bench/results/batch_speed.json; the docs quote the ratios of median epoch times.
"""

import statistics
import time

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from common import alternate, machine, ml100k_and_beauty, save_results, timing_arguments
from recbole_lightemb import Config
from recbole_lightemb.batches import recbole_own
from recbole_lightemb.graph import install_adjacency

CASES = [("BPR", 2048), ("BPR", 10000), ("LightGCN", 2048)]


def fresh_trainer(config, train_data):
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data.dataset)
    install_adjacency(model, config)
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model)


def timed(own, work):
    """Seconds of ``work()`` with RecBole's own batch building (``own``) or the plugin's."""
    start = time.perf_counter()
    if own:
        with recbole_own():
            work()
    else:
        work()
    return time.perf_counter() - start


def one_epoch(config, train_data, own):
    """The weights after one seeded epoch (the same batches for both, unless the batch building differs)."""
    trainer = fresh_trainer(config, train_data)
    init_seed(config["seed"], config["reproducibility"])
    train_data.generator.manual_seed(config["seed"])
    timed(own, lambda: trainer._train_epoch(train_data, 0, show_progress=False))
    return trainer.model.state_dict()


def measure(name, dataset, extra, model, batch, rounds):
    config = Config(model=model, dataset=dataset, config_dict={
        "embedding_size": 64, "n_layers": 2, "train_batch_size": batch, "graph_csr": model == "LightGCN",
        "show_progress": False, "state": "WARNING", **extra})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    trainers = {own: fresh_trainer(config, train_data) for own in (True, False)}
    timers = {}
    for own, label in ((True, "recbole"), (False, "plugin")):
        timers[f"loader {label}"] = lambda o=own: timed(o, lambda: [None for _ in train_data])
        timers[f"epoch {label}"] = lambda o=own: timed(
            o, lambda: trainers[o]._train_epoch(train_data, 0, show_progress=False))
    seconds = alternate(timers, rounds)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    ratios = {"loader": median["loader recbole"] / median["loader plugin"],
              "epoch": median["epoch recbole"] / median["epoch plugin"]}
    recbole, plugin = one_epoch(config, train_data, True), one_epoch(config, train_data, False)
    same = recbole.keys() == plugin.keys() and all(torch.equal(recbole[k], plugin[k]) for k in recbole)
    print(f"{name:<8} {model:<8} batch {batch:<5} " + "  ".join(f"{k} {m:.2f}s" for k, m in median.items()) +
          f"  |  loader x{ratios['loader']:.2f}  epoch x{ratios['epoch']:.2f}  |  RecBole's weights: {same}",
          flush=True)
    return {"dataset": name, "model": model, "batch": batch, "seconds": seconds, "median_s": median,
            "speedup_of_medians": ratios, "same_weights_as_recbole": same}


def main():
    args = timing_arguments(__doc__, rounds=3, data=True)
    rows = [measure(name, dataset, extra, model, batch, args.rounds)
            for name, dataset, extra in ml100k_and_beauty(args.data) for model, batch in CASES]
    save_results("batch_speed", {"benchmark": "batch_speed", "embedding_size": 64, "rounds": args.rounds,
                                 "results": rows, "machine": machine()})


if __name__ == "__main__":
    main()
