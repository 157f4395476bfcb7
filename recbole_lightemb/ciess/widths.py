"""CIESS widths and their cost: one width per entity on a reference scale, mapped onto every table.

The agent picks a width ``s_e`` in ``s_min..D`` per user/item, where ``D`` is the widest
swapped table. A table of width ``d_t`` (NeuMF keeps MF and MLP tables of different widths)
stores ``ceil(s_e · d_t / D)`` floats of that entity: the same fraction of every table, never
below one float and exactly ``d_t`` when ``s_e = D``. Costs are counted as the modules count
them: ``4`` bytes per float (with ``emb_bits`` below 32, the row's packed values and its float32
scale) plus one width index per stored row. ``bits`` is one for every row, or (``emb_bits_policy:
frequency``) ``{role: one per entity}``, each row then also storing its 2-bit class.
"""

import numpy as np

from recbole_lightemb.modules.base import FLOAT_BYTES, index_bytes
from recbole_lightemb.modules.mixed import mixed_bytes, power_of_two_widths
from recbole_lightemb.modules.quantized import FLOAT_BITS, class_bytes, row_bytes


def table_widths(widths, dim, ref_dim):
    """Floats per row of a ``dim``-wide table for reference widths ``widths`` (in ``1..ref_dim``)."""
    widths = np.asarray(widths, dtype=np.int64)
    return np.clip(-((-widths * dim) // ref_dim), 1, dim)


def bits_of(bits, role):
    """A role's bits: one for all, or one per entity."""
    return bits[role] if isinstance(bits, dict) else bits


def table_bytes(widths, dim, ref_dim, bits=FLOAT_BITS):
    """Stored bytes of one table under ``widths``: its rows at ``bits`` (one, or one per row with their classes)
    plus one width index per row."""
    rows = int(row_bytes(table_widths(widths, dim, ref_dim), bits).sum())
    return rows + class_bytes(len(widths), np.ndim(bits) > 0) + len(widths) * index_bytes(dim)


def plan_bytes(widths_by_role, dims_by_role, ref_dim, bits=FLOAT_BITS):
    """Stored bytes of every table: ``widths_by_role[role]`` applies to all ``dims_by_role[role]``."""
    return sum(table_bytes(widths_by_role[role], dim, ref_dim, bits_of(bits, role))
               for role, dims in dims_by_role.items() for dim in dims)


def full_plan_bytes(sizes_by_role, dims_by_role):
    """Bytes of the plain float32 tables (the denominator of every budget fraction)."""
    return sum(sizes_by_role[role] * dim * FLOAT_BYTES for role, dims in dims_by_role.items() for dim in dims)


def fit_to_budget(widths_by_role, dims_by_role, ref_dim, max_bytes, s_min=1, bits=FLOAT_BITS):
    """Shrink the largest widths first until the plan costs at most ``max_bytes``.

    The result is ``min(s_e, c)`` for the largest cap ``c`` that fits, then the entities whose
    width was above ``c`` get ``c + 1`` back, widest first, while the bytes still fit: exactly
    what lowering the largest width one step at a time would reach, found without the loop.
    Raises ``ValueError`` when even ``s_min`` everywhere is over ``max_bytes``.
    """
    widths = {role: np.asarray(w, dtype=np.int64) for role, w in widths_by_role.items()}

    def cost(cap):
        return plan_bytes({r: np.minimum(w, cap) for r, w in widths.items()}, dims_by_role, ref_dim, bits)

    if cost(s_min) > max_bytes:
        raise ValueError(f"the smallest plan (width {s_min} everywhere) needs {cost(s_min)} bytes, "
                         f"over the budget of {max_bytes} bytes")
    top = max(int(w.max()) for w in widths.values() if w.size)
    if cost(top) <= max_bytes:
        return widths
    lo, hi = s_min, top  # cost(lo) fits, cost(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(mid) <= max_bytes else (lo, mid)
    capped = {r: np.minimum(w, lo) for r, w in widths.items()}
    slack = max_bytes - cost(lo)
    # Candidates to regain one step: (role, index, extra bytes), widest original width first.
    candidates = []
    for role, w in widths.items():
        above = np.flatnonzero(w > lo)
        each = bits_of(bits, role)
        each = each[above] if np.ndim(each) else each
        extra = sum(row_bytes(table_widths(np.full(len(above), lo + 1), d, ref_dim), each)
                    - row_bytes(table_widths(np.full(len(above), lo), d, ref_dim), each)
                    for d in dims_by_role[role])
        candidates.extend(zip(-w[above], [role] * len(above), above, np.broadcast_to(extra, above.shape)))
    candidates.sort(key=lambda c: c[0])
    for _, role, index, extra in candidates:
        if extra > slack:
            break
        capped[role][index] = lo + 1
        slack -= extra
    return capped


def grow_to_budget(widths_by_role, dims_by_role, ref_dim, max_bytes, iterations=40, bits=FLOAT_BITS):
    """Scale every width by the largest factor ``k ≥ 1`` whose plan still fits ``max_bytes``.

    A short search can settle on a plan far under the budget; scaling keeps the agent's
    relative allocation (who is wider than whom) and spends the memory the user allowed.
    ``widths ↦ min(ref_dim, round(k·s))`` is monotone in ``k``, so bisection finds ``k`` and
    the result never exceeds ``max_bytes`` (a plan over it is returned unchanged).
    """
    widths = {role: np.asarray(w, dtype=np.int64) for role, w in widths_by_role.items()}

    def scaled(k):
        return {r: np.minimum(np.rint(w * k).astype(np.int64), ref_dim) for r, w in widths.items()}

    if plan_bytes(widths, dims_by_role, ref_dim, bits) > max_bytes:
        return widths
    lo, hi = 1.0, float(ref_dim)  # scaled(lo) fits; scaled(hi) is full width
    if plan_bytes(scaled(hi), dims_by_role, ref_dim, bits) <= max_bytes:
        return scaled(hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if plan_bytes(scaled(mid), dims_by_role, ref_dim, bits) <= max_bytes else (lo, mid)
    return scaled(lo)


def rank_by_frequency(widths_by_role, counts_by_role):
    """Give each role's widths to its entities in frequency order: the most frequent gets the widest.

    The multiset of widths per role is unchanged, so the bytes are too; only who gets which width
    changes. A short search leaves the exploration noise (σ ≈ 6 widths) in the chosen plan, so
    the widths barely follow the frequency the agent sees in its state; this keeps the search's
    width distribution and hands it out by the signal the state carries. Ties in frequency keep
    their id order (a stable sort), so the result depends only on the data.
    """
    ranked = {}
    for role, w in widths_by_role.items():
        w = np.asarray(w, dtype=np.int64)
        order = np.argsort(np.asarray(counts_by_role[role]), kind="stable")
        out = np.empty_like(w)
        out[order] = np.sort(w, kind="stable")
        ranked[role] = out
    return ranked


def mixed_plan_bytes(widths_by_role, dims_by_role, ref_dim, bits=FLOAT_BITS):
    """Stored bytes of every table as mixed-dimension groups with projections (rows at ``bits``, float32
    ``w × d`` projections, group and slot per row)."""
    def table(widths, dim, each):
        per_row = np.ndim(each) > 0
        if not per_row:
            each = None if each == FLOAT_BITS else np.full(len(widths), each)
        return mixed_bytes(table_widths(widths, dim, ref_dim), dim, projection=True, bits=each, per_row=per_row)

    return sum(table(widths_by_role[role], dim, bits_of(bits, role))
               for role, dims in dims_by_role.items() for dim in dims)


def to_mixed(widths_by_role, dims_by_role, ref_dim, max_bytes, s_min=1, grow=True, iterations=60, bits=FLOAT_BITS):
    """The searched widths as mixed-dimension groups (``ciess_projection``) that fit ``max_bytes``.

    Every width is scaled by one factor ``k`` and rounded down to a power of two (or ``ref_dim``; never
    below the narrowest allowed group), so a few groups share each projection; ``k`` is found by
    bisection on whether the rows, projections and index fit the budget, at most 1 unless ``grow``.
    The cost mostly grows with ``k`` (it can dip when a group reaches ``ref_dim`` and its projection
    goes), so ``k`` may stop short of the largest that fits; the result never exceeds the budget.
    Who is wider than whom is kept. Raises ``ValueError`` when even the narrowest groups are over it.
    """
    widths = {role: np.asarray(w, dtype=np.int64) for role, w in widths_by_role.items()}
    candidates = power_of_two_widths(ref_dim, s_min)

    def at(k):
        scaled = {r: np.clip(np.rint(w * k), s_min, ref_dim).astype(np.int64) for r, w in widths.items()}
        return {r: candidates[np.maximum(np.searchsorted(candidates, w, side="right") - 1, 0)]
                for r, w in scaled.items()}

    lo, hi = 1.0 / (ref_dim * max(int(w.max(initial=1)) for w in widths.values())), float(ref_dim) if grow else 1.0
    def cost(k):
        return mixed_plan_bytes(at(k), dims_by_role, ref_dim, bits)

    if cost(lo) > max_bytes:
        raise ValueError(f"ciess_projection: the narrowest groups (width {candidates[0]} everywhere, with their "
                         f"projections) need {cost(lo)} bytes, over the budget of {max_bytes} bytes")
    if cost(hi) <= max_bytes:
        return at(hi)
    for _ in range(iterations):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if cost(mid) <= max_bytes else (lo, mid)
    return at(lo)
