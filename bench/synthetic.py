"""Seeded synthetic user-item graphs with power-law degrees, for benchmarks.

Real interaction data has heavy-tailed degrees on both sides; timing a solver
on uniform random graphs would hide the cost of hub nodes.
"""

import numpy as np
import scipy.sparse as sp


def _powerlaw_degrees(rng, n, total, max_degree, alpha):
    """``n`` degrees >= 1 drawn from a power law of exponent ``alpha`` and
    rescaled to sum to about ``total``."""
    raw = (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))  # Pareto, x_min = 1
    deg = np.maximum(1, np.rint(raw * (total / raw.sum())))
    return np.minimum(deg, max_degree).astype(np.int64)


def powerlaw_bipartite(n_users, n_items, n_edges, seed, alpha=2.5):
    """Binary ``n_users x n_items`` CSR matrix with exactly ``n_edges`` entries.

    Degrees of both sides follow a power law with exponent ``alpha``; stubs
    are paired at random (configuration model), duplicate pairs dropped, and
    the shortfall topped up with edges drawn in proportion to those degrees.
    Every node starts with at least one stub, so nearly all have degree >= 1.
    """
    if n_edges > n_users * n_items:
        raise ValueError(f"n_edges={n_edges} exceeds n_users * n_items = {n_users * n_items}")
    rng = np.random.default_rng(seed)
    user_deg = _powerlaw_degrees(rng, n_users, n_edges, n_items, alpha)
    item_deg = _powerlaw_degrees(rng, n_items, n_edges, n_users, alpha)
    users = rng.permutation(np.repeat(np.arange(n_users, dtype=np.int64), user_deg))
    items = rng.permutation(np.repeat(np.arange(n_items, dtype=np.int64), item_deg))
    m = min(users.size, items.size, n_edges)
    keys = users[:m] * n_items + items[:m]
    p_user = user_deg / user_deg.sum()
    p_item = item_deg / item_deg.sum()
    while True:
        # keep the first occurrence of each pair so truncation stays random
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]
        missing = n_edges - keys.size
        if missing <= 0:
            break
        extra = int(missing * 1.2) + 16
        keys = np.concatenate([keys, rng.choice(n_users, extra, p=p_user) * n_items
                               + rng.choice(n_items, extra, p=p_item)])
    keys = keys[:n_edges]
    rows, cols = np.divmod(keys, n_items)
    data = np.ones(n_edges, dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items))
