"""``emb: hash``: the hashing trick, ids hashed onto ``floor(emb_budget · n)`` shared rows."""

import numpy as np
import torch

from recbole_lightemb.budget import entities_per_role, require_budget
from recbole_lightemb.modules import CodebookEmbedding
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method

PRIME = 2_147_483_647  # 2**31 - 1, for a universal hash ((a·i + b) mod p) mod K


def universal_hash(n, n_codes, a, b):
    ids = np.arange(n, dtype=np.int64)
    return ((a * ids + b) % PRIME % n_codes).astype(np.int32)


@register_method("hash")
class Hashing(EmbeddingMethod):
    """A cheap baseline: collisions are random, not chosen. Codes are recomputed from the id by a
    seeded hash, so no index is stored and the whole budget goes to rows."""

    def check_config(self):
        require_budget(self.config, self.name)

    def plan(self, dataset, tables):
        fraction = require_budget(self.config, self.name)
        rng = np.random.default_rng(self.config["seed"])
        arrays, meta = {}, {}
        for role, n in entities_per_role(tables).items():
            n_codes = max(1, int(fraction * n))
            a, b = int(rng.integers(1, PRIME)), int(rng.integers(0, PRIME))
            arrays[f"{role}_codes"] = universal_hash(n, n_codes, a, b)
            meta[role] = {"n_codes": n_codes, "a": a, "b": b}
        return Plan(self.name, arrays, meta)

    def build(self, spec, table, plan):
        generator = torch.Generator().manual_seed(self.config["seed"])
        return CodebookEmbedding(plan[f"{spec.role}_codes"], plan.meta[spec.role]["n_codes"], spec.embedding_dim,
                                 padding_idx=spec.padding_idx, init_from=table.weight, generator=generator,
                                 codes_stored=False)
