"""LightGCN's epoch time with its adjacency in COO (RecBole's) and CSR form (``graph_csr: True``),
measured alternately in one run, and the largest difference between the two forms' propagated tables.

    python bench/graph_csr.py [--rounds 3] [--data ../shared/datasets]   # ml-100k, and Beauty when there

Writes bench/results/graph_csr.json; the README quotes the ratio of median epoch times.
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from common import alternate, epoch_seconds, machine, save_results
from recbole_lightemb import Config
from recbole_lightemb.graph import use_csr_adjacency

BEAUTY = {"dataset": "beauty", "benchmark_filename": ["train", "valid", "test"],
          "load_col": {"inter": ["user_id", "item_id"]}}


def fresh_epoch(config, train_data, csr):
    """Seconds of one training epoch of a freshly built LightGCN, its adjacency in CSR form or not."""
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("LightGCN")(config, train_data.dataset)
    use_csr_adjacency(model, {"graph_csr": csr})
    return epoch_seconds(get_trainer(config["MODEL_TYPE"], "LightGCN")(config, model), train_data)


def largest_difference(config, train_data):
    """The largest absolute difference between the COO and CSR propagations of the same tables."""
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("LightGCN")(config, train_data.dataset)
    with torch.no_grad():
        coo = torch.cat(model.forward())
        use_csr_adjacency(model, {"graph_csr": True})
        return float((coo - torch.cat(model.forward())).abs().max())


def measure(name, dataset, extra, rounds):
    config = Config(model="LightGCN", dataset=dataset, config_dict={
        "n_layers": 2, "embedding_size": 64, "train_batch_size": 2048, "show_progress": False, "state": "WARNING",
        **extra})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    seconds = alternate({form: (lambda csr=form == "csr": fresh_epoch(config, train_data, csr))
                         for form in ("coo", "csr")}, rounds)
    coo, csr = seconds["coo"], seconds["csr"]
    ratio = statistics.median(coo) / statistics.median(csr)
    diff = largest_difference(config, train_data)
    print(f"{name:<8} COO {statistics.median(coo):.2f}s  CSR {statistics.median(csr):.2f}s  speed-up {ratio:.2f}x  "
          f"largest difference {diff:.1e}", flush=True)
    return {"dataset": name, "coo_s": coo, "csr_s": csr, "speedup_of_medians": ratio, "largest_difference": diff}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared 2-core machine: 1)")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"),
                        help="folder holding beauty/ (skipped when absent)")
    args = parser.parse_args()
    sys.argv[1:] = []  # RecBole's Config reads the command line
    torch.set_num_threads(args.threads)
    rows = [measure("ml-100k", "ml-100k", {}, args.rounds)]
    if (Path(args.data) / "beauty" / "beauty.train.inter").is_file():
        rows.append(measure("beauty", "beauty", {**BEAUTY, "data_path": args.data}, args.rounds))
    save_results("graph_csr", {
        "benchmark": "graph_csr", "model": "LightGCN (2 layers, d = 64, batch 2048)", "rounds": args.rounds,
        "results": rows, "machine": machine()})


if __name__ == "__main__":
    main()
