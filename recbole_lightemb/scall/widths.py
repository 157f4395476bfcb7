"""SCALL's widths: a distribution shape scaled to a float budget, never over it after rounding.

For ``n`` entities the shape is the vector of expected order statistics of ``n`` draws of a
distribution (largest first), normalised to sum to one. SCALL averages 100 sorted samples; that
is a Monte-Carlo estimate of the same vector and costs 100 sorts of ``n`` numbers per action.
Here it is computed directly, O(n) and vectorised:

* ``power`` (numpy's power-function law, density ``a x^(a-1)`` on [0, 1]): exact closed form
  ``E[X_(k:n)] = Γ(n+1) Γ(k+1/a) / (Γ(k) Γ(n+1+1/a))`` (k-th smallest), through ``gammaln``;
* ``pareto`` (numpy's Lomax, ``(1-u)^(-1/a) - 1``): exact closed form too, except the few top
  order statistics whose expectation is infinite (``a <= 1``; SCALL's 100-draw average of them is
  just noise, and they are clipped at ``s_max`` anyway);
* ``truncnorm`` (normal of scale ``a`` truncated to [0, 1]): the inverse CDF at Blom's plotting
  positions ``(k - 3/8) / (n + 1/4)``, the standard close approximation.

That closed form is the plugin's (``scall_shape: expected``). The authors' ``Config.py`` averages
100 sorted draws, each normalised before the average (``scall_shape: sampled``, paper mode), and
draws their own families: ``powerlaw`` as above, scipy's classical Pareto (support ``x >= 1``) and a
normal centred at ``1/n`` truncated to [0, 1]. ``flat`` (every entity alike) is no paper family: it
gives each side one uniform width, so an action's ρ alone can be tried against SCALL's shapes.
"""

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, ndtr, ndtri

DISTRIBUTIONS = ("power", "pareto", "truncnorm", "flat")
SHAPES = ("sampled", "expected")
RESCALES = ("loop", "limit")
ALPHA_MAPS = ("linear", "geometric")
AUTHORS_ALPHA_RANGES = {"power": (0.1, 30.0), "pareto": (30.0, 100.0), "truncnorm": (1e-6, 1e-5), "flat": (0.1, 30.0)}
"""``Config.py``'s ``MIN_ALPHA``/``MAX_ALPHA`` per family (``flat`` has no α; any range serves)."""
DRAWS = 100
"""Sorted draws averaged per shape in ``Config.py``."""


def _blom(n, k):
    """Blom's plotting positions of the k-th smallest of n: ``(k - 3/8) / (n + 1/4)``."""
    return (k - 0.375) / (n + 0.25)


def _pareto_order_statistics(n, k, a):
    """Lomax (numpy's ``pareto``): exact ``E[X_(k:n)] = Γ(n+1) Γ(j-1/a) / (Γ(j) Γ(n+1-1/a)) - 1``
    with ``j = n-k+1`` (rank from the top), finite where ``j > 1/a``. The few top ones with an
    infinite mean take the Blom quantile, raised to stay at least the next finite value."""
    inv = 1.0 / a
    j = n - k + 1
    values = (1.0 - _blom(n, k)) ** (-inv) - 1.0
    finite = j > inv
    if n + 1 > inv and finite.any():
        log_e = gammaln(n + 1) - gammaln(n + 1 - inv) + gammaln(j[finite] - inv) - gammaln(j[finite])
        values[finite] = np.exp(log_e) - 1.0
        if not finite.all():
            values[~finite] = np.maximum(values[~finite], values[finite].max())
    return values


def order_statistic_shape(n, distribution, a):
    """Expected order statistics of ``n`` draws, largest first, normalised to sum to 1."""
    if n <= 0:
        return np.zeros(0)
    k = np.arange(n, 0, -1, dtype=np.float64)  # k-th smallest, so the largest comes first
    if distribution == "power":
        inv = 1.0 / a
        log_e = gammaln(n + 1) - gammaln(n + 1 + inv) + gammaln(k + inv) - gammaln(k)
        values = np.exp(log_e - log_e.max())
    elif distribution == "pareto":
        values = _pareto_order_statistics(n, k, a)
    elif distribution == "truncnorm":
        values = a * ndtri(0.5 + _blom(n, k) * (ndtr(1.0 / a) - 0.5))
    elif distribution == "flat":
        values = np.ones(n)
    else:
        raise ValueError(f"scall_distribution={distribution!r}: allowed {', '.join(DISTRIBUTIONS)}")
    values = np.maximum(values, 0.0)
    total = values.sum()
    return values / total if total > 0 else np.full(n, 1.0 / n)


def _draw(rng, n, distribution, a):
    """One draw of ``n`` values of the authors' family ``distribution`` with parameter ``a``."""
    if distribution == "power":
        return rng.power(a, n)
    if distribution == "pareto":  # scipy's pareto(b=a): numpy's Lomax shifted to start at 1
        return rng.pareto(a, n) + 1.0
    if distribution == "truncnorm":  # N(1/n, a) truncated to [0, 1], by its inverse CDF
        loc = 1.0 / n
        low, high = ndtr(-loc / a), ndtr((1.0 - loc) / a)
        return loc + a * ndtri(low + rng.random(n) * (high - low))
    if distribution == "flat":
        return np.ones(n)
    raise ValueError(f"scall_distribution={distribution!r}: allowed {', '.join(DISTRIBUTIONS)}")


def sampled_shape(n, distribution, a, rng, draws=DRAWS):
    """The authors' shape: the mean over ``draws`` draws of ``n`` values, each sorted largest first and
    normalised to sum to one (``Config.powerlaw`` and its siblings); one draw in memory at a time."""
    if n <= 0:
        return np.zeros(0)
    total = np.zeros(n)
    for _ in range(draws):
        values = np.sort(_draw(rng, n, distribution, a))[::-1]
        total += values / values.sum()
    return total / draws


def fit_to_budget(shape, budget, s_min, s_max):
    """Real widths ``clip(λ·shape, s_min, s_max)`` summing to ``budget`` (shape sorted descending).

    This is the fixed point of SCALL's "clip and renormalise until within bounds". The total is
    monotone and piecewise linear in ``λ``; with prefix sums each evaluation is O(log n), so the
    bisection is free and only the final clip touches all ``n`` entities.
    """
    n = shape.size
    if budget >= n * s_max:
        return np.full(n, float(s_max))
    shape = np.maximum(shape, shape.max() * 1e-12)  # underflowed tails still scale
    ascending = shape[::-1]
    prefix = np.concatenate([[0.0], np.cumsum(ascending)])

    def parts(log_scale):
        scale = np.exp(log_scale)
        bottom = int(np.searchsorted(ascending, s_min / scale, side="right"))
        top = n - int(np.searchsorted(ascending, s_max / scale, side="left"))
        middle = prefix[n - top] - prefix[bottom] if n - top > bottom else 0.0
        return top, bottom, middle, top * s_max + bottom * s_min + scale * middle

    lo, hi = np.log(s_min / shape.max()), np.log(s_max / shape.min())  # totals n·s_min .. n·s_max
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if parts(mid)[3] < budget:
            lo = mid
        else:
            hi = mid
    top, bottom, middle, _ = parts(hi)
    rest = budget - top * s_max - bottom * s_min
    scale = rest / middle if middle > 0 else np.exp(hi)
    return np.clip(scale * shape, s_min, s_max)


def loop_to_budget(shape, budget, s_min, s_max, max_iterations=10_000):
    """``Action.py``'s final widths before rounding: ``max(s_min, p · budget)``, then clip to
    ``[s_min, s_max]`` and rescale to the budget until a pass lands within the bounds (the authors stop
    after one second; here after ``max_iterations`` passes). It stops at the first pass in bounds, so its
    widest rows can end below ``s_max`` where :func:`fit_to_budget`'s limit has them at it, and when the
    floor alone lifts the tail within bounds it never rescales: the total then exceeds the budget."""
    sizes = np.maximum(s_min, shape * budget)
    for _ in range(max_iterations):
        if sizes.max() <= s_max and sizes.min() >= s_min:
            break
        sizes = np.clip(sizes, s_min, s_max)
        sizes = sizes / sizes.sum() * budget
    return sizes


def round_to_budget(real, budget, s_min, s_max):
    """Integer widths within ``[s_min, s_max]`` whose sum never exceeds ``budget``.

    Round down, then hand the leftover floats out by largest remainder (ties to the more active
    entity, so a non-increasing ``real`` stays non-increasing), never past ``s_max``; if float
    error left the floor over budget, take units back from the least active widths above ``s_min``.
    """
    widths = np.clip(np.floor(real), s_min, s_max).astype(np.int64)
    budget = int(budget)
    leftover = budget - int(widths.sum())
    if leftover > 0:
        room = np.flatnonzero(widths < s_max)
        remainder = real[room] - widths[room]
        take = room[np.lexsort((room, -remainder))][:leftover]
        widths[take] += 1
    while leftover < 0:
        above = np.flatnonzero(widths > s_min)
        if above.size == 0:
            break
        cut = above[::-1][: -leftover]
        widths[cut] -= 1
        leftover += cut.size
    return widths


def side_widths(n, budget, distribution, a, s_min, s_max, shape=None, rescale="limit"):
    """Widths for ``n`` entities of one side, widest first, summing to at most ``budget``: the shape
    (default: the expected order statistics) clipped to ``[s_min, s_max]`` and rescaled to the budget,
    by the authors' loop (:func:`loop_to_budget`) or to its limit (:func:`fit_to_budget`), then rounded
    never over the budget."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if budget < n * s_min:
        raise ValueError(f"a budget of {budget} values (floats, or at emb_bits below 32 the low-bit values its bytes hold) cannot give {n} entities the minimum width "
                         f"scall_min_width={s_min}")
    shape = order_statistic_shape(n, distribution, a) if shape is None else shape
    fit = loop_to_budget if rescale == "loop" else fit_to_budget
    return round_to_budget(fit(shape, budget, s_min, s_max), budget, s_min, s_max)


def raw_side_widths(shape, budget, s_min, s_max):
    """``Action.py`` while searching (``correct=False``): ``round(max(s_min, p · budget))``, nothing rescaled,
    so the sum may miss the budget either way; capped at ``s_max``, the table's width (the authors' mask)."""
    return np.minimum(np.round(np.maximum(s_min, shape * budget)), s_max).astype(np.int64)


def split_budget(budget, rho, n_users, n_items, s_min, s_max):
    """Floats for users and for items: ``ρ`` of the budget to users, moved into the range where
    both sides can honour ``[s_min, s_max]`` (ρ is a wish; bounds and the total are rules)."""
    budget = int(budget)
    if budget < (n_users + n_items) * s_min:
        raise ValueError(f"a budget of {budget} values (floats, or at emb_bits below 32 the low-bit values its bytes hold) cannot give {n_users + n_items} seen entities the "
                         f"minimum width scall_min_width={s_min}: raise the budget or lower scall_min_width")
    low = max(n_users * s_min, budget - n_items * s_max)
    high = min(n_users * s_max, budget - n_items * s_min)
    users = int(np.clip(np.floor(rho * budget), low, max(low, high)))
    return users, budget - users


def rank_assign(freq, seen, sorted_widths):
    """Full-length width vector: the i-th widest width to the i-th most frequent seen entity
    (ties by id); unseen entities get 0."""
    ids = np.flatnonzero(seen)
    ranked = ids[np.lexsort((ids, -freq[ids]))]
    widths = np.zeros(seen.size, dtype=np.int64)
    widths[ranked] = sorted_widths
    return widths


def alpha_from_action(x, alpha_range, mapping="linear"):
    """Map an action coordinate in [0, 1] to a shape parameter in ``alpha_range``: ``linear`` as
    ``Action.py`` does (``lo + (hi - lo) x``), or ``geometric`` (``lo (hi / lo)^x``, the plugin's own)."""
    lo, hi = alpha_range
    x = float(np.clip(x, 0.0, 1.0))
    return float(lo + (hi - lo) * x) if mapping == "linear" else float(lo * (hi / lo) ** x)


@dataclass
class ActionWidths:
    """An action's full-length widths per side, and the spread ``max p - min p`` of each side's shape
    (SCALL's state reads it)."""

    user_widths: np.ndarray
    item_widths: np.ndarray
    user_p_range: float
    item_p_range: float


def action_widths(action, user_freq, item_freq, seen_users, seen_items, budget, distribution, alpha_range,
                  s_min, s_max, alpha_map="linear", rng=None, correct=True, rescale="loop"):
    """Widths for an action ``(ρ, α_U, α_I)`` in [0, 1]³, the most frequent entity widest.

    ``rng`` given: the authors' sampled shape, else the expected one. ``correct``: the final plan, never
    over ``budget`` (ρ moved to where both sides can honour the bounds, each side rescaled as ``rescale``
    says); not ``correct``: ``Action.py``'s search widths, ρ·budget and (1-ρ)·budget as drawn,
    unrescaled (:func:`raw_side_widths`).
    """
    n_u, n_i = int(seen_users.sum()), int(seen_items.sum())
    alphas = [alpha_from_action(x, alpha_range, alpha_map) for x in action[1:3]]
    shapes = [sampled_shape(n, distribution, a, rng) if rng is not None else order_statistic_shape(n, distribution, a)
              for n, a in zip((n_u, n_i), alphas)]
    if correct:
        b_u, b_i = split_budget(budget, action[0], n_u, n_i, s_min, s_max)
        users, items = (side_widths(n, b, distribution, a, s_min, s_max, shape, rescale)
                        for n, b, a, shape in zip((n_u, n_i), (b_u, b_i), alphas, shapes))
    else:
        rho = float(np.clip(action[0], 1e-5, 1 - 1e-5))  # Action.py's clip
        users, items = (raw_side_widths(shape, b, s_min, s_max)
                        for shape, b in zip(shapes, (rho * budget, (1 - rho) * budget)))
    p_range = [float(shape.max() - shape.min()) if shape.size else 0.0 for shape in shapes]
    return ActionWidths(rank_assign(user_freq, seen_users, users), rank_assign(item_freq, seen_items, items),
                        *p_range)


def plan_widths(action, user_freq, item_freq, seen_users, seen_items, budget, distribution, alpha_range,
                s_min, s_max, alpha_map="geometric"):
    """``(user_widths, item_widths)``, full-length, from an action ``(ρ, α_U, α_I)`` in (0, 1)³ with the
    expected shape and fast mode's geometric α; their sum never exceeds ``budget``."""
    planned = action_widths(action, user_freq, item_freq, seen_users, seen_items, budget, distribution,
                            alpha_range, s_min, s_max, alpha_map, rescale="limit")
    return planned.user_widths, planned.item_widths
