"""The frontier plot of a comparison (needs the optional ``plot`` extra: matplotlib).

Bytes / full on a log x-axis, a test metric on y: ``uniform`` as a line with a ±std band (the curve
every method must beat), ``full`` as a horizontal line, every other arm as a point with error bars.
An arm where any seed hit the epoch cap is drawn hollow and labelled "not converged".
"""

from logging import getLogger

MARKERS = "osD^v<>PX*hp"
PALETTE = ["#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e",
           "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d"]
"""Distinct colours for the arms; the uniform curve keeps C0 (blue)."""


def plot_frontier(rows, metric, path, title=None):
    """Draw :func:`recbole_lightemb.frontier.frontier_rows` ``rows`` for ``metric`` (e.g. ``recall@20``);
    returns ``path``, or ``None`` when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        getLogger().warning("matplotlib not installed: skipping the frontier plot "
                            "(pip install 'recbole-lightemb[plot]')")
        return None

    key = f"test_{metric}"
    done = [r for r in rows if r.get(key) is not None and r.get("ratio")]
    fig = Figure(figsize=(9.5, 5), layout="constrained")
    ax = fig.add_subplot()
    for row in (r for r in done if r["arm"] == "full"):
        std = row.get(f"{key}_std") or 0.0
        ax.axhline(row[key], color="0.3", linestyle="--", linewidth=1, label=_label("full", row))
        ax.axhspan(row[key] - std, row[key] + std, color="0.5", alpha=0.12, linewidth=0)
    curve = sorted((r for r in done if r.get("uniform_curve")), key=lambda r: r["ratio"])
    if curve:
        xs, ys = [r["ratio"] for r in curve], [r[key] for r in curve]
        stds = [r.get(f"{key}_std") or 0.0 for r in curve]
        ax.plot(xs, ys, color="C0", marker="o", markersize=4, label=_label("uniform", *curve))
        ax.fill_between(xs, [y - s for y, s in zip(ys, stds)], [y + s for y, s in zip(ys, stds)],
                        color="C0", alpha=0.2, linewidth=0)
    others = [r for r in done if r["arm"] != "full" and r not in curve]
    for k, row in enumerate(others):
        color = PALETTE[k % len(PALETTE)]
        ax.errorbar([row["ratio"]], [row[key]], yerr=[row.get(f"{key}_std") or 0.0], capsize=3, linestyle="",
                    marker=MARKERS[k % len(MARKERS)], markersize=7, color=color,
                    markerfacecolor=color if row["converged"] else "none", label=_label(row["arm"], row))
    ax.set_xscale("log")
    ax.set_xlabel("stored bytes / full (log scale, indices included)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(title or "accuracy at equal memory")
    ax.grid(True, which="both", alpha=0.3)
    if done:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=120)
    return path


def _label(name, *rows):
    """Legend text: the arm, and "not converged" if any of its seeds stopped at the epoch cap."""
    if all(r.get("converged", True) for r in rows):
        return name
    return f"{name} (not converged)"
