"""``emb: hash``: the hashing trick, ids hashed onto ``floor(emb_budget · n)`` shared rows."""

import numpy as np
import torch

from recbole_lightemb.budget import entities_per_role, require_budget
from recbole_lightemb.modules.codebook import HASH_PRIME as PRIME
from recbole_lightemb.modules.codebook import HashedCodebookEmbedding
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method


@register_method("hash")
class Hashing(EmbeddingMethod):
    """A cheap baseline: collisions are random, not chosen. Codes are computed from the id by a
    seeded hash at every lookup, so no index is stored and the whole budget goes to rows."""

    def check_config(self):
        require_budget(self.config, self.name)

    def plan(self, dataset, tables):
        fraction = require_budget(self.config, self.name)
        rng = np.random.default_rng(self.config["seed"])
        meta = {}
        for role, n in entities_per_role(tables).items():
            n_codes = int(fraction * n)
            if n_codes < 1:
                raise ValueError(f"emb_budget={fraction!r} leaves less than one hash row for the {n} {role} ids; "
                                 f"allowed: emb_budget >= {1 / n:.4g}")
            a, b = int(rng.integers(1, PRIME)), int(rng.integers(0, PRIME))
            meta[role] = {"n_codes": n_codes, "a": a, "b": b}
        return Plan(self.name, {}, meta)

    def build(self, spec, table, plan):
        generator = torch.Generator().manual_seed(self.config["seed"])
        role = plan.meta[spec.role]
        return HashedCodebookEmbedding(spec.num_embeddings, role["n_codes"], spec.embedding_dim, role["a"], role["b"],
                                       padding_idx=spec.padding_idx, init_from=table.weight, generator=generator)
