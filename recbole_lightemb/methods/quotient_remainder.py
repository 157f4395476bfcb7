"""``emb: qr``: quotient–remainder embeddings sized to ``emb_budget``."""

import math

import torch

from recbole_lightemb.budget import entities_per_role, require_budget
from recbole_lightemb.modules import QuotientRemainderEmbedding
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method


def quotient_rows_for(n, max_rows):
    """The most quotient rows ``q`` with ``q + ceil(n / ceil(n / q))`` total rows within ``max_rows``."""
    for q in range(min(n, max_rows), 0, -1):
        remainders = math.ceil(n / q)
        if math.ceil(n / remainders) + remainders <= max_rows:
            return q
    fewest = min(m + math.ceil(n / m) for m in range(1, math.isqrt(n) + 2))
    raise ValueError(f"emb_budget leaves {max_rows} rows for {n} entities; qr needs at least {fewest}: "
                     "raise emb_budget")


@register_method("qr")
class QuotientRemainder(EmbeddingMethod):
    """A cheap baseline: every id gets a unique product of two shared rows, no index stored."""

    def check_config(self):
        require_budget(self.config, self.name)

    def plan(self, dataset, tables):
        fraction = require_budget(self.config, self.name)
        rows = {role: quotient_rows_for(n, int(fraction * n)) for role, n in entities_per_role(tables).items()}
        return Plan(self.name, meta={"quotient_rows": rows})

    def build(self, spec, table, plan):
        generator = torch.Generator().manual_seed(self.config["seed"])
        return QuotientRemainderEmbedding(spec.num_embeddings, spec.embedding_dim,
                                          plan.meta["quotient_rows"][spec.role], padding_idx=spec.padding_idx,
                                          init_from=table.weight, generator=generator)
