"""The accuracy-at-equal-memory ruler: every arm against the ``uniform`` curve at the same bytes.

A compressed table is only worth its complexity if it beats the plain narrower table that stores the
same bytes. ``frontier_rows`` turns the runs of a comparison (one per arm and seed) into one row per
arm: mean ± std of every test metric, stored bytes / full, how many seeds converged (early stopping,
not the epoch cap, ended the run), and the difference from ``uniform`` at the arm's own bytes,
interpolated linearly in log-bytes on the same seed's uniform curve (``full`` is that curve's point
at 1.0: a uniform table of width ``d`` is the full table), with its sign per seed. ``budget_winners`` reads
those rows the other way round: per budget, which arm to use within its bytes.

Every comparison is made twice: by the bytes a table stores (``compression.ratio``) and by the bytes it
holds while training (``compression.training_ratio``: parameters, gradients, buffers and optimiser state,
÷ those of full tables trained the same way), for a method can store little and still train wide
(float32 masters of low-bit rows). :func:`training_ratio` reads the second from a run file, or derives it
where a run file written before it was recorded allows.
"""

import math

import numpy as np

UNIFORM, FULL = "uniform", "full"


SAME_BYTES = 0.01
"""Bytes within 1 % of a curve's end count as that end's bytes: an arm that lands at 0.2499 of full
beside a uniform point at 0.25 is compared with it, not dropped as outside the curve."""


def interpolate_log(x, xs, ys):
    """``y`` at ``x`` on the piecewise-linear curve through (log xs, ys); ``None`` outside its range
    (beyond :data:`SAME_BYTES` of its ends)."""
    points = sorted(zip(xs, ys))
    if not points or x <= 0:
        return None
    logs = [math.log(p[0]) for p in points]
    lx = math.log(x)
    if lx < logs[0] - SAME_BYTES or lx > logs[-1] + SAME_BYTES:
        return None
    lx = min(max(lx, logs[0]), logs[-1])
    if len(points) == 1:
        return points[0][1]
    return float(np.interp(lx, logs, [p[1] for p in points]))


def arm_label(run):
    """A run's arm: its ``label`` when the arm is a variant, else ``method`` or ``method-budget``."""
    if run.get("label"):
        return run["label"]
    return run["method"] if run.get("budget") is None else f"{run['method']}-{run['budget']:g}"


EARLIER_MODES = {"baco": "stated", "ciess": "fast", "scall": "fast"}
"""The procedure of a paper's method whose run file predates the modes (and so records none)."""


def shown_label(run):
    """The arm as reports and plots print it: a BACO, CIESS or SCALL arm whose label does not name the procedure
    it ran gets it, ``ciess-0.25 (fast)``, so every figure says which mode made it."""
    label = arm_label(run)
    mode = run.get("mode") or (run.get("plan") or {}).get("mode") or EARLIER_MODES.get(run["method"])
    named = any(name in label for name in ("paper", *EARLIER_MODES.values()))
    return label if mode is None or named else f"{label} ({mode})"


def _ok(run, metric):
    return run.get("error") is None and run.get("test", {}).get(metric) is not None


FLOAT_TABLES = (FULL, UNIFORM, "hash", "qr")
"""Methods whose float32 tables train as they are stored: every stored float a parameter, no buffer."""

AXES = {"stored": "ratio", "training": "training_ratio"}
"""The two rulers: a row key (and run figure) each."""


def training_ratio(run):
    """Bytes held while training ÷ those of full tables trained the same way: the run's
    ``compression.training_ratio``, else its ``training`` figures (a stream's: the most any segment or its search
    held); for a run file written before either, derived where it can be: a plain ``full``, ``uniform``, ``hash``
    or ``qr`` table trains its stored floats and nothing else, so its parameters, gradients and optimiser state
    stand to full's as its floats do (any optimiser). ``None`` otherwise. A run whose width search was not
    measured (files written before ``search_training_memory``) is at least 1.0: the search trains masked
    ``n × d`` tables with the same optimiser, full's bytes and their masks besides."""
    compression = run.get("compression") or {}
    segments = run.get("segments") or []
    if compression.get("training_ratio") is not None:
        ratio = compression["training_ratio"]
    elif (compression.get("training") or {}).get("ratio") is not None:
        ratio = compression["training"]["ratio"]
    elif any((s.get("training_memory") or {}).get("ratio") is not None for s in segments):  # a stream: its most
        ratio = max(held["ratio"] for s in segments
                    for held in (s.get("training_memory"), s.get("search_training_memory")) if held)
    elif run.get("method") in FLOAT_TABLES and not any(k.endswith("_bits") for k in run.get("extra") or {}) \
            and compression.get("full_floats"):
        ratio = compression["stored_floats"] / compression["full_floats"]
    else:
        return None
    return max(ratio, 1.0) if _search_unmeasured(run) else ratio


def _search_unmeasured(run):
    """Whether the run searched widths on masked full-width tables and its file holds no measure of them."""
    plan = run.get("plan") or {}
    if plan.get("searched"):  # CIESS
        return plan.get("search_training_memory") is None
    segments = run.get("segments") or []
    return any(s.get("search_steps") for s in segments) and \
        not any(s.get("search_training_memory") for s in segments)


def _x(run, axis):
    """A run's bytes / full on ``axis``; ``full`` is 1.0 on both."""
    if run["method"] == FULL and not run.get("label"):
        return 1.0
    return run["compression"]["ratio"] if axis == "stored" else training_ratio(run)


def uniform_curves(runs, metric, axis="stored"):
    """Per seed, the (bytes/full, metric) points of the ``uniform`` arms plus ``full`` at 1.0, on ``axis``."""
    curves = {}
    for run in runs:
        if _ok(run, metric) and run["method"] in (UNIFORM, FULL) and not run.get("label") \
                and _x(run, axis) is not None:
            curves.setdefault(run["seed"], []).append((_x(run, axis), run["test"][metric]))
    return curves


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def frontier_rows(runs, metric="recall@20"):
    """One row per arm, in the order arms first appear in ``runs``."""
    curves = {axis: uniform_curves(runs, metric, axis) for axis in AXES}
    labels = list(dict.fromkeys(arm_label(r) for r in runs))
    metric_names = list(dict.fromkeys(m for r in runs if r.get("error") is None for m in r.get("test", {})))
    rows = []
    for label in labels:
        arm = [r for r in runs if arm_label(r) == label]
        ok = [r for r in arm if _ok(r, metric)]
        row = {"arm": label, "shown": shown_label(arm[0]), "method": arm[0]["method"], "budget": arm[0].get("budget"),
               "n_runs": len(arm), "n_ok": len(ok), "seeds": [r["seed"] for r in ok]}
        row["ratio"], row["ratio_std"] = _mean_std([r["compression"]["ratio"] for r in ok])
        trained = [training_ratio(r) for r in ok]
        row["training_ratio"] = _mean_std(trained)[0] if ok and None not in trained else None
        row["stored_bytes"] = _mean_std([r["compression"]["stored_bytes"] for r in ok])[0]
        for name in metric_names:
            row[f"test_{name}"], row[f"test_{name}_std"] = _mean_std([r["test"].get(name) for r in ok])
        conv = [r.get("convergence") or {} for r in ok]
        row["n_converged"] = sum(bool(c.get("converged")) for c in conv)
        row["converged"] = bool(ok) and row["n_converged"] == len(ok)
        row["epochs_run"] = _mean_std([c.get("epochs_run") for c in conv])[0]
        row["best_epoch"] = _mean_std([c.get("best_epoch") for c in conv])[0]
        row["uniform_curve"] = row["method"] == UNIFORM and not arm[0].get("label")
        compared = row["method"] not in (UNIFORM, FULL) or bool(arm[0].get("label"))
        for axis in AXES:
            suffix = "" if axis == "stored" else f"_{axis}"
            vs = _vs_uniform(ok if compared else [], curves[axis], metric, axis)
            row.update({f"vs_uniform{suffix}{key}": value for key, value in vs.items()})
        row["buckets"] = _mean_buckets([r.get("test_buckets") for r in ok])
        errors = sorted({r["error"] for r in arm if r.get("error")})
        row["error"] = "; ".join(errors) or None
        rows.append(row)
    return rows


def _vs_uniform(runs, curves, metric, axis):
    """Each run minus its own seed's uniform curve at its bytes on ``axis``: mean, std, % and the sign per seed."""
    diffs = {}
    for r in runs:
        curve, x = curves.get(r["seed"], []), _x(r, axis)
        at = None if x is None else interpolate_log(x, [p[0] for p in curve], [p[1] for p in curve])
        if at is not None:
            diffs[r["seed"]] = (r["test"][metric] - at, at)
    mean, std = _mean_std([d for d, _ in diffs.values()])
    mean_at = _mean_std([at for _, at in diffs.values()])[0]  # ratio of means: the sign of the mean difference
    return {"": mean, "_std": std, "_pct": 100.0 * mean / mean_at if mean_at else None,
            "_signs": "".join("+" if d > 0 else "-" if d < 0 else "0" for _, (d, _) in sorted(diffs.items()))}


def _mean_buckets(buckets):
    """Per side and bucket, the mean over seeds of recall by frequency bucket (``None`` if not measured)."""
    buckets = [b for b in buckets if b]
    if not buckets:
        return None
    return {side: {name: float(np.mean([b[side][name] for b in buckets]))
                   for name in buckets[0][side]} for side in ("user", "item")}


def format_bucket_table(rows, k=20):
    """Markdown table of test Recall@k by user and item frequency bucket (head 20 %, torso 30 %, tail 50 %)."""
    names = ("head", "torso", "tail")
    head = ["arm", "bytes / full"] + [f"{side} {name}" for side in ("user", "item") for name in names]
    lines = [f"Recall@{k} by frequency bucket (mean over seeds)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if row.get("buckets"):
            cells = [row["shown"], _pm(row["ratio"], None)]
            cells += [_pm(row["buckets"][side].get(name), None) for side in ("user", "item") for name in names]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pm(mean, std, digits=4):
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def format_frontier_table(rows, metric="recall@20", second="ndcg@20"):
    """Markdown table: arm, bytes/full stored and while training, metrics (mean ± std), Δ vs uniform at the same
    stored bytes (signs per seed) and at the same training bytes (signs after the figure), convergence."""
    head = ["arm", "bytes / full", "training bytes / full", f"test {metric}", f"test {second}",
            "vs uniform (same bytes)", "seeds +/-", "vs uniform (same training bytes)", "converged",
            "best / last epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if row["n_ok"] == 0:
            lines.append(f"| {row['shown']} | failed: {row['error']} |" + " |" * (len(head) - 2))
            continue
        conv = f"{row['n_converged']}/{row['n_ok']}" + ("" if row["converged"] else " **not converged**")
        best = "-" if row["best_epoch"] is None else f"{row['best_epoch']:.0f}"
        last = "unfinished" if row["epochs_run"] is None else f"{row['epochs_run']:.0f}"
        epochs = "-" if row["best_epoch"] is None and row["epochs_run"] is None else f"{best} / {last}"
        training = _vs_cell(row, "_training")
        cells = [row["shown"], _pm(row["ratio"], None), _pm(row.get("training_ratio"), None),
                 _pm(row.get(f"test_{metric}"), row.get(f"test_{metric}_std")),
                 _pm(row.get(f"test_{second}"), row.get(f"test_{second}_std")), _vs_cell(row, ""),
                 row["vs_uniform_signs"] or "-",
                 training if training == "-" else f"{training} {row['vs_uniform_training_signs']}", conv, epochs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _vs_cell(row, suffix):
    """``+0.0123 (+4.5 %)``: the difference from uniform on one axis, or ``-``."""
    vs = row.get(f"vs_uniform{suffix}")
    return "-" if vs is None else f"{vs:+.4f} ({row[f'vs_uniform{suffix}_pct']:+.1f} %)"


PAPER_METHODS = ("baco", "ciess", "scall")
"""The published methods the plugin exists for; the budget table names the best of them beside the winner."""


def budget_winners(rows, metric="recall@20", axis="stored"):
    """Per budget of the setting's ``uniform`` curve, which arm to use: the best mean test ``metric`` among the
    arms that hold at most that budget's bytes on ``axis`` (``stored``: what the tables keep; ``training``: what
    they hold while training) — ``b`` of full, or the ``uniform-b`` table's own bytes where those are more, with
    :data:`SAME_BYTES` of slack — and the best of the papers' methods among them. An arm with fewer seeds or a
    run that hit the cap can win; its seeds and convergence go with it. Arms without figures on ``axis`` (run
    files that predate them) take no part."""
    key = AXES[axis]
    curve = sorted((r for r in rows if r.get("uniform_curve") and r["n_ok"] and r.get(key) is not None),
                   key=lambda r: r["budget"])
    ok = [r for r in rows if r["n_ok"] and r.get(key) is not None and r["method"] != FULL]
    winners = []
    for point in curve:
        limit = max(point["budget"], point[key]) * (1 + SAME_BYTES)
        within = [r for r in ok if r[key] <= limit]
        best = max(within, key=lambda r: r[f"test_{metric}"])
        papers = [r for r in within if r["method"] in PAPER_METHODS]
        winners.append({"budget": point["budget"], "uniform": point, "best": best,
                        "best_paper": max(papers, key=lambda r: r[f"test_{metric}"]) if papers else None})
    return winners


def _summary_cell(row, metric, axis="stored"):
    """``arm mean ± std, Δ vs uniform % signs, seeds, convergence`` of one row, for the budget table (Δ on ``axis``)."""
    suffix = "" if axis == "stored" else f"_{axis}"
    pct = row.get(f"vs_uniform{suffix}_pct")
    vs = "" if pct is None else f", {pct:+.1f} % vs uniform {row[f'vs_uniform{suffix}_signs']}"
    conv = "" if row["converged"] else f", **{row['n_ok'] - row['n_converged']} not converged**"
    return (f"`{row['shown']}` {_pm(row[f'test_{metric}'], row[f'test_{metric}_std'])}{vs}"
            f" ({row['n_ok']} seed{'s' if row['n_ok'] > 1 else ''}{conv})")


def format_budget_table(settings, metric="recall@20", axis="stored"):
    """Markdown table over settings (``{name: rows}``): per budget on ``axis``, the arm with the best test ``metric``
    within those bytes, the plain narrower table there, and the best of the papers' methods."""
    bytes_head = "bytes / full ≤" if axis == "stored" else "training bytes / full ≤"
    head = ["setting", bytes_head, "best arm", "`uniform` there", "best of BACO / CIESS / SCALL"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in settings.items():
        ran_papers = any(r["n_ok"] and r["method"] in PAPER_METHODS for r in rows)
        for win in budget_winners(rows, metric, axis):
            paper = (_summary_cell(win["best_paper"], metric, axis) if win["best_paper"]
                     else "none within these bytes" if ran_papers else "none run in this setting")
            cells = [name, f"{win['budget']:g}", _summary_cell(win["best"], metric, axis),
                     _summary_cell(win["uniform"], metric, axis), paper]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_summary(settings, metric="recall@20"):
    """"Which method at which budget", twice: by the bytes stored and by the bytes held while training; and the
    arms left out of the second for want of training figures."""
    untrained = {name: [r["shown"] for r in rows if r["n_ok"] and r.get("training_ratio") is None]
                 for name, rows in settings.items()}
    lines = ["### By stored bytes", "", format_budget_table(settings, metric, "stored"), "",
             "### By bytes held while training (parameters, gradients, buffers, optimiser state)", "",
             format_budget_table(settings, metric, "training")]
    missing = [f"{name}: {', '.join(arms)}" for name, arms in untrained.items() if arms]
    if missing:
        lines += ["", "Without training figures (run files written before they were recorded), so not in the "
                      "second table: " + "; ".join(missing)]
    return "\n".join(lines)


def _stream_runs(runs, keep=lambda run: True):
    """The finished stream runs that ``keep`` accepts, and their arm labels in first-seen order."""
    ok = [r for r in runs if r.get("error") is None and r.get("segments") and keep(r)]
    return ok, list(dict.fromkeys(arm_label(r) for r in ok))


def _shown(ok, labels):
    """Each arm label as printed (:func:`shown_label` of its first run)."""
    return [shown_label(next(r for r in ok if arm_label(r) == label)) for label in labels]


def format_segment_table(runs, metric="recall@20", split="test"):
    """Markdown table of a stream setting's ``split`` (``test`` or ``valid``: the best validation score, what a
    search or early stopping selected on) ``metric`` per segment: the mean over seeds of every arm, and
    each other arm minus the setting's one ``uniform`` arm in the same segment and seed, with the sign per seed
    (a stream's mean over segments can hide where along the stream a method wins or loses). ``None`` when the
    runs are not streams or there is not exactly one ``uniform`` arm to measure against."""
    ok, labels = _stream_runs(runs)
    uniforms = [label for label in labels if any(r["method"] == UNIFORM and arm_label(r) == label for r in ok)]
    if len(uniforms) != 1:
        return None
    scores = {label: {r["seed"]: [s[f"{split}_result"][metric] for s in r["segments"]]
                      for r in ok if arm_label(r) == label} for label in labels}
    base = scores[uniforms[0]]
    others = [label for label in labels if label != uniforms[0]
              and not any(r["method"] == FULL for r in ok if arm_label(r) == label)]
    shown = dict(zip(labels, _shown(ok, labels)))
    head = ["segment", "test users"] + [shown[label] for label in labels] + \
        [f"{shown[label]} − {uniforms[0]} (per seed)" for label in others]
    lines = [f"{split.capitalize()} {metric} per segment (mean over seeds; the signs are the seeds in order)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, segment in enumerate(ok[0]["segments"]):
        cells = [str(k), str(segment.get("test_users", "-"))]
        cells += [_pm(_mean_std([v[k] for v in scores[label].values()])[0], None) for label in labels]
        for label in others:
            seeds = sorted(set(scores[label]) & set(base))
            diffs = [scores[label][s][k] - base[s][k] for s in seeds]
            signs = "".join("+" if d > 0 else "-" if d < 0 else "=" for d in diffs)
            cells.append(f"{_mean_std(diffs)[0]:+.4f} {signs}" if diffs else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_segment_epochs(runs):
    """Markdown table of the epoch each stream segment kept (its best validation), per arm, seeds in order: a
    segment whose best epoch is the first evaluation after a warm start did not learn from that segment."""
    ok, labels = _stream_runs(runs)
    if not ok:
        return None
    epochs = {label: [[s["convergence"].get("best_epoch") for s in r["segments"]]
                      for r in sorted(ok, key=lambda r: r["seed"]) if arm_label(r) == label] for label in labels}
    lines = ["Best epoch per segment (seeds in order)", "",
             "| segment | " + " | ".join(_shown(ok, labels)) + " |", "|" + "---|" * (len(labels) + 1)]
    for k in range(len(ok[0]["segments"])):
        cells = [" / ".join("-" if e[k] is None else str(e[k]) for e in epochs[label]) for label in labels]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_segment_search(runs):
    """Markdown table of each stream segment's width search, per arm that searched: the mean reward of its steps
    and their spread (max − min), each the mean over seeds. Rewards that all sit at one end of (-1, 1) do not
    tell the tried widths apart. ``None`` when no run recorded a search."""
    ok, labels = _stream_runs(runs, lambda r: any(_search_rewards(r, k) for k in range(len(r["segments"]))))
    if not ok:
        return None
    lines = ["Width search per segment: mean reward of the steps / their spread (max − min), mean over seeds", "",
             "| segment | " + " | ".join(_shown(ok, labels)) + " |", "|" + "---|" * (len(labels) + 1)]
    for k in range(len(ok[0]["segments"])):
        cells = []
        for label in labels:
            rewards = [_search_rewards(r, k) for r in ok if arm_label(r) == label]
            rewards = [w for w in rewards if w]
            cells.append(f"{np.mean([np.mean(w) for w in rewards]):+.3f} / {np.mean([np.ptp(w) for w in rewards]):.3f}"
                         if rewards else "-")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _search_rewards(run, k):
    """Segment ``k``'s search rewards; for runs recorded before segments kept their search, the last segment's
    from the run's plan record."""
    rewards = run["segments"][k].get("search", {}).get("rewards")
    plan = run.get("plan") or {}
    return rewards or (plan.get("rewards") if plan.get("segment") == k else None)
