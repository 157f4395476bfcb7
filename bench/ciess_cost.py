"""What one CIESS paper-mode search step costs at the paper's own sizes, and the search projected from it.

A step of the authors' procedure trains a fresh model for the authors' batch count (LightGCN 2 000, NGCF 3 000,
NeuMF 1 500, of 10 000 samples on ML-1M's training split, ``ciess_search_scale: 1``; the plugin's rule keeps
those counts at any size with batches of the same share of the rows, which is what is timed: the authors' own
Yelp2018 steps are longer), then scores every user's
validation quality. This times its three parts through the plugin's own CIESS trainer, widths to 128, one torch
thread, on seeded synthetic power-law graphs of the papers' sizes (ML-1M: 6 040 × 3 706 users × items with
500 104 training rows, the authors' split; Yelp2018: 31 668 × 38 048 with 806 k): seconds per batch (a few
batches after one warm-up), one quality evaluation and one fresh-model build. A search is 30 episodes × 11
steps. NeuMF's evaluation on the Yelp size (1.2 billion user–item pairs through its MLP) is not run: it is
scaled from the ML-1M size's by the number of pairs, and marked so.

    python bench/ciess_cost.py [--batches 5] [--models LightGCN NGCF NeuMF] [--sizes ml-1m yelp2018]

Writes bench/results/ciess_cost.json.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, init_seed

from common import machine, save_results
from synthetic import powerlaw_bipartite
from recbole_lightemb import Config, swap_embeddings
from recbole_lightemb.ciess.schedule import authors_step
from recbole_lightemb.ciess.trainer import CIESSTrainer, _endless
from recbole_lightemb.graph import install_adjacency

SIZES = {"ml-1m": (6_040, 3_706, 500_104), "yelp2018": (31_668, 38_048, 806_000)}
"""Users, items and training rows of each size (training rows are 80 % of the interactions generated)."""
STEPS = 30 * 11  # the authors' episodes × steps per episode
SCALED_EVALUATIONS = {("yelp2018", "NeuMF"): "ml-1m"}


def write_dataset(folder, name, users, items, train_rows, seed):
    """A RecBole atomic file of a seeded power-law graph with ``train_rows / 0.8`` interactions."""
    matrix = powerlaw_bipartite(users, items, round(train_rows / 0.8), seed).tocoo()
    path = Path(folder) / name
    path.mkdir(parents=True, exist_ok=True)
    lines = [f"{u + 1}\t{i + 1}" for u, i in zip(matrix.row, matrix.col)]
    (path / f"{name}.inter").write_text("user_id:token\titem_id:token\n" + "\n".join(lines) + "\n")


def measure(folder, name, model_name, batches):
    config = Config(model=model_name, dataset=name, config_dict={
        "data_path": folder, "checkpoint_dir": str(Path(folder) / "saved"), "show_progress": False,
        "state": "WARNING", "emb": "ciess", "emb_budget": 0.1, "ciess_mode": "paper", "ciess_search_scale": 1.0,
        "embedding_size": 128, "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"}})
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    model = get_model(model_name)(config, train_data.dataset)
    install_adjacency(model, config)
    swap_embeddings(model, train_data.dataset, config)
    trainer = CIESSTrainer(config, model)
    step_loader = trainer.step_loader(train_data)
    loader = _endless(step_loader)
    schedule = trainer._lr_schedule(1.0)
    trainer._train_epoch(trainer._batches(loader, 1, schedule), 0, show_progress=False)  # warm-up
    start = time.perf_counter()
    trainer._train_epoch(trainer._batches(loader, batches, schedule), 1, show_progress=False)
    per_batch = (time.perf_counter() - start) / batches
    start = time.perf_counter()
    trainer._fresh_model(train_data.dataset, 0)
    fresh = time.perf_counter() - start
    evaluation = None
    if (name, model_name) not in SCALED_EVALUATIONS:
        trainer.eval_collector.data_collect(train_data)
        interactions = train_data.dataset.inter_matrix(form="csr")
        start = time.perf_counter()
        trainer._qualities(valid_data, interactions, show_progress=False)
        evaluation = time.perf_counter() - start
    return {"size": name, "model": model_name, "train_rows": len(train_data.dataset),
            "step_batch_size": step_loader.config["train_batch_size"],
            "step_batches": authors_step(model_name)[0], "s_per_batch": per_batch, "fresh_model_s": fresh,
            "evaluation_s": evaluation}


def project(row, rows):
    """The step's and the search's seconds; an unmeasured evaluation scaled by user–item pairs."""
    evaluation, scaled = row["evaluation_s"], None
    if evaluation is None:
        source = next(r for r in rows if r["size"] == SCALED_EVALUATIONS[(row["size"], row["model"])]
                      and r["model"] == row["model"])
        (u, i, _), (su, si, _) = SIZES[row["size"]], SIZES[source["size"]]
        evaluation, scaled = source["evaluation_s"] * (u * i) / (su * si), source["size"]
    step = row["step_batches"] * row["s_per_batch"] + evaluation + row["fresh_model_s"]
    return {**row, "evaluation_s": evaluation, "evaluation_scaled_from": scaled, "step_s": step,
            "search_h": STEPS * step / 3600}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5, help="timed batches per model and size")
    parser.add_argument("--models", nargs="+", default=["LightGCN", "NGCF", "NeuMF"])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    sys.argv[1:] = []  # RecBole's Config reads the command line
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.sizes:
            write_dataset(folder, name, *SIZES[name], seed=args.seed)
            for model_name in args.models:
                rows.append(measure(folder, name, model_name, args.batches))
                print(rows[-1], flush=True)
    rows = [project(row, rows) for row in rows]
    for r in rows:
        scaled = f" (scaled from {r['evaluation_scaled_from']})" if r["evaluation_scaled_from"] else ""
        print(f"{r['size']:<9} {r['model']:<8} {r['step_batches']} x {r['s_per_batch']:.3f} s  eval "
              f"{r['evaluation_s']:.1f} s{scaled}  fresh model {r['fresh_model_s']:.1f} s  step "
              f"{r['step_s'] / 60:.1f} min  search ({STEPS} steps) {r['search_h']:.0f} h", flush=True)
    save_results("ciess_cost", {"benchmark": "ciess_cost", "steps": STEPS, "batches_timed": args.batches,
                                "sizes": SIZES, "results": rows, "seed": args.seed, "machine": machine()})


if __name__ == "__main__":
    main()
