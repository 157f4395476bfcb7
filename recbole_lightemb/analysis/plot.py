"""The frontier plot of a comparison (needs the optional ``plot`` extra: matplotlib).

Two panels, one per ruler: bytes stored / full (left) and bytes held while training / full (right), on
log x-axes, a test metric on y. In each, ``uniform`` is a line with a ±std band (the curve every method
must beat), ``full`` a horizontal line, every other arm a point with error bars, in the same colour and
marker in both panels. An arm where any seed hit the epoch cap is drawn hollow and labelled "not
converged"; an arm without training figures (a run file older than them) is missing from the right panel.
"""

from logging import getLogger

MARKERS = "osD^v<>PX*hp"
PALETTE = ["#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e",
           "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d"]
"""Distinct colours for the arms; the uniform curve keeps C0 (blue)."""

PANELS = (("ratio", "stored bytes / full (log scale, indices included)", "at equal stored bytes"),
          ("training_ratio", "bytes held while training / full trained alike (log scale)",
           "at equal memory while training"))


def plot_frontier(rows, metric, path, title=None):
    """Draw :func:`recbole_lightemb.analysis.frontier.frontier_rows` ``rows`` for ``metric`` (e.g. ``recall@20``) on both
    rulers; returns ``path``, or ``None`` when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        getLogger().warning("matplotlib not installed: skipping the frontier plot "
                            "(pip install 'recbole-lightemb[plot]')")
        return None

    key = f"test_{metric}"
    done = [r for r in rows if r.get(key) is not None and r.get("ratio")]
    fig = Figure(figsize=(15, 5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    others = [r for r in done if r["arm"] != "full" and not r.get("uniform_curve")]
    for ax, (x_key, xlabel, subtitle) in zip(axes, PANELS):
        _panel(ax, done, others, key, x_key)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(subtitle, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"test {metric}")
    fig.suptitle(title or "accuracy at equal memory")
    if done:
        axes[1].legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="center left",  # every arm has stored
                       bbox_to_anchor=(1.01, 0.5))  # bytes; some lack training figures
    fig.savefig(path, dpi=120)
    return path


def _panel(ax, done, others, key, x_key):
    """One ruler: ``full``, the uniform curve and every other arm at its bytes on ``x_key``."""
    for row in (r for r in done if r["arm"] == "full"):
        std = row.get(f"{key}_std") or 0.0
        ax.axhline(row[key], color="0.3", linestyle="--", linewidth=1, label=_label("full", row))
        ax.axhspan(row[key] - std, row[key] + std, color="0.5", alpha=0.12, linewidth=0)
    curve = sorted((r for r in done if r.get("uniform_curve") and r.get(x_key)), key=lambda r: r[x_key])
    if curve:
        xs, ys = [r[x_key] for r in curve], [r[key] for r in curve]
        stds = [r.get(f"{key}_std") or 0.0 for r in curve]
        ax.plot(xs, ys, color="C0", marker="o", markersize=4, label=_label("uniform", *curve))
        ax.fill_between(xs, [y - s for y, s in zip(ys, stds)], [y + s for y, s in zip(ys, stds)],
                        color="C0", alpha=0.2, linewidth=0)
    for k, row in enumerate(others):
        if row.get(x_key) is None:
            continue
        color = PALETTE[k % len(PALETTE)]
        ax.errorbar([row[x_key]], [row[key]], yerr=[row.get(f"{key}_std") or 0.0], capsize=3, linestyle="",
                    marker=MARKERS[k % len(MARKERS)], markersize=7, color=color,
                    markerfacecolor=color if row["converged"] else "none", label=_label(row["shown"], row))


def _label(name, *rows):
    """Legend text: the arm, and "not converged" if any of its seeds stopped at the epoch cap."""
    if all(r.get("converged", True) for r in rows):
        return name
    return f"{name} (not converged)"
