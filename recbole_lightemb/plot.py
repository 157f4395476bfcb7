"""The memory/accuracy trade-off plot of a comparison (needs the optional ``plot`` extra: matplotlib)."""

from logging import getLogger

MARKERS = "osD^v<>PX*hp"


def human_bytes(n):
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} GiB"


def plot_tradeoff(rows, metric_key, path, title=None):
    """Stored bytes (log x) against ``metric_key`` (y): one marker per method and budget, the full
    model as a horizontal line. Returns ``path``, or ``None`` when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        getLogger().warning("matplotlib not installed: skipping the trade-off plot "
                            "(pip install 'recbole-lightemb[plot]')")
        return None

    done = [r for r in rows if r.get(metric_key) is not None and r.get("stored_bytes")]
    full = next((r for r in done if r["method"] == "full"), None)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    if full is not None:
        ax.axhline(full[metric_key], color="0.4", linestyle="--", linewidth=1,
                   label=f"full (RecBole), {human_bytes(full['stored_bytes'])}")
        ax.plot([full["stored_bytes"]], [full[metric_key]], marker="*", markersize=12, color="0.3", linestyle="")
    methods = list(dict.fromkeys(r["method"] for r in done if r["method"] != "full"))
    for k, method in enumerate(methods):
        points = sorted((r for r in done if r["method"] == method), key=lambda r: r["stored_bytes"])
        xs = [r["stored_bytes"] for r in points]
        ys = [r[metric_key] for r in points]
        errs = [r.get(f"{metric_key}_std") or 0.0 for r in points]
        ax.errorbar(xs, ys, yerr=errs if any(errs) else None, marker=MARKERS[k % len(MARKERS)],
                    linestyle=":", markersize=7, capsize=3, label=method)
        for r in points:
            if r["budget"] is not None:
                ax.annotate(f"{r['budget']:g}", (r["stored_bytes"], r[metric_key]), textcoords="offset points",
                            xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("stored embedding bytes (log scale, indices included)")
    ax.set_ylabel(metric_key.replace("_", " ", 1))
    ax.set_title(title or "memory / accuracy trade-off")
    ax.grid(True, which="both", alpha=0.3)
    if done:
        ax.legend(title="method (labels: budget asked)", fontsize=8, title_fontsize=8, loc="best")
    fig.savefig(path, dpi=120)
    return path
