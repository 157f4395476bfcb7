"""Stream quality: LightGCN (d=64) on ml-100k as a stream, full vs uniform vs SCALL at equal floats.

Every arm sees the same segments, the same epoch cap and the same early-stopping patience; uniform
and SCALL keep a mean of 8 floats per seen user/item (12.5 % of the full width); BACO, at
``emb_budget=0.125``, re-clusters each segment into the rows those same floats pay for.

    nice python bench/stream_quality.py [--segments 5] [--epochs 20] [--search-batches 30]
    nice python bench/stream_quality.py --arms baco --merge   # re-run one arm, keep the others

Writes bench/results/stream_quality.json.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from recbole_lightemb import available_methods
from recbole_lightemb.stream import run_stream
from common import RESULTS, save_results


def arm_config(args, emb, **extra):
    config = {
        "emb": emb, "stream": True, "stream_segments": args.segments, "embedding_size": 64,
        "epochs": args.epochs, "stream_stopping_step": 3, "train_batch_size": 2048, "eval_batch_size": 409600,
        "metrics": ["Recall", "NDCG"], "topk": [20], "valid_metric": "NDCG@20", "show_progress": False,
        "state": "WARNING", "checkpoint_dir": os.path.join(tempfile.gettempdir(), "stream_quality_saved"),
        "seed": args.seed,
    }
    config.update(extra)
    return config


def summarise(name, result, wall):
    rows = result["segments"]
    return {
        "emb": name, "wall_s": wall,
        "mean_recall@20": result["mean_test_result"]["recall@20"],
        "mean_ndcg@20": result["mean_test_result"]["ndcg@20"],
        "segments": [{k: r[k] for k in ("segment", "users_seen", "items_seen", "stored_floats", "budget_floats",
                                        "stored_bytes", "time_s", "plan_s", "train_s", "search_steps")}
                     | {"recall@20": r["test_result"]["recall@20"], "ndcg@20": r["test_result"]["ndcg@20"]}
                     for r in rows],
        "budget_held": all(r["budget_floats"] is None or r["stored_floats"] <= r["budget_floats"] for r in rows),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20, help="epoch cap per segment, same for every arm")
    parser.add_argument("--search-batches", type=int, default=30)
    parser.add_argument("--min-steps", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--arms", nargs="+", default=["full", "uniform", "scall", "baco"])
    parser.add_argument("--merge", action="store_true", help="keep the other arms already in the JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small tensors on a shared CPU: one thread is several times faster

    arms = [
        ("full", {}),
        ("uniform", {"emb_width": 8}),
        ("scall", {"scall_mean_width": 8, "scall_search_batches": args.search_batches,
                   "scall_min_search_steps": args.min_steps, "scall_max_search_steps": args.max_steps}),
    ]
    if "baco" in available_methods():
        arms.append(("baco", {"emb_budget": 0.125}))
    results = {}
    if args.merge:
        results = json.loads((RESULTS / "stream_quality.json").read_text())["arms"]
    for name, extra in arms:
        if name not in args.arms:
            continue
        start = time.perf_counter()
        result = run_stream("LightGCN", "ml-100k", config_dict=arm_config(args, name, **extra))
        results[name] = summarise(name, result, time.perf_counter() - start)
        print(f"{name:>8}: mean Recall@20 {results[name]['mean_recall@20']:.4f}  "
              f"NDCG@20 {results[name]['mean_ndcg@20']:.4f}  wall {results[name]['wall_s']:.0f}s  "
              f"budget held: {results[name]['budget_held']}", flush=True)

    results = {name: results[name] for name, _ in arms if name in results}  # merged arms in run order
    print(f"\n{'seg':>3} " + " ".join(f"{n + ' R@20':>13} {n + ' floats':>15}" for n in results))
    for t in range(args.segments):
        print(f"{t:>3} " + " ".join(f"{r['segments'][t]['recall@20']:>13.4f} {r['segments'][t]['stored_floats']:>15}"
                                    for r in results.values()))
    uniform, scall = results["uniform"], results["scall"]
    ratios = {
        "scall_time_over_uniform": scall["wall_s"] / uniform["wall_s"],
        "scall_recall_over_uniform": scall["mean_recall@20"] / uniform["mean_recall@20"],
        "scall_ndcg_over_uniform": scall["mean_ndcg@20"] / uniform["mean_ndcg@20"],
        "uniform_recall_over_full": uniform["mean_recall@20"] / results["full"]["mean_recall@20"],
        "scall_recall_over_full": scall["mean_recall@20"] / results["full"]["mean_recall@20"],
    }
    search = [s for s in scall["segments"] if s["segment"] > 0]
    ratios["scall_search_s_per_segment"] = float(np.mean([s["plan_s"] for s in search]))
    ratios["scall_search_steps_per_segment"] = float(np.mean([s["search_steps"] for s in search]))
    print("\n" + "\n".join(f"{k}: {v:.3f}" for k, v in ratios.items()))
    out = {"setup": {"model": "LightGCN", "dataset": "ml-100k", "embedding_size": 64, "mean_width": 8,
                     "segments": args.segments, "epoch_cap": args.epochs, "stopping_step": 3,
                     "search_batches": args.search_batches, "search_steps": [args.min_steps, args.max_steps],
                     "torch_threads": 1, "device": "cpu"},
           "arms": results, "ratios": ratios}
    print(f"wrote {save_results('stream_quality', out)}")


if __name__ == "__main__":
    main()
