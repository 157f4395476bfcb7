"""``emb: quant``: every row stored in ``quant_bits`` bits, as wide as the budget then allows.

Since precision became an axis of every method, ``emb: quant`` is ``emb: uniform`` with its bits from
``quant_bits``: the same width, the same rounding, the same plan and results as before (and it keeps
``quant_bits: 16``, which ``emb_bits`` does not offer). Its checkpoints written before still load.
"""

from recbole_lightemb.budget import require_budget
from recbole_lightemb.config import model_width
from recbole_lightemb.methods.precision import DEFAULT, apply_bits
from recbole_lightemb.modules import FLOAT_BYTES, UniformEmbedding
from recbole_lightemb.modules.quantized import quantized_width
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method

BITS = (2, 4, 8, 16)


@register_method("quant")
class Quantized(EmbeddingMethod):
    """Spends the budget on more coordinates at lower precision instead of fewer float32 ones."""

    bits_keys = ("quant_bits",)  # what emb_master_free checks

    def check_config(self):
        budget = require_budget(self.config, self.name)
        bits = self.config["quant_bits"]
        if bits not in BITS or isinstance(bits, bool):
            raise ValueError(f"quant_bits={bits!r}: allowed {', '.join(map(str, BITS))}")
        if (self.config["emb_bits"], self.config["emb_bits_policy"]) != DEFAULT:
            raise ValueError(f"emb_bits={self.config['emb_bits']!r}, emb_bits_policy="
                             f"{self.config['emb_bits_policy']!r}: emb=quant takes its bits from quant_bits; "
                             "allowed: emb=uniform with emb_bits and emb_bits_policy, or emb=quant without them")
        dim = model_width(self.config)
        if isinstance(dim, int) and quantized_width(budget * dim * FLOAT_BYTES, bits, dim) < 1:
            smallest = (FLOAT_BYTES + bits / 8) / (dim * FLOAT_BYTES)
            raise ValueError(f"emb_budget={budget!r} cannot pay for one {bits}-bit value and a row scale; "
                             f"allowed: emb_budget >= {smallest:.4g}")

    def plan(self, dataset, tables):
        budget, bits = require_budget(self.config, self.name), self.config["quant_bits"]
        widths = {}
        for spec in tables:
            width = quantized_width(budget * spec.embedding_dim * FLOAT_BYTES, bits, spec.embedding_dim)
            if width < 1:
                raise ValueError(f"emb_budget={budget!r} cannot pay for one {bits}-bit value and a row scale in "
                                 f"table {spec.name!r}")
            widths[spec.name] = width
        return Plan(self.name, meta={"bits": bits, "widths": widths})

    def build(self, spec, table, plan):
        self.check_plan_setting(plan, "quant_bits", "bits")
        module = UniformEmbedding(spec.num_embeddings, spec.embedding_dim, plan.meta["widths"][spec.name],
                                  padding_idx=spec.padding_idx, init_from=table.weight)
        return apply_bits(self.config, spec, module, {"table": plan.meta["bits"]})
