"""Tests for the compiled BACO co-clustering solver."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recbole_lightemb.baco import coclustering
from recbole_lightemb.baco.coclustering import (
    WEIGHT_SCHEMES,
    co_cluster,
    fit_codebook_budget,
    node_weights,
)


def _matrix(n_users, n_items, edges):
    rows, cols = zip(*edges)
    return sp.csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(n_users, n_items))


def _powerlaw_graph(n_users, n_items, n_edges, seed):
    """Chung-Lu style graph with heavy-tailed degrees, enough to exercise merging."""
    rng = np.random.default_rng(seed)
    pu = rng.pareto(1.5, n_users) + 1
    pi = rng.pareto(1.5, n_items) + 1
    users = rng.choice(n_users, n_edges, p=pu / pu.sum())
    items = rng.choice(n_items, n_edges, p=pi / pi.sum())
    R = sp.csr_matrix((np.ones(n_edges), (users, items)), shape=(n_users, n_items))
    R.data[:] = 1.0
    return R


def _item_weights(deg, scheme="CPM", mode="paper"):
    """Item weights by hand: ``v / sqrt(sum v)`` as the paper states them, ``deg / sqrt(sum v)`` as the
    authors' code computes them (``hash_spectral_label_overlap.py``)."""
    deg = np.asarray(deg, dtype=float)
    v = {"degree": deg, "CPM": np.ones_like(deg), "sqrt": np.sqrt(deg), "log": np.log1p(deg)}[scheme]
    return (deg if mode == "paper" else v) / math.sqrt(v.sum())


def _objective(R, labels, gamma, mode="paper"):
    """Objective straight from its definition; ``labels`` are shared, users first."""
    R = sp.coo_matrix(R)
    n_u = R.shape[0]
    user_labels, item_labels = labels[:n_u], labels[n_u:]
    wu = node_weights(R.getnnz(axis=1), "degree")
    wi = _item_weights(R.getnnz(axis=0), "CPM", mode)
    inside = int(np.sum(user_labels[R.row] == item_labels[R.col]))
    penalty = 0.0
    for c in set(user_labels.tolist()) & set(item_labels.tolist()):
        penalty += wu[user_labels == c].sum() * wi[item_labels == c].sum()
    return inside - gamma * penalty


def _reference(R, gamma, n_passes, seed, user_weight="degree", item_weight="CPM",
               secondary=True, mode="paper"):
    """Slow pure-Python BACO with the solver's documented visiting order and
    tie rules; returns codes numbered by first appearance and the raw shared
    labels (users then items)."""
    R = sp.csr_matrix(R)
    n_u, n_i = R.shape
    n = n_u + n_i
    Rt = R.T.tocsr()
    nbrs = [list(R.indices[R.indptr[u]:R.indptr[u + 1]] + n_u) for u in range(n_u)]
    nbrs += [list(Rt.indices[Rt.indptr[i]:Rt.indptr[i + 1]]) for i in range(n_i)]
    w = np.concatenate([node_weights(np.diff(R.indptr), user_weight),
                        _item_weights(np.diff(Rt.indptr), item_weight, mode)]).tolist()
    labels = list(range(n))
    W = [[0.0] * n, [0.0] * n]  # per side: label -> weight sum
    size = [[0] * n, [0] * n]
    for x in range(n):
        side = int(x >= n_u)
        W[side][x] = w[x]
        size[side][x] = 1
    rng = np.random.default_rng(seed)
    for _ in range(n_passes):
        for x in rng.permutation(n).tolist():
            side = int(x >= n_u)
            counts = {}
            for y in nbrs[x]:
                counts[labels[y]] = counts.get(labels[y], 0) + 1
            a = labels[x]
            w_other = W[1 - side]
            penalty = gamma * w[x]
            stay = counts.get(a, 0) - penalty * w_other[a]
            moves = [(counts[l] - penalty * w_other[l], l) for l in counts if l != a]
            if not moves:
                continue
            top = max(g for g, _ in moves)
            if top <= stay:
                continue
            new = min(l for g, l in moves if g == top)
            labels[x] = new
            size[side][a] -= 1
            W[side][a] = 0.0 if size[side][a] == 0 else W[side][a] - w[x]
            size[side][new] += 1
            W[side][new] += w[x]
    item_weight_of = [0.0] * n
    for x in range(n_u, n):
        item_weight_of[labels[x]] += w[x]
    user_code = {}
    for x in range(n_u):
        user_code.setdefault(labels[x], len(user_code))
    user_codes = np.full((n_u, 2), -1)
    for x in range(n_u):
        user_codes[x, 0] = user_code[labels[x]]
        if not secondary:
            continue
        counts = {}
        for y in nbrs[x]:
            counts[labels[y]] = counts.get(labels[y], 0) + 1
        a = labels[x]
        cands = [(counts[l] - gamma * w[x] * (item_weight_of[l] - item_weight_of[a]), -l)
                 for l in counts if l != a and l in user_code]
        if cands:
            user_codes[x, 1] = user_code[-max(cands)[1]]
    item_code = {}
    item_codes = np.array([item_code.setdefault(labels[x], len(item_code))
                           for x in range(n_u, n)])
    return user_codes, item_codes, np.array(labels)


def test_two_bicliques_become_two_clusters():
    edges = [(u, i) for u in range(3) for i in range(4)]
    edges += [(u, i) for u in range(3, 6) for i in range(4, 7)]
    res = co_cluster(_matrix(6, 7, edges), 0.5, n_iter=10, mode="stated")
    assert res.n_user_codes == 2 and res.n_item_codes == 2
    assert res.user_codes[:3, 0].tolist() == [0, 0, 0]
    assert res.user_codes[3:, 0].tolist() == [1, 1, 1]
    assert len(set(res.item_codes[:4])) == 1 and len(set(res.item_codes[4:])) == 1
    assert res.item_codes[0] != res.item_codes[4]
    # no user has a neighbour label other than its own, hence no secondary
    assert (res.user_codes[:, 1] == -1).all()
    assert res.objective == pytest.approx(12 + 9 - 0.5 * (12 / 21**0.5 * 4 / 7**0.5
                                                         + 9 / 21**0.5 * 3 / 7**0.5))


def test_objective_never_decreases_across_passes():
    R = _powerlaw_graph(150, 200, 1200, seed=1)
    gamma = 2.0
    res = co_cluster(R, gamma, n_iter=6, seed=3)
    history = (0.0,) + res.objective_history  # singletons score 0
    assert len(res.objective_history) == res.passes >= 3
    assert all(b >= a for a, b in zip(history, history[1:]))
    assert res.objective == history[-1]
    # independent check from the definition, on the reference's labels after k passes
    previous = 0.0
    for k in range(1, 4):
        *_, labels = _reference(R, gamma, k, seed=3, secondary=False)
        value = _objective(R, labels, gamma)
        assert value == pytest.approx(res.objective_history[k - 1], rel=1e-9)
        assert value >= previous
        previous = value


@pytest.mark.parametrize("mode", ["paper", "stated"])
@pytest.mark.parametrize("n_passes,seed", [(1, 0), (1, 7), (3, 5)])
def test_matches_python_reference(n_passes, seed, mode):
    R = _powerlaw_graph(60, 80, 400, seed=seed)
    gamma = 1.5 if mode == "stated" else 0.3  # paper weights are larger: a smaller γ for a similar balance
    res = co_cluster(R, gamma, n_iter=n_passes, seed=seed, mode=mode)
    user_codes, item_codes, _ = _reference(R, gamma, n_passes, seed, mode=mode)
    assert res.passes == n_passes
    np.testing.assert_array_equal(res.user_codes, user_codes)
    np.testing.assert_array_equal(res.item_codes, item_codes)
    assert (res.user_codes[:, 1] >= 0).any()  # secondaries were exercised


def test_node_stays_when_best_neighbour_label_is_worse():
    # One edge, both weights 1: joining the other's label gains 1 - gamma,
    # staying alone gains 0.  Above gamma = 1 the only neighbour label is worse
    # than staying, so both stay (always moving would merge them).
    R = _matrix(1, 1, [(0, 0)])
    stay = co_cluster(R, 1.5, secondary=False)
    assert stay.n_codes == 2 and stay.objective == 0.0 and stay.passes == 1
    merge = co_cluster(R, 0.5, secondary=False)
    assert merge.objective == pytest.approx(0.5)


def test_seed_determinism():
    R = _powerlaw_graph(200, 250, 1500, seed=4)
    a = co_cluster(R, 1.0, seed=11)
    b = co_cluster(R, 1.0, seed=11)
    c = co_cluster(R, 1.0, seed=12)
    np.testing.assert_array_equal(a.user_codes, b.user_codes)
    np.testing.assert_array_equal(a.item_codes, b.item_codes)
    assert a.objective == b.objective
    assert c.n_codes > 0 and c.user_codes.shape == a.user_codes.shape


def test_zero_degree_nodes_keep_singletons():
    # user 0 and item 0 are padding ids, the rest one biclique
    R = _matrix(4, 5, [(u, i) for u in range(1, 4) for i in range(1, 5)])
    res = co_cluster(R, 0.5)
    assert res.user_codes[0].tolist() == [0, -1]
    assert (res.user_codes[1:] == [1, -1]).all()
    assert res.item_codes.tolist() == [0, 1, 1, 1, 1]


def test_matrix_values_are_ignored_but_explicit_zeros_drop():
    R = _powerlaw_graph(80, 90, 500, seed=6).tocoo()
    r0, c0 = next((r, c) for r in range(80) for c in range(90) if not R.tocsr()[r, c])
    # repeats and ratings count as one interaction; a stored zero is none
    noisy = sp.csr_matrix((np.r_[3 * R.data, R.data, 0.0],
                           (np.r_[R.row, R.row, r0], np.r_[R.col, R.col, c0])), shape=R.shape)
    assert noisy.nnz == R.nnz + 1
    a = co_cluster(R, 1.0)
    b = co_cluster(noisy, 1.0)
    np.testing.assert_array_equal(a.item_codes, b.item_codes)
    np.testing.assert_array_equal(a.user_codes, b.user_codes)
    assert a.objective == b.objective


def test_budget_is_respected_and_resolution_is_largest_fitting():
    R = _powerlaw_graph(400, 500, 4000, seed=2)
    budget = 300
    res, trace = fit_codebook_budget(R, budget, seed=1)
    assert res.n_codes <= budget
    assert (res.resolution, res.n_codes) in trace
    assert all(total > budget for g, total in trace if g > res.resolution)
    above = [g for g, _ in trace if g > res.resolution]
    assert above and min(above) <= res.resolution * 1.01
    again = co_cluster(R, min(above), max_codes=budget, seed=1)
    assert again.n_codes > budget
    # the early stop lets the solver itself settle near the budget
    assert res.n_codes >= 0.5 * budget


def test_budget_too_small_raises():
    R = _matrix(4, 4, [(0, 0), (1, 1), (2, 2), (3, 3)])  # four components
    with pytest.raises(ValueError, match="max_codes=3"):
        fit_codebook_budget(R, 3, max_probes=4)


@pytest.mark.parametrize("scheme,raw", [
    ("degree", [0.0, 1.0, 4.0, 9.0]),
    ("CPM", [1.0, 1.0, 1.0, 1.0]),
    ("sqrt", [0.0, 1.0, 2.0, 3.0]),
    ("log", [0.0, math.log(2), math.log(5), math.log(10)]),
])
def test_node_weights(scheme, raw):
    got = node_weights(np.array([0, 1, 4, 9]), scheme)
    np.testing.assert_allclose(got, np.array(raw) / math.sqrt(sum(raw)))


@pytest.mark.parametrize("kwargs,arg", [
    ({"user_weight": "pagerank"}, "user_weight"),
    ({"item_weight": "cpm"}, "item_weight"),
])
def test_invalid_scheme(kwargs, arg):
    R = _matrix(2, 2, [(0, 0), (1, 1)])
    with pytest.raises(ValueError, match=arg) as err:
        co_cluster(R, 1.0, **kwargs)
    message = str(err.value)
    assert repr(next(iter(kwargs.values()))) in message
    assert all(s in message for s in WEIGHT_SCHEMES)
    with pytest.raises(ValueError, match="scheme"):
        node_weights([1, 2], "uniform")


@pytest.mark.parametrize("gamma", [0, -1.0, float("nan"), float("inf")])
def test_invalid_resolution(gamma):
    R = _matrix(2, 2, [(0, 0), (1, 1)])
    with pytest.raises(ValueError, match=r"resolution must be .*> 0.*got") as err:
        co_cluster(R, gamma)
    assert repr(gamma) in str(err.value)
    with pytest.raises(ValueError, match="resolution"):
        fit_codebook_budget(R, 2, resolution=gamma)


def test_jit_falls_back_when_cache_is_unusable(monkeypatch):
    real_njit = coclustering.njit

    def njit(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(*args, **kwargs)

    monkeypatch.setattr(coclustering, "njit", njit)
    double = coclustering._jit(lambda x: 2 * x)
    assert double(21) == 42


def test_item_weights_follow_the_authors_code_in_paper_mode_and_the_text_in_stated_mode():
    # users 0..2, items 0..2; item degrees 3, 1, 1; user degrees 2, 1, 2
    R = _matrix(3, 3, [(0, 0), (0, 1), (1, 0), (2, 0), (2, 2)])
    users = np.array([2, 1, 2]) / math.sqrt(5)  # degree scheme: deg_u / sqrt(sum deg)
    by_hand = {  # hash_spectral_label_overlap.py: item_deg / sqrt(sum item_value); the paper: value / sqrt(sum)
        ("paper", "CPM"): np.array([3, 1, 1]) / math.sqrt(3),
        ("stated", "CPM"): np.array([1, 1, 1]) / math.sqrt(3),
        ("paper", "sqrt"): np.array([3, 1, 1]) / math.sqrt(math.sqrt(3) + 2),
        ("stated", "sqrt"): np.array([math.sqrt(3), 1, 1]) / math.sqrt(math.sqrt(3) + 2),
        ("paper", "degree"): np.array([3, 1, 1]) / math.sqrt(5),
        ("stated", "degree"): np.array([3, 1, 1]) / math.sqrt(5),
    }
    for (mode, scheme), items in by_hand.items():
        got = coclustering.side_weights(R.getnnz(axis=1), R.getnnz(axis=0), "degree", scheme, mode)
        np.testing.assert_allclose(got, np.r_[users, items], err_msg=f"{mode} {scheme}")


def test_the_authors_cpm_clusters_as_degree_weighted_items():
    # paper-mode CPM items weigh deg_i / sqrt(n_i): the stated degree scheme's deg_i / sqrt(sum deg) times a
    # constant, which γ absorbs; so the solver must return the same clustering at the rescaled γ
    R = _powerlaw_graph(120, 150, 900, seed=3)
    deg = R.getnnz(axis=0)
    gamma = 0.4
    paper = co_cluster(R, gamma, item_weight="CPM", mode="paper", seed=5)
    stated = co_cluster(R, gamma * math.sqrt(deg.sum() / len(deg)), item_weight="degree", mode="stated", seed=5)
    np.testing.assert_array_equal(paper.user_codes, stated.user_codes)
    np.testing.assert_array_equal(paper.item_codes, stated.item_codes)
    assert paper.objective == pytest.approx(stated.objective, rel=1e-9)
    cpm_as_stated = co_cluster(R, gamma, item_weight="CPM", mode="stated", seed=5)
    assert cpm_as_stated.n_codes != paper.n_codes  # the two modes really cluster differently


def test_an_unknown_weight_mode_is_refused_with_the_allowed_ones():
    R = _matrix(2, 2, [(0, 0), (1, 1)])
    with pytest.raises(ValueError, match=r"mode must be one of \('paper', 'stated'\), got 'code'"):
        co_cluster(R, 1.0, mode="code")
    with pytest.raises(ValueError, match="mode must be one of"):
        fit_codebook_budget(R, 2, mode="text")
