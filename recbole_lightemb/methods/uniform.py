"""``emb: uniform``: one narrow width for every row, the equal-memory baseline; at ``emb_bits`` below 32 the
same bytes buy a wider row of low-bit values (``emb: quant`` is this with ``quant_bits``)."""

from recbole_lightemb.budget import check_fraction, check_positive_int
from recbole_lightemb.config import model_width
from recbole_lightemb.methods.precision import (apply_bits, planned_precision, precision_meta, precision_of,
                                                training_counts)
from recbole_lightemb.modules import FLOAT_BYTES, UniformEmbedding
from recbole_lightemb.modules.precision import FLOAT_BITS, row_bits, rows_bytes, table_bytes
from recbole_lightemb.modules.quantized import quantized_width
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method


def smallest_budget(dim, bits):
    """The least ``emb_budget`` that pays for one ``bits``-bit value (and its row's scale) in every row."""
    return table_bytes(1, 1, bits, "fixed") / (dim * FLOAT_BYTES)


def fixed_width(budget, dim, bits):
    """The widest row at ``bits`` within ``budget`` of a ``dim``-wide float32 row (0: none fits)."""
    if bits == FLOAT_BITS:
        return int(budget * dim)
    return quantized_width(budget * dim * FLOAT_BYTES, bits, dim)


@register_method("uniform")
class Uniform(EmbeddingMethod):
    """Width ``emb_width``, or the widest that ``emb_budget`` pays for per table (never over the budget)."""

    precision = True

    def check_config(self):
        budget = check_fraction(self.config, "emb_budget")
        width = check_positive_int(self.config, "emb_width")
        bits, policy = precision_of(self.config)
        if (budget is None) == (width is None):
            raise ValueError(f"emb=uniform needs exactly one of emb_budget (got {budget!r}) "
                             f"and emb_width (got {width!r})")
        dim = model_width(self.config)  # most models' table width; checked again per table when built
        if isinstance(dim, int) and not isinstance(dim, bool):
            if dim < 1:
                raise ValueError(f"embedding_size={dim!r}: expected a positive integer")
            if width is not None and width > dim:
                raise ValueError(f"emb_width={width}: must be at most embedding_size={dim}")
            if budget is not None and policy == "fixed" and fixed_width(budget, dim, bits) < 1:
                self._too_small(budget, dim, bits)

    def _too_small(self, budget, dim, bits):
        what = "float" if bits == FLOAT_BITS else f"{bits}-bit value and a row scale"
        raise ValueError(f"emb_budget={budget!r} leaves less than one {what} per row of a {dim}-wide table; "
                         f"allowed: emb_budget >= {smallest_budget(dim, bits):.4g}")

    def width_for(self, dim, bits=FLOAT_BITS, each_row=None):
        """The table's width: ``emb_width``, or the widest within ``emb_budget`` (``each_row``: per-row bits of
        the ``frequency`` policy)."""
        width = check_positive_int(self.config, "emb_width")
        if width is not None:
            if width > dim:
                raise ValueError(f"emb_width={width}: must be at most the table width {dim}")
            return width
        budget = check_fraction(self.config, "emb_budget")
        if each_row is None:
            width = fixed_width(budget, dim, bits)
            if width < 1:
                self._too_small(budget, dim, bits)
            return width
        limit = budget * len(each_row) * dim * FLOAT_BYTES
        width = dim
        while width > 0 and rows_bytes(width, each_row, True) > limit:
            width -= 1
        if width < 1:
            smallest = rows_bytes(1, each_row, True) / (len(each_row) * dim * FLOAT_BYTES)
            raise ValueError(f"emb_budget={budget!r} leaves less than one value per row of a {dim}-wide table at "
                             f"emb_bits={bits}, emb_bits_policy=frequency; allowed: emb_budget >= {smallest:.4g}")
        return width

    def plan(self, dataset, tables):
        bits, policy = precision_of(self.config)
        arrays, widths = {}, {}
        counts = training_counts(dataset) if policy == "frequency" else None
        for spec in tables:
            each_row = None
            if counts is not None:
                each_row = row_bits(counts[spec.role][: spec.num_embeddings], bits, policy)
                arrays[f"{spec.name}_bits"] = each_row.astype("uint8")
            widths[spec.name] = self.width_for(spec.embedding_dim, bits, each_row)
        return Plan(self.name, arrays, meta={"widths": widths, **precision_meta(bits, policy)})

    def build(self, spec, table, plan):
        bits, policy = planned_precision(self, plan)
        module = UniformEmbedding(spec.num_embeddings, spec.embedding_dim, plan.meta["widths"][spec.name],
                                  padding_idx=spec.padding_idx, init_from=table.weight)
        return apply_bits(self.config, spec, module,
                          {"table": plan[f"{spec.name}_bits"] if policy == "frequency" else bits})
