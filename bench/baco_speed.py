"""Speed of the compiled BACO co-clustering solver.

Run from the repository root:  python bench/baco_speed.py
Times ``co_cluster`` (numba compile excluded) on Amazon-Beauty and on
synthetic power-law graphs of Gowalla size and 10x that size, to check the
cost per pass grows linearly in the number of edges, plus one budget search
``fit_codebook_budget`` on Beauty.  Writes bench/results/baco_speed.json.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import scipy
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_lightemb.baco.coclustering import co_cluster, fit_codebook_budget  # noqa: E402
from synthetic import powerlaw_bipartite  # noqa: E402

BEAUTY_GAMMA = 0.1308  # authors' resolution for Beauty
GOWALLA_GAMMA = 7.57  # authors' resolution for Gowalla
BEAUTY_ROW_BUDGET = 9000  # authors' codebook rows for Beauty
GOWALLA_SHAPE = (29_858, 40_981, 810_128)
TARGETS_S = {"beauty": 0.3, "gowalla_size": 1.5}  # authors' Cython: 2.4-3.1 s on Gowalla size


def load_atomic(path):
    """User-item matrix from a RecBole atomic .inter file, tokens mapped to 0..n-1."""
    frame = pd.read_csv(path, sep="\t", dtype=str)
    user_col = next(c for c in frame.columns if c.startswith("user_id"))
    item_col = next(c for c in frame.columns if c.startswith("item_id"))
    users, _ = pd.factorize(frame[user_col])
    items, _ = pd.factorize(frame[item_col])
    R = sp.csr_matrix((np.ones(len(frame), dtype=np.float32), (users, items)),
                      shape=(users.max() + 1, items.max() + 1))
    R.data[:] = 1.0  # repeated interactions count once
    return R


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def time_solver(name, R, gamma, runs):
    """Median wall time of ``runs`` solves, and traced peak memory of one more."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        res = co_cluster(R, gamma, n_iter=5, seed=0)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    co_cluster(R, gamma, n_iter=5, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    median = statistics.median(times)
    return {
        "graph": name,
        "users": R.shape[0],
        "items": R.shape[1],
        "edges": int(R.nnz),
        "resolution": gamma,
        "median_s": median,
        "min_s": min(times),
        "times_s": times,
        "s_per_million_edges": median / (R.nnz / 1e6),
        "user_codes": res.n_user_codes,
        "item_codes": res.n_item_codes,
        "objective": res.objective,
        "passes": res.passes,
        "peak_traced_mib": peak / 2**20,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beauty", type=Path,
                        default=ROOT.parent / "shared/datasets/beauty/beauty.train.inter")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/baco_speed.json")
    args = parser.parse_args()

    start = time.perf_counter()
    co_cluster(powerlaw_bipartite(50, 60, 300, seed=0), 1.0)  # compile or load the cache
    warmup_s = time.perf_counter() - start

    n_u, n_i, m = GOWALLA_SHAPE
    beauty = load_atomic(args.beauty)
    rows = [
        time_solver("beauty", beauty, BEAUTY_GAMMA, args.runs),
        time_solver("gowalla_size", powerlaw_bipartite(n_u, n_i, m, seed=0), GOWALLA_GAMMA,
                    args.runs),
        time_solver("gowalla_x10", powerlaw_bipartite(10 * n_u, 10 * n_i, 10 * m, seed=0),
                    GOWALLA_GAMMA, args.runs),
    ]

    budget_times = []
    for _ in range(3):
        start = time.perf_counter()
        fit, trace = fit_codebook_budget(beauty, BEAUTY_ROW_BUDGET, n_iter=5, seed=0)
        budget_times.append(time.perf_counter() - start)
    budget = {
        "graph": "beauty",
        "max_codes": BEAUTY_ROW_BUDGET,
        "resolution": fit.resolution,
        "probes": len(trace),
        "trace": trace,
        "user_codes": fit.n_user_codes,
        "item_codes": fit.n_item_codes,
        "passes": fit.passes,
        "median_s": statistics.median(budget_times),
        "times_s": budget_times,
    }

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    print(f"numba warm-up (compile or cache load): {warmup_s:.2f} s")
    print(f"{'graph':<13}{'users':>8}{'items':>8}{'edges':>10}{'gamma':>8}{'median s':>10}"
          f"{'s/M edges':>10}{'u codes':>9}{'i codes':>9}{'passes':>7}{'peak MiB':>9}")
    for r in rows:
        print(f"{r['graph']:<13}{r['users']:>8}{r['items']:>8}{r['edges']:>10}"
              f"{r['resolution']:>8.4g}{r['median_s']:>10.3f}{r['s_per_million_edges']:>10.3f}"
              f"{r['user_codes']:>9}{r['item_codes']:>9}{r['passes']:>7}"
              f"{r['peak_traced_mib']:>9.1f}")
    ratio = rows[2]["s_per_million_edges"] / rows[1]["s_per_million_edges"]
    print(f"time per edge, 10x graph / Gowalla size: {ratio:.2f} (1.0 = linear)")
    for r in rows:
        if r["graph"] in TARGETS_S:
            target = TARGETS_S[r["graph"]]
            verdict = "met" if r["median_s"] <= target else "MISSED"
            print(f"target {r['graph']}: {r['median_s']:.3f} s vs <= {target} s: {verdict}")
    print("authors' Cython on a Gowalla-size graph: 2.4-3.1 s")
    print(f"fit_codebook_budget(beauty, {BEAUTY_ROW_BUDGET}): gamma={budget['resolution']:.4g}, "
          f"{budget['user_codes']}+{budget['item_codes']} codes, {budget['probes']} probes, "
          f"{budget['median_s']:.3f} s")

    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "numba": numba.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            # the machine is shared: load above cpu_count inflates the timings
            "loadavg_1_5_15": os.getloadavg(),
        },
        "runs": args.runs,
        "warmup_s": warmup_s,
        "solver": rows,
        "time_per_edge_ratio_x10": ratio,
        "targets_s": TARGETS_S,
        "budget_search": budget,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
