"""Does a CIESS search step know what its widths are worth once trained? (issue 14, diagnosis)

CIESS's fast mode (``ciess_mode: fast``, the plugin's own variant) scores each width plan it tries by
the validation quality after a few warm-started batches (``ciess_step_batches``), not after training a
fresh model as the paper does. This benchmark runs one fast-mode CIESS search (BPR on ml-100k, the
frontier protocol of ``bench/frontier.py``, one budget and seed), keeps the widths of every search
step, and trains each step's widths from scratch to convergence (early stopping, patience 10
evaluations). It then gives the Spearman rank correlation of the step's own signal (mean user
quality, and the user reward the agent learns from) with

- the converged validation and test Recall@20 of the same widths, and
- the converged test Recall@20 *minus uniform's at the same bytes* (interpolated on the frontier's
  uniform curve of the same seed): what the allocation adds beyond its byte count.

The byte count alone is the baseline: its correlation with the converged figure is what a search
gets for free by trying wider or narrower plans. A step signal that only tracks bytes tells the
agent nothing about *who* should get the width.

Each converged run is written at once to ``bench/results/ciess_signal/<tag>/step<k>.json`` (the
step's plan beside it as ``.npz``) and skipped when there; the summary goes to
``bench/results/ciess_signal.json``.

    python bench/ciess_signal.py --budget 0.25 --seed 2020 --workers 1
    python bench/ciess_signal.py --budget 0.25 --step_batches 100     # a longer step: does its signal rank better?
"""

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, save_results  # noqa: E402
from frontier import PROTOCOL, SETTINGS  # noqa: E402

SETTING = "bpr-ml100k"
OUT = RESULTS / "ciess_signal"
METRIC = "recall@20"


def _config():
    spec = SETTINGS[SETTING]
    return spec["model"], spec["dataset"], {**PROTOCOL, **spec["config"]}


def search(tag, budget, seed, step_batches):
    """One CIESS run at ``budget``; every search step's widths saved as a plan, the run itself recorded."""
    import torch

    torch.set_num_threads(1)
    sys.argv[1:] = []
    from recbole_lightemb.ciess.trainer import CIESSTrainer
    from recbole_lightemb.analysis.compare import run_arm
    from recbole_lightemb.plan import Plan

    steps, searching = [], [False]
    original_search, original_apply = CIESSTrainer.search, CIESSTrainer.apply_widths

    def recording_apply(self, widths):
        if searching[0]:
            steps.append({r: np.asarray(w).copy() for r, w in widths.items()})
        return original_apply(self, widths)

    def recording_search(self, *args, **kwargs):
        searching[0] = True
        try:
            return original_search(self, *args, **kwargs)
        finally:
            searching[0] = False

    CIESSTrainer.apply_widths, CIESSTrainer.search = recording_apply, recording_search
    model, dataset, config = _config()
    config = {**config, "ciess_mode": "fast", "ciess_step_batches": step_batches}
    here = os.getcwd()
    try:
        with tempfile.TemporaryDirectory(prefix="ciess-signal-") as workdir:
            os.chdir(workdir)  # RecBole writes ./log; the pool started next needs a folder that still exists
            run = run_arm(model, dataset, None, config, "ciess", budget, seed, os.path.join(workdir, "saved"))
    finally:
        os.chdir(here)
        CIESSTrainer.apply_widths, CIESSTrainer.search = original_apply, original_search
    if run["error"]:
        raise SystemExit(f"error: the CIESS search failed: {run['error']}")
    history = run["plan"]["history"]
    steps = steps[1:]  # the first call sets full widths for the pre-training
    if len(steps) != len(history):
        raise SystemExit(f"error: {len(steps)} recorded widths for {len(history)} search steps")
    folder = OUT / tag
    folder.mkdir(parents=True, exist_ok=True)
    ref_dim = run["plan"]["ref_dim"]
    for k, widths in enumerate(steps):
        arrays = {f"{r}_widths": w.astype(np.int16) for r, w in widths.items()}
        Plan("ciess", arrays, {"ref_dim": ref_dim, "budget": None, "searched": True}).save(folder / f"step{k:02d}.npz")
    run["plan"] = {k: v for k, v in run["plan"].items() if k not in ("probes", "file")}
    (folder / "search.json").write_text(json.dumps(run, indent=1, default=float) + "\n")
    return run


def _converge(task):
    """One step's widths trained to convergence, in a fresh process; written at once."""
    tag, k, seed = task
    import torch

    torch.set_num_threads(1)
    sys.argv[1:] = []
    from recbole_lightemb.analysis.compare import run_arm

    model, dataset, config = _config()
    folder = OUT / tag
    with tempfile.TemporaryDirectory(prefix="ciess-signal-") as workdir:
        os.chdir(workdir)
        start = time.perf_counter()
        run = run_arm(model, dataset, None, {**config, "ciess_plan": str(folder / f"step{k:02d}.npz")}, "ciess",
                      None, seed, os.path.join(workdir, "saved"))
        run["wall_s"] = time.perf_counter() - start
    run["plan"] = {key: v for key, v in (run.get("plan") or {}).items() if key not in ("probes", "history", "file")}
    path = folder / f"step{k:02d}.json"
    path.with_suffix(".tmp").write_text(json.dumps(run, indent=1, default=float) + "\n")
    path.with_suffix(".tmp").replace(path)
    status = run["error"] or f"{METRIC} {run['test'][METRIC]:.4f} converged={run['convergence']['converged']}"
    print(f"[ciess-signal {tag}] step {k}: {status} ({run['wall_s']:.0f} s)", flush=True)


def spearman(a, b):
    """Spearman's rank correlation (average ranks for ties); ``None`` when either side is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def summarise(tag, seed):
    """Pair each step's signal with its converged figures; the correlations the README quotes."""
    from recbole_lightemb.analysis.frontier import interpolate_log, uniform_curves

    folder = OUT / tag
    history = json.loads((folder / "search.json").read_text())["plan"]["history"]
    uniform_runs = [json.loads(p.read_text()) for p in (RESULTS / "frontier" / SETTING).glob("*-seed*.json")]
    for run in uniform_runs:  # as the frontier's report reads them: a label only names a variant
        run["label"] = run.get("label") if run.get("extra") else None
    curve = uniform_curves(uniform_runs, METRIC).get(seed, [])
    rows = []
    for k, record in enumerate(history):
        path = folder / f"step{k:02d}.json"
        if not path.exists():
            continue
        run = json.loads(path.read_text())
        if run["error"]:
            continue
        ratio = run["compression"]["ratio"]
        at = interpolate_log(ratio, [p[0] for p in curve], [p[1] for p in curve])
        rows.append({"step": k, "episode": record["episode"], "kept": ratio, "step_quality": record["quality"],
                     "step_user_reward": record["user_reward"], "valid": run["valid"][METRIC],
                     "test": run["test"][METRIC], "uniform_at_bytes": at,
                     "vs_uniform": None if at is None else run["test"][METRIC] - at,
                     "converged": run["convergence"]["converged"], "epochs_run": run["convergence"]["epochs_run"]})
    signals = ("step_quality", "step_user_reward", "kept")
    targets = ("valid", "test", "vs_uniform")
    correlations = {s: {t: spearman([r[s] for r in rows if r[t] is not None], [r[t] for r in rows if r[t] is not None])
                        for t in targets} for s in signals}
    return {"steps": rows, "spearman": correlations, "n_steps": len(history), "n_converged_runs": len(rows),
            "all_converged": all(r["converged"] for r in rows)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--step_batches", type=int, default=10,
                        help="ciess_step_batches of the search: the lever whose signal is measured")
    parser.add_argument("--workers", type=int, default=1, help="converged runs in parallel, one process each")
    parser.add_argument("--report", action="store_true", help="only summarise the runs already there")
    args = parser.parse_args()
    if not 0 < args.budget <= 1:
        raise SystemExit(f"error: --budget={args.budget}: expected a fraction in (0, 1]")
    for key in ("workers", "step_batches"):
        if getattr(args, key) < 1:
            raise SystemExit(f"error: --{key}={getattr(args, key)}: expected a positive integer")
    tag = f"{SETTING}-{args.budget:g}-batches{args.step_batches}-seed{args.seed}"
    if not args.report:
        if not (OUT / tag / "search.json").exists():
            start = time.perf_counter()
            search(tag, args.budget, args.seed, args.step_batches)
            print(f"[ciess-signal {tag}] search run done ({time.perf_counter() - start:.0f} s)", flush=True)
        n = len(json.loads((OUT / tag / "search.json").read_text())["plan"]["history"])
        tasks = [(tag, k, args.seed) for k in range(n) if not (OUT / tag / f"step{k:02d}.json").exists()]
        print(f"[ciess-signal {tag}] {len(tasks)} converged run(s) to do", flush=True)
        with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            for _ in pool.imap_unordered(_converge, tasks):
                pass
    path = RESULTS / "ciess_signal.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary[tag] = summarise(tag, args.seed)
    save_results("ciess_signal", summary)
    result = summary[tag]
    print(f"{'step':>4} {'kept':>6} {'step q':>7} {'reward':>7} {'valid':>7} {'test':>7} {'vs unif':>8}")
    for r in result["steps"]:
        vs = "-" if r["vs_uniform"] is None else f"{r['vs_uniform']:+.4f}"
        print(f"{r['step']:>4} {r['kept']:6.3f} {r['step_quality']:7.4f} {r['step_user_reward']:7.4f} "
              f"{r['valid']:7.4f} {r['test']:7.4f} {vs:>8}")
    for signal, row in result["spearman"].items():
        cells = ", ".join(f"{t} {'-' if v is None else f'{v:+.2f}'}" for t, v in row.items())
        print(f"Spearman of {signal}: {cells}")


if __name__ == "__main__":
    main()
