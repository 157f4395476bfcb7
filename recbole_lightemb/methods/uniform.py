"""``emb: uniform``: one narrow width for every row, the equal-memory baseline."""

from recbole_lightemb.budget import check_fraction, check_positive_int
from recbole_lightemb.config import model_width
from recbole_lightemb.modules import UniformEmbedding
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method


@register_method("uniform")
class Uniform(EmbeddingMethod):
    """Width ``emb_width``, or ``floor(emb_budget · d)`` per table (never over the budget)."""

    def check_config(self):
        budget = check_fraction(self.config, "emb_budget")
        width = check_positive_int(self.config, "emb_width")
        if (budget is None) == (width is None):
            raise ValueError(f"emb=uniform needs exactly one of emb_budget (got {budget!r}) "
                             f"and emb_width (got {width!r})")
        dim = model_width(self.config)  # most models' table width; checked again per table when built
        if isinstance(dim, int) and not isinstance(dim, bool):
            if dim < 1:
                raise ValueError(f"embedding_size={dim!r}: expected a positive integer")
            if width is not None and width > dim:
                raise ValueError(f"emb_width={width}: must be at most embedding_size={dim}")
            if budget is not None and int(budget * dim) < 1:
                raise ValueError(f"emb_budget={budget!r} leaves less than one float per row of a {dim}-wide table; "
                                 f"allowed: emb_budget >= {1 / dim:.4g}")

    def width_for(self, dim):
        width = check_positive_int(self.config, "emb_width")
        if width is None:
            width = int(check_fraction(self.config, "emb_budget") * dim)
            if width < 1:
                raise ValueError(f"emb_budget={self.config['emb_budget']!r} leaves less than one float per row "
                                 f"of a {dim}-wide table; allowed: emb_budget >= {1 / dim:.4g}")
        elif width > dim:
            raise ValueError(f"emb_width={width}: must be at most the table width {dim}")
        return width

    def plan(self, dataset, tables):
        widths = {spec.name: self.width_for(spec.embedding_dim) for spec in tables}
        return Plan(self.name, meta={"widths": widths})

    def build(self, spec, table, plan):
        width = plan.meta["widths"][spec.name]
        return UniformEmbedding(spec.num_embeddings, spec.embedding_dim, width,
                                padding_idx=spec.padding_idx, init_from=table.weight)
