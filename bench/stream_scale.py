"""Stream scale: the segmenting core and SCALL's planner alone (no training) on a big synthetic stream.

A seeded power-law bipartite graph (bench/synthetic.py) of 1M users+items and 10M interactions
gets arrival times: each user and item arrives at a uniform time, and each interaction happens
after both ends have arrived (skewed towards the later arrival), so new entities keep coming at
a steady rate, as in a real stream. The stream is cut with SCALL's rule (a segment per 15 000
new users+items). Per segment we time the split (train/valid/test/reservoir/seen/frequencies) and
one SCALL search step without training: state (pooled profiles), SAC action, widths for every
seen entity within the budget, three SAC updates. A search runs 10-30 such steps per segment,
each plus its short training.

    nice python bench/stream_scale.py [--users 500000 --items 500000 --edges 10000000]

Writes bench/results/stream_scale.json.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from synthetic import powerlaw_bipartite  # noqa: E402

from recbole_lightemb.scall.agent import SACAgent  # noqa: E402
from recbole_lightemb.scall.state import build_state, state_size  # noqa: E402
from recbole_lightemb.scall.widths import plan_widths  # noqa: E402
from recbole_lightemb.stream.segments import segment_bounds, split_segments  # noqa: E402
from common import save_results  # noqa: E402


def rss_mb(field):
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak():
    """Start a fresh peak-RSS measurement (Linux: write 5 to clear_refs); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def synthetic_stream(n_users, n_items, n_edges, seed):
    """``(users, items, times)``, ids from 1 (0 is RecBole's padding id), seeded."""
    matrix = powerlaw_bipartite(n_users, n_items, n_edges, seed).tocoo()
    rng = np.random.default_rng(seed + 1)
    user_arrival, item_arrival = rng.random(n_users), rng.random(n_items)
    start = np.maximum(user_arrival[matrix.row], item_arrival[matrix.col])
    times = start + (1.0 - start) * rng.random(matrix.nnz) ** 3
    return matrix.row.astype(np.int64) + 1, matrix.col.astype(np.int64) + 1, times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--items", type=int, default=500_000)
    parser.add_argument("--edges", type=int, default=10_000_000)
    parser.add_argument("--new-entities", type=int, default=15_000)
    parser.add_argument("--mean-width", type=float, default=8.0)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    users, items, times = synthetic_stream(args.users, args.items, args.edges, args.seed)
    gen_s = time.perf_counter() - start
    base_rss = rss_mb("VmRSS")
    peak_reset = reset_peak()
    print(f"generated {users.size} interactions in {gen_s:.1f}s; RSS {base_rss:.0f} MB", flush=True)

    start = time.perf_counter()
    order, bounds = segment_bounds(users, items, times, "stream_new_entities", args.new_entities)
    cut_s = time.perf_counter() - start
    n_segments = len(bounds) - 1
    print(f"cut into {n_segments} segments in {cut_s:.2f}s", flush=True)

    groups, dim = 256, args.dim
    agent = SACAgent(state_size(groups, dim), seed=args.seed)
    rng = np.random.default_rng(args.seed)
    user_mean, item_mean = rng.normal(size=dim), rng.normal(size=dim)
    rows = []
    splits = split_segments(users, items, order, bounds, args.users + 1, args.items + 1, seed=args.seed)
    previous = None
    while True:
        t0 = time.perf_counter()
        split = next(splits, None)
        if split is None:
            break
        split_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        n_seen = int(split.seen_users.sum() + split.seen_items.sum())
        budget = int(args.mean_width * n_seen)
        widths = previous or (split.seen_users * 8, split.seen_items * 8)
        state = build_state(split.user_freq, split.item_freq, split.seen_users, split.seen_items, 0.0,
                            user_mean, item_mean, widths[0], widths[1], groups)
        state_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        action = agent.act(state)
        user_w, item_w = plan_widths(action, split.user_freq, split.item_freq, split.seen_users,
                                     split.seen_items, budget, "power", (0.1, 30), 1, dim)
        widths_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        next_state = build_state(split.user_freq, split.item_freq, split.seen_users, split.seen_items, 0.0,
                                 user_mean, item_mean, user_w, item_w, groups)
        agent.replay.add(state, action, float(rng.normal()), next_state)
        for _ in range(3):
            agent.learn()
        learn_s = time.perf_counter() - t0
        stored = int(user_w.sum() + item_w.sum())
        assert stored <= budget, (stored, budget)
        previous = (user_w, item_w)
        rows.append({"segment": split.segment, "interactions": int(bounds[split.segment + 1] - bounds[split.segment]),
                     "train": int(split.train.size), "reservoir": int(split.reservoir.size),
                     "users_seen": int(split.seen_users.sum()), "items_seen": int(split.seen_items.sum()),
                     "budget_floats": budget, "stored_floats": stored, "split_s": split_s, "state_s": state_s,
                     "widths_s": widths_s, "learn_s": learn_s,
                     "search_step_s": state_s + widths_s + learn_s})
        if split.segment % 10 == 0 or split.segment == n_segments - 1:
            r = rows[-1]
            print(f"seg {r['segment']:>3}: {r['interactions']:>8} inters, seen {r['users_seen'] + r['items_seen']:>8}, "
                  f"split {split_s:.2f}s, search step {r['search_step_s']:.2f}s "
                  f"(state {state_s:.2f} widths {widths_s:.2f} learn {learn_s:.2f}), "
                  f"floats {stored}/{budget}", flush=True)

    peak = rss_mb("VmHWM")
    last = rows[-1]
    summary = {
        "segments": n_segments, "generate_s": gen_s, "cut_s": cut_s,
        "split_s_mean": float(np.mean([r["split_s"] for r in rows])),
        "split_s_max": float(np.max([r["split_s"] for r in rows])),
        "search_step_s_mean": float(np.mean([r["search_step_s"] for r in rows])),
        "search_step_s_last": last["search_step_s"],
        "widths_s_last": last["widths_s"],
        "entities_seen_last": last["users_seen"] + last["items_seen"],
        "budget_held_every_segment": all(r["stored_floats"] <= r["budget_floats"] for r in rows),
        "rss_after_generation_mb": base_rss,
        "peak_rss_mb": peak, "peak_is_segmenting_and_planning_only": peak_reset,
        "segmenting_planning_extra_peak_mb": peak - base_rss if peak_reset else None,
    }
    print("\n" + "\n".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in summary.items()))
    out = {"setup": vars(args) | {"torch_threads": 1, "distribution": "power", "groups": groups},
           "summary": summary, "per_segment": rows}
    print(f"wrote {save_results('stream_scale', out)}")


if __name__ == "__main__":
    main()
