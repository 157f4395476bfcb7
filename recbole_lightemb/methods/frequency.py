"""``emb: freq``: widths by popularity, no search — mixed-dimension rows with learned projections.

A cheap baseline for the width-search methods (CIESS, SCALL): an entity's width grows with its
training frequency, ``w_e ∝ (f_e + 1)^α`` (Ginart et al.'s popularity rule), rounded to a power of
two so that a few width groups share each projection, and scaled by bisection so that the table's
bytes — rows, projections and the per-row group/slot index — stay within ``emb_budget`` of it.
``α = 0`` gives every row the same width. With ``emb_bits`` below 32 the rows are low-bit values (the
projections stay float32) and the bisection spends the bytes they save on width.
"""

import numpy as np

from recbole_lightemb.budget import require_budget
from recbole_lightemb.methods.precision import (apply_bits, planned_precision, precision_meta, precision_of,
                                                training_counts)
from recbole_lightemb.modules import FLOAT_BYTES
from recbole_lightemb.modules.mixed import MixedDimEmbedding, mixed_bytes, power_of_two_widths
from recbole_lightemb.modules.precision import FLOAT_BITS, row_bits
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method


def widths_at(scale, counts, alpha, candidates):
    """Each entity's target ``scale · (f + 1)^α``, rounded in log2 to the nearest candidate width."""
    target = np.log2(scale) + alpha * np.log2(counts + 1.0)
    nearest = np.abs(np.log2(candidates)[None, :] - target[:, None]).argmin(1)
    return candidates[nearest]


def fit_widths(counts, dim, max_bytes, alpha, min_width, projection, padding_idx=None, bits=None, per_row=False):
    """The widest frequency-ranked widths whose table fits ``max_bytes`` (bisection on the scale); ``bits``
    (one per row) costs the rows in low-bit form (see :func:`mixed_bytes`)."""
    candidates = power_of_two_widths(dim, min_width)

    def at(scale):
        widths = widths_at(scale, counts, alpha, candidates)
        if padding_idx is not None:
            widths[padding_idx] = 0
        return widths

    def cost(widths):
        return mixed_bytes(widths, dim, projection, bits, per_row)

    low, high = 2.0 ** -40, float(dim) * 2.0
    if cost(at(low)) > max_bytes:
        return None
    for _ in range(80):
        mid = (low * high) ** 0.5
        low, high = (mid, high) if cost(at(mid)) <= max_bytes else (low, mid)
    return at(low)


@register_method("freq")
class FrequencyWidths(EmbeddingMethod):
    """Popular entities get wider rows; every width group is projected up to ``d`` (``freq_projection``)."""

    precision = True

    def check_config(self):
        require_budget(self.config, self.name)
        precision_of(self.config)
        alpha = self.config["freq_alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 4:
            raise ValueError(f"freq_alpha={alpha!r}: expected a number in [0, 4] (width ∝ frequency^alpha)")
        min_width = self.config["freq_min_width"]
        if isinstance(min_width, bool) or not isinstance(min_width, int) or min_width < 1:
            raise ValueError(f"freq_min_width={min_width!r}: expected an integer >= 1")
        if not isinstance(self.config["freq_projection"], bool):
            raise ValueError(f"freq_projection={self.config['freq_projection']!r}: expected True or False")

    def plan(self, dataset, tables):
        fraction = require_budget(self.config, self.name)
        alpha, projection = float(self.config["freq_alpha"]), self.config["freq_projection"]
        bits, policy = precision_of(self.config)
        counts = training_counts(dataset)
        arrays, meta = {}, {"alpha": alpha, "projection": projection, "tables": {}, **precision_meta(bits, policy)}
        for spec in tables:
            full = spec.num_embeddings * spec.embedding_dim * FLOAT_BYTES
            min_width = min(self.config["freq_min_width"], spec.embedding_dim)
            frequency = counts[spec.role][: spec.num_embeddings].astype(np.float64)
            each_row = None if bits == FLOAT_BITS and policy == "fixed" else row_bits(frequency, bits, policy)
            per_row = policy == "frequency"
            widths = fit_widths(frequency, spec.embedding_dim, fraction * full, alpha, min_width, projection,
                                spec.padding_idx, each_row, per_row)
            if widths is None:
                narrowest = np.full(spec.num_embeddings, min_width)
                smallest = mixed_bytes(narrowest, spec.embedding_dim, projection, each_row, per_row) / full
                raise ValueError(f"emb_budget={fraction!r} is too small for emb=freq on table {spec.name!r} "
                                 f"(width {min_width} rows, projections and index); allowed: "
                                 f"emb_budget >= {smallest:.4g}")
            arrays[f"{spec.name}_widths"] = widths.astype(np.int16)
            if per_row:
                arrays[f"{spec.name}_bits"] = each_row.astype(np.uint8)
            groups, sizes = np.unique(widths[widths > 0], return_counts=True)
            meta["tables"][spec.name] = {"groups": {int(w): int(n) for w, n in zip(groups, sizes)},
                                         "stored_bytes": mixed_bytes(widths, spec.embedding_dim, projection,
                                                                     each_row, per_row)}
        return Plan(self.name, arrays, meta)

    def build(self, spec, table, plan):
        self.check_plan_setting(plan, "freq_projection", "projection")
        self.check_plan_setting(plan, "freq_alpha", "alpha")
        bits, policy = planned_precision(self, plan)
        module = MixedDimEmbedding(spec.num_embeddings, spec.embedding_dim, plan[f"{spec.name}_widths"],
                                   padding_idx=spec.padding_idx, init_from=table.weight,
                                   projection=plan.meta["projection"])
        each = bits if policy == "fixed" else plan[f"{spec.name}_bits"]
        return apply_bits(self.config, spec, module, module.group_bits(plan[f"{spec.name}_widths"], each))
