"""The README's comparison table and plot: LightGCN on Amazon Beauty, full model vs every method.

    nice python bench/compare_beauty.py --epochs=10 [--methods=full,uniform,...] [--budgets=0.25,0.1]

Every arm gets the same data, split, seed and epoch cap (LightGCN, 2 layers, d=64; Recall and
NDCG @20; best epoch by valid recall@20). The cap keeps the whole run within about 30 minutes on
a 2-core CPU; it is written into ``results.json`` (``benchmark``) so nobody mistakes it for a
converged result. Writes ``bench/results/compare_beauty/{results.csv,results.json,tradeoff.png,table.md}``.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from recbole_lightemb import available_methods
from recbole_lightemb.compare import compare

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "compare_beauty")
STREAM_ONLY = {"scall"}  # needs --stream=True: a stream comparison, not this table

BEAUTY = {
    "data_path": "/work/shared/datasets",
    "benchmark_filename": ["train", "valid", "test"],
    "load_col": {"inter": ["user_id", "item_id"]},
    "n_layers": 2,
    "embedding_size": 64,
    "metrics": ["Recall", "NDCG"],
    "topk": [20],
    "valid_metric": "recall@20",
    "train_batch_size": 4096,
    "eval_batch_size": 4096000,
    "stopping_step": 10,
    "show_progress": False,
}

SHORT_SEARCH = {  # search phases cut to fit the same ~30-minute run (ignored by the other methods)
    "ciess_pretrain_epochs": 1, "ciess_episodes": 1, "ciess_steps": 3, "ciess_step_batches": 10,
}


def write_markdown(saved, path):
    """The README table: one line per arm, test metrics with their change against the full model."""
    names = [k for k in saved["rows"][0] if k.startswith("test_") and k.count("_") == 1]
    names.insert(0, f"valid_{saved['valid_metric']}")
    lines = ["| method | budget | stored bytes | ratio | " + " | ".join(n.replace("_", " ") for n in names)
             + " | plan s | train s |", "|" + "---|" * (6 + len(names))]
    for r in saved["rows"]:
        if r["error"]:
            lines.append(f"| {r['method']} | {r['budget']} | failed: {r['error'][:80]} |")
            continue
        cells = [f"{r[n]:.4f}" + ("" if r["method"] == "full" else f" ({r[f'{n}_vs_full_pct']:+.1f}%)")
                 for n in names]
        lines.append(f"| {r['method']} | {'-' if r['budget'] is None else r['budget']} | {r['stored_bytes']:,} | "
                     f"{r['ratio']:.3f} | " + " | ".join(cells) + f" | {r['plan_s']:.1f} | {r['train_s']:.0f} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--epochs", type=int, default=10, help="epoch cap, the same for every arm")
    parser.add_argument("--methods", type=str, default=None,
                        help="comma list; default: every registered method except stream-only ones")
    parser.add_argument("--budgets", type=str, default="0.25,0.1")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=str, default=OUT)
    args = parser.parse_args()
    sys.argv[1:] = []  # RecBole's Config must not read this script's flags as config keys

    methods = args.methods.split(",") if args.methods else ["full"] + [
        m for m in available_methods() if m not in STREAM_ONLY | {"full"}]
    budgets = [float(b) for b in args.budgets.split(",")]
    scratch = tempfile.mkdtemp(prefix="compare_beauty_")  # checkpoints stay out of the repo
    config = {**BEAUTY, **SHORT_SEARCH, "epochs": args.epochs, "checkpoint_dir": scratch}
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    arms_dir = os.path.join(scratch, "arms")
    rows = compare("LightGCN", "beauty", methods, budgets, config_dict=config, seeds=args.seeds,
                   compare_dir=arms_dir)
    wall = time.perf_counter() - start
    for name in ("results.csv", "results.json", "tradeoff.png"):
        if os.path.exists(os.path.join(arms_dir, name)):
            shutil.copy(os.path.join(arms_dir, name), os.path.join(args.out, name))
    path = os.path.join(args.out, "results.json")
    with open(path) as f:
        saved = json.load(f)
    saved["benchmark"] = {
        "script": "bench/compare_beauty.py", "epochs_cap": args.epochs, "wall_s": wall,
        "note": f"every arm trained at most {args.epochs} epochs (same cap for all) to fit ~30 min on 2 CPU "
                "cores; numbers compare methods under equal training, not converged accuracy",
        "methods_available": available_methods(),
    }
    with open(path, "w") as f:
        json.dump(saved, f, indent=2)
    write_markdown(saved, os.path.join(args.out, "table.md"))
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"wall_s": round(wall, 1), "rows": [
        {k: r.get(k) for k in ("method", "budget", "ratio", "valid_recall@20", "test_recall@20", "test_ndcg@20",
                               "test_recall@20_vs_full_pct", "plan_s", "train_s", "error")} for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
