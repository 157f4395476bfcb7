"""BACO balanced co-clustering of users and items (SIGIR'26), compiled with numba.

Users and items share one label space; label propagation maximises

    Q = sum_C [ e(C) - resolution * W_U(C) * W_I(C) ]

where e(C) counts interactions inside cluster C and W_U, W_I sum normalised
user / item weights (``mode`` picks the item weight: the authors' code or the
paper's text, see :func:`node_weights`).  Each cluster becomes one codebook row, so the number of
distinct labels is the embedding-table size.  The passes run in numba because
the solver is called many times while searching a resolution for a row budget.

This module deliberately imports neither torch nor recbole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import njit

__all__ = [
    "WEIGHT_MODES",
    "WEIGHT_SCHEMES",
    "CoClustering",
    "co_cluster",
    "fit_codebook_budget",
    "node_weights",
    "side_weights",
]

WEIGHT_SCHEMES = ("degree", "CPM", "sqrt", "log")
WEIGHT_MODES = ("paper", "stated")
"""How items are weighted: ``paper`` as the authors' code runs it (the figures of the paper come from it),
``stated`` as the paper's text states it; users are weighted as stated in both."""

# Bisection stops once the fitting and the failing resolution differ by less
# than this factor: finer steps change the cluster count by a handful of rows.
_RESOLUTION_RTOL = 1e-3


def _jit(fn):
    """Compile with an on-disk cache when one is usable.

    numba raises RuntimeError at decoration time when no cache directory is
    writable (e.g. a read-only install); importing must still work there, so
    fall back to compiling in memory on every process start.
    """
    try:
        return njit(cache=True)(fn)
    except RuntimeError:
        return njit(fn)


@dataclass(frozen=True, eq=False)
class CoClustering:
    """Result of :func:`co_cluster`; code arrays are read-only.

    ``user_codes[:, 0]`` is the primary code, ``user_codes[:, 1]`` the
    secondary code or -1; a user with a secondary code is meant to be embedded
    as the mean of its two rows.  Codes are numbered per side in order of first
    appearance by node id; secondary codes always name existing user codes.
    """

    user_codes: np.ndarray
    item_codes: np.ndarray
    n_user_codes: int
    n_item_codes: int
    objective: float
    passes: int
    resolution: float
    objective_history: tuple[float, ...]

    @property
    def n_codes(self) -> int:
        """Total codebook rows (user rows + item rows)."""
        return self.n_user_codes + self.n_item_codes


def _check_scheme(arg: str, value) -> None:
    if value not in WEIGHT_SCHEMES:
        raise ValueError(f"{arg} must be one of {WEIGHT_SCHEMES}, got {value!r}")


def _check_mode(value) -> None:
    if value not in WEIGHT_MODES:
        raise ValueError(f"mode must be one of {WEIGHT_MODES}, got {value!r}")


def _check_resolution(arg: str, value) -> float:
    try:
        gamma = float(value)
    except (TypeError, ValueError):
        gamma = math.nan
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"{arg} must be a finite number > 0 (allowed: 0 < {arg} < inf), got {value!r}")
    return gamma


def _check_positive_int(arg: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{arg} must be an integer >= 1, got {value!r}")
    return int(value)


def node_weights(deg, scheme: str, *, degree_numerator: bool = False) -> np.ndarray:
    """Normalised node weights ``v / sqrt(sum v)`` with ``v = f(deg)``.

    ``f`` is ``x`` (degree), ``1`` (CPM), ``sqrt(x)`` or ``log(1 + x)``.  With
    ``degree_numerator`` the weight is ``deg / sqrt(sum v)``: the scheme enters
    the normaliser only, which is what the authors' code computes for items
    (``hash_spectral_label_overlap.py``), so their default ``CPM`` weights items
    by degree.  Zero-degree nodes take part in the sum like any other node.
    """
    _check_scheme("scheme", scheme)
    deg = np.asarray(deg, dtype=np.float64)
    if scheme == "degree":
        v = deg.copy()
    elif scheme == "CPM":
        v = np.ones_like(deg)
    elif scheme == "sqrt":
        v = np.sqrt(deg)
    else:
        v = np.log1p(deg)
    total = v.sum()
    numerator = deg if degree_numerator else v
    return numerator / math.sqrt(total) if total > 0 else numerator


def side_weights(user_deg, item_deg, user_weight: str, item_weight: str, mode: str) -> np.ndarray:
    """Users' then items' weights: users ``v_u / sqrt(sum v_u)`` in both modes; items likewise when
    ``mode='stated'``, ``deg_i / sqrt(sum v_i)`` when ``mode='paper'`` (the authors' code)."""
    _check_mode(mode)
    return np.concatenate([node_weights(user_deg, user_weight),
                           node_weights(item_deg, item_weight, degree_numerator=mode == "paper")])


@_jit
def _count_neighbour_labels(start, stop, nbrs, offset, labels, count, touched):
    """Count the labels of neighbours ``nbrs[start:stop]`` into the all-zero scratch ``count``;
    ``touched`` lists the labels seen (returned: how many), so the caller's reset costs O(deg)."""
    n_touched = 0
    for p in range(start, stop):
        lab = labels[offset + nbrs[p]]
        if count[lab] == 0:
            touched[n_touched] = lab
            n_touched += 1
        count[lab] += 1
    return n_touched


@_jit
def _move(x, start, stop, nbrs, offset, labels, w_other, w_own, size_own, n_distinct, side,
          wx, gamma, count, touched):
    """Move node x to its best neighbour label if strictly better than staying.

    ``count`` is an all-zero scratch indexed by label and is left all-zero.
    Returns 1 on a move, else 0.  The gain of label l, ``count[l] - gamma*wx*W_other[l]``,
    differs from the objective change only by the constant of staying.
    """
    n_touched = _count_neighbour_labels(start, stop, nbrs, offset, labels, count, touched)
    current = labels[x]
    penalty = gamma * wx
    best = count[current] - penalty * w_other[current]
    best_lab = current
    for k in range(n_touched):
        lab = touched[k]
        g = count[lab] - penalty * w_other[lab]
        # ties keep the current label, otherwise go to the lowest label
        if g > best or (g == best and best_lab != current and lab < best_lab):
            best = g
            best_lab = lab
        count[lab] = 0
    if best_lab == current:
        return 0
    labels[x] = best_lab
    size_own[current] -= 1
    if size_own[current] == 0:
        w_own[current] = 0.0  # exact zero instead of accumulated rounding
        n_distinct[side] -= 1
    else:
        w_own[current] -= wx
    if size_own[best_lab] == 0:
        n_distinct[side] += 1
    size_own[best_lab] += 1
    w_own[best_lab] += wx
    return 1


@_jit
def _propagate_pass(order, n_users, u_ptr, u_idx, i_ptr, i_idx, weights, labels,
                    w_user, w_item, size_user, size_item, n_distinct, gamma, count, touched):
    """One label-propagation pass over all nodes in ``order``; returns #moves."""
    moves = 0
    for t in range(order.shape[0]):
        x = order[t]
        if x < n_users:
            moves += _move(x, u_ptr[x], u_ptr[x + 1], u_idx, n_users, labels, w_item, w_user,
                           size_user, n_distinct, 0, weights[x], gamma, count, touched)
        else:
            r = x - n_users
            moves += _move(x, i_ptr[r], i_ptr[r + 1], i_idx, 0, labels, w_user, w_item,
                           size_item, n_distinct, 1, weights[x], gamma, count, touched)
    return moves


@_jit
def _objective(n_users, u_ptr, u_idx, labels, weights, gamma, w_user, w_item):
    """Exact objective of ``labels``; refills the scratch ``w_user``/``w_item``
    with per-label weight sums from scratch so no incremental rounding leaks in."""
    w_user[:] = 0.0
    w_item[:] = 0.0
    for x in range(n_users):
        w_user[labels[x]] += weights[x]
    for x in range(n_users, labels.shape[0]):
        w_item[labels[x]] += weights[x]
    inside = 0
    for u in range(n_users):
        a = labels[u]
        for p in range(u_ptr[u], u_ptr[u + 1]):
            if labels[n_users + u_idx[p]] == a:
                inside += 1
    penalty = 0.0
    for c in range(labels.shape[0]):
        penalty += w_user[c] * w_item[c]
    return inside - gamma * penalty


@_jit
def _encode(n_users, u_ptr, u_idx, labels, weights, gamma, w_item, secondary,
            code_of, count, touched, user_codes, item_codes):
    """Secondary user labels and per-side code numbering; returns (k_u, k_i).

    ``w_item`` must hold the per-label item weights of ``labels`` (as left by
    :func:`_objective`); ``code_of`` is an all -1 scratch indexed by label.
    """
    n_user_codes = 0
    for x in range(n_users):
        lab = labels[x]
        if code_of[lab] < 0:
            code_of[lab] = n_user_codes
            n_user_codes += 1
        user_codes[x, 0] = code_of[lab]
        user_codes[x, 1] = -1
    if secondary:
        for x in range(n_users):
            n_touched = _count_neighbour_labels(u_ptr[x], u_ptr[x + 1], u_idx, n_users, labels, count, touched)
            current = labels[x]
            penalty = gamma * weights[x]
            best = -np.inf
            best_lab = -1
            for k in range(n_touched):
                lab = touched[k]
                # only labels that already own a user row: no new rows needed
                if lab != current and code_of[lab] >= 0:
                    s = count[lab] - penalty * (w_item[lab] - w_item[current])
                    if s > best or (s == best and lab < best_lab):
                        best = s
                        best_lab = lab
                count[lab] = 0
            if best_lab >= 0:
                user_codes[x, 1] = code_of[best_lab]
    code_of[:] = -1
    n_item_codes = 0
    for x in range(n_users, labels.shape[0]):
        lab = labels[x]
        if code_of[lab] < 0:
            code_of[lab] = n_item_codes
            n_item_codes += 1
        item_codes[x - n_users] = code_of[lab]
    return n_user_codes, n_item_codes


class _Graph:
    """CSR adjacency of both sides plus degrees, built once per matrix so that
    a resolution search does not redo the transpose for every probe."""

    def __init__(self, R):
        if not sp.issparse(R):
            R = np.asarray(R)
            if R.ndim != 2:
                raise ValueError(f"R must be a 2-D user x item matrix, got shape {R.shape}")
        R = sp.csr_matrix(R)
        if not R.has_canonical_format or (R.data == 0).any():
            R = R.copy()
            R.sum_duplicates()
            R.eliminate_zeros()
        self.n_users, self.n_items = R.shape
        if R.nnz >= 2**31 or self.n_users + self.n_items >= 2**31:
            raise ValueError("R is too large for int32 labels and indices")
        Rt = R.T.tocsr()
        self.u_ptr = R.indptr.astype(np.int64)
        self.u_idx = R.indices.astype(np.int32, copy=False)
        self.i_ptr = Rt.indptr.astype(np.int64)
        self.i_idx = Rt.indices.astype(np.int32, copy=False)
        self.user_deg = np.diff(self.u_ptr)
        self.item_deg = np.diff(self.i_ptr)


def _solve(graph: _Graph, gamma: float, user_weight: str, item_weight: str, mode: str, n_iter: int,
           max_codes: int | None, seed, secondary: bool) -> CoClustering:
    n_u, n = graph.n_users, graph.n_users + graph.n_items
    weights = side_weights(graph.user_deg, graph.item_deg, user_weight, item_weight, mode)
    labels = np.arange(n, dtype=np.int32)
    w_user = np.zeros(n)
    w_user[:n_u] = weights[:n_u]
    w_item = np.zeros(n)
    w_item[n_u:] = weights[n_u:]
    size_user = np.zeros(n, dtype=np.int32)
    size_user[:n_u] = 1
    size_item = np.zeros(n, dtype=np.int32)
    size_item[n_u:] = 1
    n_distinct = np.array([n_u, graph.n_items], dtype=np.int64)
    count = np.zeros(n, dtype=np.int32)
    max_deg = max(graph.user_deg.max(initial=0), graph.item_deg.max(initial=0))
    touched = np.empty(max(max_deg, 1), dtype=np.int32)
    scratch_user = np.empty(n)
    scratch_item = np.empty(n)

    rng = np.random.default_rng(seed)
    history = []
    passes = 0
    while passes < n_iter:
        if max_codes is not None and n_distinct.sum() <= max_codes:
            break
        order = rng.permutation(n)
        moves = _propagate_pass(order, n_u, graph.u_ptr, graph.u_idx, graph.i_ptr, graph.i_idx,
                                weights, labels, w_user, w_item, size_user, size_item,
                                n_distinct, gamma, count, touched)
        passes += 1
        history.append(_objective(n_u, graph.u_ptr, graph.u_idx, labels, weights, gamma,
                                  scratch_user, scratch_item))
        if moves == 0:
            break  # a fixed point: no visiting order can move anything any more
    objective = _objective(n_u, graph.u_ptr, graph.u_idx, labels, weights, gamma,
                           scratch_user, scratch_item)

    user_codes = np.empty((n_u, 2), dtype=np.int32)
    item_codes = np.empty(graph.n_items, dtype=np.int32)
    code_of = np.full(n, -1, dtype=np.int32)
    n_user_codes, n_item_codes = _encode(n_u, graph.u_ptr, graph.u_idx, labels, weights, gamma,
                                         scratch_item, secondary, code_of, count, touched,
                                         user_codes, item_codes)
    user_codes.flags.writeable = False
    item_codes.flags.writeable = False
    return CoClustering(user_codes=user_codes, item_codes=item_codes,
                        n_user_codes=int(n_user_codes), n_item_codes=int(n_item_codes),
                        objective=float(objective), passes=passes, resolution=gamma,
                        objective_history=tuple(float(h) for h in history))


def co_cluster(R, resolution: float, *, user_weight: str = "degree", item_weight: str = "CPM",
               mode: str = "paper", n_iter: int = 5, max_codes: int | None = None, seed=0,
               secondary: bool = True) -> CoClustering:
    """Co-cluster users and items of the binary interaction matrix ``R``.

    Larger ``resolution`` gives more, smaller clusters; node weights as
    :func:`side_weights` gives them for ``mode``.  Node ids are users
    ``0..n_u-1`` then items ``n_u + i``; pass k visits them in the order of the
    k-th ``np.random.default_rng(seed).permutation(n_u + n_i)``.  A node moves
    only when the best neighbour label is strictly better than staying, so no
    move lowers the objective.  Propagation stops after ``n_iter`` passes, after
    a pass without moves, or when ``max_codes`` is given and the distinct user
    plus item labels fit in it (checked before each pass).

    Zero-degree nodes (e.g. RecBole's padding id 0) never move: each keeps a
    singleton code of its own, which callers may want to special-case.

    With ``secondary`` each user also gets the best other label among its
    neighbours' labels that already holds a user (so no rows are added), scored
    ``#neighbours with l - resolution * w_x * (W_I(l) - W_I(own))``.  It is
    kept whenever such a label exists, even with a negative score: the user
    still has interactions in that cluster, and averaging two rows is the
    extra expressiveness secondary labels exist for.
    """
    gamma = _check_resolution("resolution", resolution)
    _check_scheme("user_weight", user_weight)
    _check_scheme("item_weight", item_weight)
    _check_mode(mode)
    n_iter = _check_positive_int("n_iter", n_iter)
    if max_codes is not None:
        max_codes = _check_positive_int("max_codes", max_codes)
    return _solve(_Graph(R), gamma, user_weight, item_weight, mode, n_iter, max_codes, seed,
                  bool(secondary))


def fit_codebook_budget(R, max_codes: int, *, n_iter: int = 5, user_weight: str = "degree",
                        item_weight: str = "CPM", mode: str = "paper", seed=0, secondary: bool = True,
                        resolution: float | None = None, max_probes: int = 30,
                        ) -> tuple[CoClustering, tuple[tuple[float, int], ...]]:
    """Largest probed resolution whose co-clustering fits ``max_codes`` rows.

    Users budget rows, not resolutions.  Starting from ``resolution`` (default
    1), the resolution is doubled or halved until a fitting and a failing value
    bracket the budget, then bisected in log space; more clusters is better, so
    the largest fitting resolution wins.  Every probe runs with
    ``max_codes`` as early stop, so the solver halts once it is within budget.

    Returns the chosen :class:`CoClustering` and the probes made, as
    ``(resolution, total codes)`` pairs in order.  Raises ValueError when no
    probe fits within ``max_probes``.
    """
    max_codes = _check_positive_int("max_codes", max_codes)
    max_probes = _check_positive_int("max_probes", max_probes)
    n_iter = _check_positive_int("n_iter", n_iter)
    _check_scheme("user_weight", user_weight)
    _check_scheme("item_weight", item_weight)
    _check_mode(mode)
    gamma = 1.0 if resolution is None else _check_resolution("resolution", resolution)
    graph = _Graph(R)
    trace = []
    best = None
    failing = None  # smallest probed resolution known to exceed the budget

    def probe(g):
        nonlocal best, failing
        result = _solve(graph, g, user_weight, item_weight, mode, n_iter, max_codes, seed,
                        bool(secondary))
        trace.append((g, result.n_codes))
        if result.n_codes <= max_codes:
            best = result
        else:
            failing = g

    probe(gamma)
    while len(trace) < max_probes and (best is None or failing is None):
        if best is None:
            probe(failing / 2)
        elif best.passes == 0:
            break  # budget holds every node as a singleton: nothing to gain
        else:
            probe(best.resolution * 2)
    while (best is not None and failing is not None and len(trace) < max_probes
           and failing > best.resolution * (1 + _RESOLUTION_RTOL)):
        probe(math.sqrt(best.resolution * failing))

    if best is None:
        smallest = min(trace)
        raise ValueError(
            f"no resolution fits max_codes={max_codes}: the smallest probed resolution "
            f"{smallest[0]:.3g} still needs {smallest[1]} codes after {len(trace)} probes "
            "(every connected component and zero-degree node needs its own rows); "
            "raise max_codes or max_probes")
    return best, tuple(trace)
