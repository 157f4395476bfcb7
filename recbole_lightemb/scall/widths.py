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

Mixed precision (``emb_bits_policy: frequency``, the plugin's own; SCALL stores float32 rows): a row of ``b``
bits costs ``b / emb_bits`` of a budget counted in ``emb_bits``-bit values, so every rescale below weighs
each width by its row's cost (``weights``, largest first as the shape is; all ones, the default, is SCALL's
own sum of widths). The head rows are the widest and the most precise.
"""

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, ndtr, ndtri

from recbole_lightemb.modules.precision import class_counts, ladder

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


def _weights(weights, n):
    """Each width's cost per unit (all ones: a plain sum of widths)."""
    return np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)


def _spread(shape, weights):
    """What ``p · budget`` is multiplied by so that ``p`` spreads the budget over the rows' cost: ``Σ p / Σ w·p``,
    exactly 1 for weights of one (both sums taken the same way)."""
    return np.sum(shape) / np.sum(weights * shape)


def fit_to_budget(shape, budget, s_min, s_max, weights=None):
    """Real widths ``clip(λ·shape, s_min, s_max)`` whose cost ``Σ weights·widths`` is ``budget`` (shape sorted
    descending).

    This is the fixed point of SCALL's "clip and renormalise until within bounds". The total is
    monotone and piecewise linear in ``λ``; with prefix sums each evaluation is O(log n), so the
    bisection is free and only the final clip touches all ``n`` entities.
    """
    n = shape.size
    weights = _weights(weights, n)
    if budget >= weights.sum() * s_max:
        return np.full(n, float(s_max))
    shape = np.maximum(shape, shape.max() * 1e-12)  # underflowed tails still scale
    ascending, ascending_w = shape[::-1], weights[::-1]
    prefix = np.concatenate([[0.0], np.cumsum(ascending * ascending_w)])
    prefix_w = np.concatenate([[0.0], np.cumsum(ascending_w)])

    def parts(log_scale):
        scale = np.exp(log_scale)
        bottom = int(np.searchsorted(ascending, s_min / scale, side="right"))
        top = n - int(np.searchsorted(ascending, s_max / scale, side="left"))
        middle = prefix[n - top] - prefix[bottom] if n - top > bottom else 0.0
        top_w, bottom_w = prefix_w[n] - prefix_w[max(n - top, bottom)], prefix_w[bottom]
        return top_w, bottom_w, middle, top_w * s_max + bottom_w * s_min + scale * middle

    lo, hi = np.log(s_min / shape.max()), np.log(s_max / shape.min())  # totals Σw·s_min .. Σw·s_max
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if parts(mid)[3] < budget:
            lo = mid
        else:
            hi = mid
    top_w, bottom_w, middle, _ = parts(hi)
    rest = budget - top_w * s_max - bottom_w * s_min
    scale = rest / middle if middle > 0 else np.exp(hi)
    return np.clip(scale * shape, s_min, s_max)


def loop_to_budget(shape, budget, s_min, s_max, max_iterations=10_000, weights=None):
    """``Action.py``'s final widths before rounding: ``max(s_min, p · budget)``, then clip to
    ``[s_min, s_max]`` and rescale to the budget until a pass lands within the bounds (the authors stop
    after one second; here after ``max_iterations`` passes). It stops at the first pass in bounds, so its
    widest rows can end below ``s_max`` where :func:`fit_to_budget`'s limit has them at it, and when the
    floor alone lifts the tail within bounds it never rescales: the total then exceeds the budget. With
    ``weights`` the budget is a cost, ``Σ weights·sizes``, and the first pass spreads it as ``p`` over
    that cost."""
    weights = _weights(weights, shape.size)
    sizes = np.maximum(s_min, shape * (budget * _spread(shape, weights)))
    for _ in range(max_iterations):
        if sizes.max() <= s_max and sizes.min() >= s_min:
            break
        sizes = np.clip(sizes, s_min, s_max)
        sizes = sizes / np.sum(weights * sizes) * budget
    return sizes


def round_to_budget(real, budget, s_min, s_max, weights=None):
    """Integer widths within ``[s_min, s_max]`` whose cost ``Σ weights·widths`` never exceeds ``budget``.

    Round down, then hand the leftover budget out by largest remainder (ties to the more active
    entity, so a non-increasing ``real`` stays non-increasing) while it pays for the next unit, never
    past ``s_max``; if float error left the floor over budget, take units back from the least active
    widths above ``s_min``.
    """
    weights = _weights(weights, real.size)
    widths = np.clip(np.floor(real), s_min, s_max).astype(np.int64)
    budget = int(budget)
    leftover = budget - float(np.sum(weights * widths))
    if leftover > 0:
        room = np.flatnonzero(widths < s_max)
        remainder = real[room] - widths[room]
        ranked = room[np.lexsort((room, -remainder))]
        take = ranked[np.cumsum(weights[ranked]) <= leftover]
        widths[take] += 1
        leftover -= float(weights[take].sum())
    while leftover < 0:
        above = np.flatnonzero(widths > s_min)[::-1]
        if above.size == 0:
            break
        cut = above[: int(np.searchsorted(np.cumsum(weights[above]), -leftover)) + 1]
        widths[cut] -= 1
        leftover += float(weights[cut].sum())
    return widths


def side_widths(n, budget, distribution, a, s_min, s_max, shape=None, rescale="limit", weights=None):
    """Widths for ``n`` entities of one side, widest first, costing at most ``budget``: the shape
    (default: the expected order statistics) clipped to ``[s_min, s_max]`` and rescaled to the budget,
    by the authors' loop (:func:`loop_to_budget`) or to its limit (:func:`fit_to_budget`), then rounded
    never over the budget."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if budget < _weights(weights, n).sum() * s_min:
        raise ValueError(f"a budget of {budget} values (floats, or at emb_bits below 32 the low-bit values its bytes hold) cannot give {n} entities the minimum width "
                         f"scall_min_width={s_min}")
    shape = order_statistic_shape(n, distribution, a) if shape is None else shape
    real = loop_to_budget(shape, budget, s_min, s_max, weights=weights) if rescale == "loop" else \
        fit_to_budget(shape, budget, s_min, s_max, weights)
    return round_to_budget(real, budget, s_min, s_max, weights)


def raw_side_widths(shape, budget, s_min, s_max, weights=None):
    """``Action.py`` while searching (``correct=False``): ``round(max(s_min, p · budget))``, nothing rescaled,
    so the sum may miss the budget either way; capped at ``s_max``, the table's width (the authors' mask).
    With ``weights``, ``p`` spreads the budget over the rows' cost (``p · budget / Σ weights·p``)."""
    spread = budget if weights is None or not shape.size else budget * _spread(shape, weights)
    return np.minimum(np.round(np.maximum(s_min, shape * spread)), s_max).astype(np.int64)


def split_budget(budget, rho, n_users, n_items, s_min, s_max, weights=(None, None)):
    """Values for users and for items: ``ρ`` of the budget to users, moved into the range where
    both sides can honour ``[s_min, s_max]`` (ρ is a wish; bounds and the total are rules); a side's
    minimum and maximum cost weighs its rows by ``weights``."""
    budget = int(budget)
    cost_u, cost_i = (_weights(w, n).sum() for w, n in zip(weights, (n_users, n_items)))
    if budget < np.ceil(cost_u * s_min) + np.ceil(cost_i * s_min):  # each side's budget is whole values
        raise ValueError(f"a budget of {budget} values (floats, or at emb_bits below 32 the low-bit values its bytes hold) cannot give {n_users + n_items} seen entities the "
                         f"minimum width scall_min_width={s_min}: raise the budget or lower scall_min_width")
    low = int(np.ceil(max(cost_u * s_min, budget - cost_i * s_max)))
    high = int(np.floor(min(cost_u * s_max, budget - cost_i * s_min)))
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


def ranked_bits(freq, seen, bits):
    """Mixed precision over one side's seen entities: ``bits``' ladder (:func:`~recbole_lightemb.modules.precision.ladder`)
    down the frequency ranking that :func:`rank_assign` hands widths out by, head 20 %, torso 30 %, tail 50 %.
    Returns every row's bits (unseen rows, which store nothing, at ``bits``) and each rank's cost in
    ``bits``-bit values (the ``weights`` of the rescales here)."""
    sorted_bits = np.repeat(ladder(bits), class_counts(int(seen.sum())))
    rows = rank_assign(freq, seen, sorted_bits)
    rows[~seen] = bits
    return rows.astype(np.uint8), sorted_bits / bits


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
                  s_min, s_max, alpha_map="linear", rng=None, correct=True, rescale="loop", weights=(None, None)):
    """Widths for an action ``(ρ, α_U, α_I)`` in [0, 1]³, the most frequent entity widest.

    ``rng`` given: the authors' sampled shape, else the expected one. ``correct``: the final plan, never
    over ``budget`` (ρ moved to where both sides can honour the bounds, each side rescaled as ``rescale``
    says); not ``correct``: ``Action.py``'s search widths, ρ·budget and (1-ρ)·budget as drawn,
    unrescaled (:func:`raw_side_widths`). ``weights``: each side's cost per width unit by rank (mixed
    precision, :func:`ranked_bits`), or None for a plain sum.
    """
    n_u, n_i = int(seen_users.sum()), int(seen_items.sum())
    alphas = [alpha_from_action(x, alpha_range, alpha_map) for x in action[1:3]]
    shapes = [sampled_shape(n, distribution, a, rng) if rng is not None else order_statistic_shape(n, distribution, a)
              for n, a in zip((n_u, n_i), alphas)]
    if correct:
        b_u, b_i = split_budget(budget, action[0], n_u, n_i, s_min, s_max, weights)
        users, items = (side_widths(n, b, distribution, a, s_min, s_max, shape, rescale, w)
                        for n, b, a, shape, w in zip((n_u, n_i), (b_u, b_i), alphas, shapes, weights))
    else:
        rho = float(np.clip(action[0], 1e-5, 1 - 1e-5))  # Action.py's clip
        users, items = (raw_side_widths(shape, b, s_min, s_max, w)
                        for shape, b, w in zip(shapes, (rho * budget, (1 - rho) * budget), weights))
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
