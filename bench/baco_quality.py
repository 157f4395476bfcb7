"""LightGCN on Amazon-Beauty: full vs baco vs uniform vs hash vs qr at one float budget.

    python bench/baco_quality.py [--budget 0.25] [--epochs 40] [--beauty ../shared/datasets]
    python bench/baco_quality.py --arms baco --set baco_item_weight=degree --name baco_quality_item_degree

Every arm runs through run_recbole_lightemb with the same data, split, seed and schedule
(the paper's LightGCN setting: 2 layers, d = 64). Writes bench/results/baco_quality.json after
each arm, so a partial run still leaves its numbers.
"""

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
import yaml

import recbole_lightemb
from recbole_lightemb import run_recbole_lightemb
from common import save_results

ROOT = Path(__file__).resolve().parents[1]


def beauty_config(data_path, epochs, checkpoint_dir):
    """The paper's LightGCN setting on Beauty; Recall/NDCG@20, validation every 5 epochs."""
    return {
        "data_path": str(data_path), "dataset": "beauty", "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "n_layers": 2, "embedding_size": 64, "epochs": epochs, "eval_step": 5, "stopping_step": 2,
        "metrics": ["Recall", "NDCG"], "topk": [20], "valid_metric": "recall@20",
        "train_batch_size": 2048, "eval_batch_size": 409600, "show_progress": False,
        "checkpoint_dir": str(checkpoint_dir), "state": "WARNING",
    }


def _parse_override(item):
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
    return key, yaml.safe_load(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--beauty", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--arms", nargs="+", default=["full", "baco", "uniform", "hash", "qr"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (2 per process oversubscribe 2 cores)")
    parser.add_argument("--name", default="baco_quality", help="results file stem (arms run in parallel processes)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every arm, values read as YAML (e.g. baco_item_weight=degree)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = dict(_parse_override(item) for item in args.set)
    base = {**beauty_config(args.beauty, args.epochs, tempfile.mkdtemp(prefix="baco_quality_")), **overrides}
    out = {"benchmark": "baco_quality", "dataset": "beauty", "model": "LightGCN", "budget": args.budget,
           "schedule": {k: base[k] for k in ("epochs", "eval_step", "stopping_step", "train_batch_size")},
           "threads": args.threads, "overrides": overrides,
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "recbole_lightemb": recbole_lightemb.__version__},
           "arms": []}
    for emb in args.arms:
        config = {**base, "emb": emb, **({} if emb == "full" else {"emb_budget": args.budget})}
        start = time.perf_counter()
        result = run_recbole_lightemb(model="LightGCN", config_dict=config)
        wall = time.perf_counter() - start
        comp = result["compression"]
        arm = {"emb": emb, "test": dict(result["test_result"]), "valid": dict(result["best_valid_result"]),
               "stored_floats": comp["stored_floats"], "stored_bytes": comp["stored_bytes"],
               "full_floats": comp["full_floats"], "ratio_bytes": comp["ratio"],
               "ratio_floats": comp["stored_floats"] / comp["full_floats"],
               "plan_s": result["timing"]["plan_s"], "train_s": result["timing"]["train_s"], "wall_s": wall,
               "plan": {k: v for k, v in result["plan"].items() if k not in ("probes", "file")}}
        out["arms"].append(arm)
        full = out["arms"][0]["test"] if out["arms"][0]["emb"] == "full" else None
        change = "" if full is None else f"  Δrecall vs full {100 * (arm['test']['recall@20'] / full['recall@20'] - 1):+.2f}%"
        print(f"{emb:<8} recall@20 {arm['test']['recall@20']:.4f} ndcg@20 {arm['test']['ndcg@20']:.4f} "
              f"floats {arm['ratio_floats']:.4f} bytes {arm['ratio_bytes']:.4f} plan {arm['plan_s']:.1f}s "
              f"train {arm['train_s']:.0f}s{change}", flush=True)
        save_results(args.name, out)


if __name__ == "__main__":
    main()
