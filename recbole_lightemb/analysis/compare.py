"""Compare embedding methods with the plain RecBole model: same data, split and seeds, one table.

Answers "at my memory budget, which method keeps the most accuracy, at what cost in time?":
every (method, budget) arm runs through :func:`run_recbole_lightemb`, the full model once as the
reference, and the rows (stored floats and bytes, each valid/test metric, change against full,
plan and train seconds, whether early stopping ended each run) are written to
``results.csv``/``results.json``, and the arms are drawn against the ``uniform`` curve in
``frontier.png`` (see :mod:`recbole_lightemb.analysis.frontier`). A method that is unknown or fails gets a row that says why; the others go on.
"""

import contextlib
import csv
import gc
import json
import os
import sys
import traceback
from logging import getLogger

import numpy as np
from recbole.utils import get_local_time, set_color

from recbole_lightemb.config import Config
from recbole_lightemb.analysis.frontier import frontier_rows
from recbole_lightemb.analysis.plot import plot_frontier
from recbole_lightemb.quick_start import run_recbole_lightemb
from recbole_lightemb.registry import get_method
from recbole_lightemb.runs import json_default

COMPARE_KEYS = ("compare", "compare_dir", "seeds", "emb", "emb_budget")
"""Command-line keys that belong to the comparison, not to one arm: RecBole's Config must not see them."""

ARM_KEYS = COMPARE_KEYS + ("seed", "checkpoint_dir", "result_file")
"""Keys every arm sets itself: a ``--seed=`` or ``--checkpoint_dir=`` on the command line would win over
the arm's ``config_dict`` inside RecBole's Config, so they are read once and then hidden too."""

REFERENCE = "full"
TIMES = ("plan_s", "train_s", "eval_s")


def strip_cmd_args(argv, keys):
    """``argv`` without ``--key=value`` (or ``--key value``) for ``keys``."""
    kept, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in keys:
            takes_next = "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            i += 2 if takes_next else 1
            continue
        kept.append(arg)
        i += 1
    return kept


@contextlib.contextmanager
def hidden_cmd_args(keys):
    """RecBole's Config reads ``sys.argv`` itself: hide ``keys`` from it while inside, restore after."""
    saved = list(sys.argv)
    sys.argv[:] = saved[:1] + strip_cmd_args(saved[1:], keys)
    try:
        yield
    finally:
        sys.argv[:] = saved


def _arms(methods, budgets):
    """(method, budget) pairs: the reference first and once; every other method at every budget."""
    budgets = list(budgets) or [None]
    arms = [(REFERENCE, None)]
    for method in methods:
        if method == REFERENCE:
            continue
        arms.extend((method, budget) for budget in budgets)
    return arms


def _arm_name(method, budget):
    return method if budget is None else f"{method}-{budget:g}"


def _mean_dicts(dicts):
    return {name: float(np.mean([d[name] for d in dicts])) for name in dicts[0]}


def _results_of(result):
    """Valid and test metrics of one run. A stream run is judged by its per-segment means; its valid
    metrics are left out unless every segment reports ``valid_result`` (the last segment's alone would mislead)."""
    if "mean_test_result" not in result:
        return dict(result.get("best_valid_result") or {}), dict(result.get("test_result") or {})
    valids = [seg.get("valid_result") for seg in result.get("segments") or []]
    valid = result.get("mean_valid_result") or (_mean_dicts(valids) if valids and all(valids) else {})
    return dict(valid), dict(result["mean_test_result"])


def _mean_std(values):
    """Mean and sample std (``None`` for one value) of the values that exist."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return float(np.mean(values)), std


def _summarise(method, budget, runs, metrics):
    """One row from the runs (one per seed) of an arm."""
    ok = [r for r in runs if r["error"] is None]
    row = {"method": method, "budget": budget, "n_seeds": len(ok), "seeds": [r["seed"] for r in ok],
           "n_converged": sum(bool((r.get("convergence") or {}).get("converged")) for r in ok)}
    for key in ("stored_floats", "stored_bytes", "full_bytes", "ratio"):
        row[key] = _mean_std([r["compression"].get(key) for r in ok])[0]
    for key in ("stored_floats", "stored_bytes", "full_bytes"):
        row[key] = None if row[key] is None else int(round(row[key]))
    row["within_budget"] = None if budget is None or row["ratio"] is None else bool(
        all(r["compression"]["ratio"] <= budget for r in ok))
    for split, names in metrics.items():
        for name in names:
            mean, std = _mean_std([r[split].get(name) for r in ok])
            row[f"{split}_{name}"], row[f"{split}_{name}_std"] = mean, std
    for key in TIMES:
        row[key] = _mean_std([r["timing"].get(key) for r in ok])[0]
    errors = {r["seed"]: r["error"] for r in runs if r["error"]}
    if len(set(errors.values())) == 1 and len(errors) == len(runs):
        row["error"] = next(iter(errors.values()))
    else:
        row["error"] = "; ".join(f"seed {seed}: {error}" for seed, error in errors.items()) or None
    return row


def _add_changes(rows, metrics):
    """Relative change (%) of every metric against the full model's row."""
    full = rows[0]
    for row in rows:
        for split, names in metrics.items():
            for name in names:
                ref, value = full.get(f"{split}_{name}"), row.get(f"{split}_{name}")
                row[f"{split}_{name}_vs_full_pct"] = (
                    100.0 * (value - ref) / ref if value is not None and ref else None)


def columns(metrics):
    """CSV column order."""
    cols = ["method", "budget", "n_seeds", "n_converged", "stored_floats", "stored_bytes", "full_bytes", "ratio", "within_budget"]
    for split, names in metrics.items():
        for name in names:
            cols += [f"{split}_{name}", f"{split}_{name}_std", f"{split}_{name}_vs_full_pct"]
    return cols + list(TIMES) + ["error"]


def _cell(row, key):
    mean, std, change = row.get(key), row.get(f"{key}_std"), row.get(f"{key}_vs_full_pct")
    if mean is None:
        return "-"
    text = f"{mean:.4f}" + (f"±{std:.4f}" if std is not None else "")
    return text + (f" ({change:+.1f}%)" if change is not None and row["method"] != REFERENCE else "")


def _shown_metrics(metrics, valid_metric):
    """What the terminal table shows (the CSV keeps every metric): the valid metric, and Recall and
    NDCG at the first cut-off on the test split."""
    shown = [("valid", valid_metric)] if valid_metric in metrics["valid"] else []
    tests = [m for m in metrics["test"] if m.startswith(("recall@", "ndcg@"))]
    cutoff = min((m.split("@")[1] for m in tests), key=int, default=None)
    return shown + [("test", m) for m in tests if m.split("@")[1] == cutoff][:2] or [("test", metrics["test"][0])]


def format_table(rows, metrics, valid_metric):
    """The comparison as aligned text within 120 columns: arm, budget, bytes ratio, the valid metric,
    test Recall and NDCG at the first cut-off (mean[±std] (change vs full)), seeds converged, train time."""
    shown = _shown_metrics(metrics, valid_metric)
    head = ["method", "budget", "ratio"] + [f"{split} {name}" for split, name in shown] + ["conv", "train s"]
    body = []
    for row in rows:
        cells = [row["method"], "-" if row["budget"] is None else f"{row['budget']:g}",
                 "-" if row["ratio"] is None else f"{row['ratio']:.4f}"]
        cells += [_cell(row, f"{split}_{name}") for split, name in shown]
        cells += [f"{row['n_converged']}/{row['n_seeds']}", "-" if row["train_s"] is None else f"{row['train_s']:.0f}"]
        body.append(cells)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for row in rows:
        if row["error"]:
            lines.append(f"{row['method']} (budget {row['budget']}): {row['error']}")
    return "\n".join(lines)


def write_csv(rows, metrics, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(metrics), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _versions():
    import recbole
    import torch

    import recbole_lightemb

    return {"recbole_lightemb": recbole_lightemb.__version__, "recbole": recbole.__version__,
            "torch": torch.__version__, "python": sys.version.split()[0]}


def run_arm(model, dataset, config_file_list, config_dict, method, budget, seed, arm_dir):
    """One seed of one arm; never raises: a failure becomes the run's ``error``."""
    run = {"method": method, "budget": budget, "seed": seed, "error": None}
    try:
        get_method(method)  # an unknown name fails here, before any data is loaded
        arm_config = {**(config_dict or {}), "emb": method, "emb_budget": budget, "seed": seed,
                      "checkpoint_dir": arm_dir, "result_file": os.path.join(arm_dir, f"result-seed{seed}.json")}
        os.makedirs(arm_dir, exist_ok=True)
        with hidden_cmd_args(ARM_KEYS):
            result = run_recbole_lightemb(model=model, dataset=dataset, config_file_list=config_file_list,
                                          config_dict=arm_config)
        run["valid"], run["test"] = _results_of(result)
        run["compression"] = {k: v for k, v in (result.get("compression") or {}).items() if k != "tables"}
        run["timing"] = dict(result.get("timing") or {})
        run["convergence"] = result.get("convergence")
        run["test_buckets"] = result.get("test_buckets")
        run["plan"] = result.get("plan")
        if "segments" in result:
            run["segments"] = result["segments"]
    except Exception as error:  # noqa: BLE001  (one arm's failure must not stop the comparison)
        run["error"] = f"{type(error).__name__}: {error}"
        getLogger().error(set_color(f"{_arm_name(method, budget)} seed {seed} failed", "red") + "\n"
                          + traceback.format_exc())
    finally:
        gc.collect()
    return run


def _reference_config(model, dataset, config_file_list, config_dict):
    """The resolved config every arm shares (command-line overrides included, comparison keys not)."""
    with hidden_cmd_args(COMPARE_KEYS):
        return Config(model=model, dataset=dataset, config_file_list=config_file_list,
                      config_dict={**(config_dict or {}), "emb": REFERENCE, "emb_budget": None})


def _check_budget(value):
    try:
        budget = float(value)
    except (TypeError, ValueError):
        budget = None
    if budget is None or isinstance(value, bool) or not 0 < budget <= 1:
        raise ValueError(f"emb_budget={value!r}: expected fractions of the full embedding memory in (0, 1], "
                         "e.g. --emb_budget=0.25,0.1")
    return budget


def _new_dir(parent, name):
    path, k = os.path.join(parent, name), 1
    while os.path.exists(path):
        k += 1
        path = os.path.join(parent, f"{name}-{k}")
    return path


def compare(model, dataset, methods, budgets, config_file_list=None, config_dict=None, seeds=1, compare_dir=None):
    """Run the full model and every (method, budget) on the same data, split and seeds; return the rows.

    ``seeds`` repeats each arm with ``seed, seed+1, …`` (RecBole's ``seed``) and reports mean and
    sample std. Results land in ``compare_dir`` (default: a new timestamped folder under RecBole's
    ``checkpoint_dir``); each arm's checkpoint, plan and result JSON in a sub-folder named after it.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r}: expected a positive integer (runs per arm)")
    if not methods:
        raise ValueError("methods=[]: expected at least one method name, e.g. ['full', 'uniform']")
    budgets = [_check_budget(b) for b in (budgets or [])]
    logger = getLogger()
    reference = _reference_config(model, dataset, config_file_list, config_dict)
    base_seed, valid_metric = int(reference["seed"]), reference["valid_metric"].lower()
    model, dataset = reference["model"], reference["dataset"]
    if compare_dir is None:
        compare_dir = _new_dir(reference["checkpoint_dir"], f"compare-{model}-{dataset}-{get_local_time()}")
    os.makedirs(compare_dir, exist_ok=True)

    arms, runs = _arms(list(dict.fromkeys(methods)), list(dict.fromkeys(budgets))), []
    for method, budget in arms:
        arm_dir = os.path.join(compare_dir, _arm_name(method, budget))
        for seed in range(base_seed, base_seed + seeds):
            logger.info(set_color("compare", "green") + f": {_arm_name(method, budget)} seed {seed}")
            runs.append(run_arm(model, dataset, config_file_list, config_dict, method, budget, seed, arm_dir))

    metrics = {"valid": [], "test": []}
    for run in runs:
        for split in metrics:
            metrics[split] += [m for m in run.get(split, {}) if m not in metrics[split]]
    rows = [_summarise(m, b, [r for r in runs if (r["method"], r["budget"]) == (m, b)], metrics) for m, b in arms]
    _add_changes(rows, metrics)

    stream = any("segments" in run for run in runs)
    write_csv(rows, metrics, os.path.join(compare_dir, "results.csv"))
    summary = {
        "model": model, "dataset": dataset, "methods": list(methods), "budgets": budgets, "seeds": seeds,
        "seed_values": list(range(base_seed, base_seed + seeds)), "valid_metric": valid_metric,
        "stream": stream, "versions": _versions(), "config_file_list": config_file_list,
        "config_dict": config_dict, "cmd_line": strip_cmd_args(sys.argv[1:], ARM_KEYS),
        "config": dict(reference.final_config_dict), "rows": rows, "runs": runs,
    }
    with open(os.path.join(compare_dir, "results.json"), "w") as f:
        json.dump(summary, f, indent=2, default=json_default)
    plot_frontier(frontier_rows(runs, valid_metric), valid_metric, os.path.join(compare_dir, "frontier.png"),
                  title=f"{model} on {dataset}" + (" (stream: means over segments)" if stream else ""))
    logger.info(set_color("comparison", "yellow") + f" ({model} on {dataset}, {seeds} seed(s); "
                f"metric cells: mean (change vs full))\n" + format_table(rows, metrics, valid_metric))
    logger.info(set_color("Saving comparison", "blue") + f": {compare_dir}")
    return rows
