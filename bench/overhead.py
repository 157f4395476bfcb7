"""Epoch time of ``emb: full`` through the plugin vs plain RecBole, measured alternately in one run.

    python bench/overhead.py [--rounds 5] [--models BPR LightGCN]

Writes bench/results/overhead.json. The ratio is what the README quotes (target ≤ 1.1).
"""

import argparse
import statistics

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from recbole_lightemb import Config, swap_embeddings
from common import alternate, epoch_seconds, machine, save_results


def fresh_epoch(config, train_data, plugin):
    """Seconds of one training epoch of a freshly built model (with or without the swap)."""
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data.dataset)
    if plugin:
        swap_embeddings(model, train_data.dataset, config)
    return epoch_seconds(get_trainer(config["MODEL_TYPE"], config["model"])(config, model), train_data)


def measure(model_name, rounds):
    config = Config(model=model_name, dataset="ml-100k",
                    config_dict={"emb": "full", "show_progress": False, "state": "WARNING"})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    seconds = alternate({form: (lambda plugin=form == "plugin": fresh_epoch(config, train_data, plugin))
                         for form in ("plain", "plugin")}, rounds)
    plain, plugin = seconds["plain"], seconds["plugin"]
    ratio = statistics.median(plugin) / statistics.median(plain)
    print(f"{model_name:<10} plain {statistics.median(plain):.3f}s  plugin {statistics.median(plugin):.3f}s  "
          f"ratio {ratio:.3f}")
    return {"model": model_name, "plain_s": plain, "plugin_s": plugin, "ratio_of_medians": ratio}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["BPR", "LightGCN"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared 2-core machine: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(m, args.rounds) for m in args.models]
    out = {"benchmark": "overhead", "dataset": "ml-100k", "rounds": args.rounds, "results": rows,
           "machine": machine()}
    save_results("overhead", out)


if __name__ == "__main__":
    main()
