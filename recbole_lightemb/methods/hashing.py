"""``emb: hash``: the hashing trick, ids hashed onto ``floor(emb_budget · n)`` shared rows; at ``emb_bits``
below 32 the same bytes buy more rows (fewer collisions) of low-bit values."""

import numpy as np
import torch

from recbole_lightemb.budget import entities_per_role, require_budget
from recbole_lightemb.methods.precision import (apply_bits, planned_precision, precision_meta, precision_of,
                                                shared_row_frequency, training_counts)
from recbole_lightemb.modules import FLOAT_BYTES
from recbole_lightemb.modules.codebook import HASH_PRIME as PRIME
from recbole_lightemb.modules.codebook import HashedCodebookEmbedding
from recbole_lightemb.modules.precision import FLOAT_BITS, most_rows, row_bits, table_bytes
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method


def role_widths(tables):
    """The widest table of each role: its rows set what a shared row costs (never over the budget)."""
    widths = {}
    for spec in tables:
        widths[spec.role] = max(widths.get(spec.role, 0), spec.embedding_dim)
    return widths


@register_method("hash")
class Hashing(EmbeddingMethod):
    """A cheap baseline: collisions are random, not chosen. Codes are computed from the id by a
    seeded hash at every lookup, so no index is stored and the whole budget goes to rows."""

    precision = True

    def check_config(self):
        require_budget(self.config, self.name)
        precision_of(self.config)

    def plan(self, dataset, tables):
        fraction = require_budget(self.config, self.name)
        bits, policy = precision_of(self.config)
        counts = training_counts(dataset) if policy == "frequency" else None
        dims = role_widths(tables)
        rng = np.random.default_rng(self.config["seed"])
        meta, arrays = {}, {}
        for role, n in entities_per_role(tables).items():
            if (bits, policy) == (FLOAT_BITS, "fixed"):
                n_codes = int(fraction * n)
            else:
                n_codes = most_rows(fraction * n * dims[role] * FLOAT_BYTES, dims[role], bits, policy)
            if n_codes < 1:
                smallest = table_bytes(1, dims[role], bits, policy) / (n * dims[role] * FLOAT_BYTES)
                raise ValueError(f"emb_budget={fraction!r} leaves less than one hash row for the {n} {role} ids; "
                                 f"allowed: emb_budget >= {smallest:.4g}")
            a, b = int(rng.integers(1, PRIME)), int(rng.integers(0, PRIME))
            meta[role] = {"n_codes": n_codes, "a": a, "b": b}
            if counts is not None:
                read = (a * np.arange(n, dtype=np.int64) + b) % PRIME % n_codes
                frequency = shared_row_frequency(read, counts[role][:n], n_codes)
                arrays[f"codebook_bits_{role}"] = row_bits(frequency, bits, policy).astype(np.uint8)
        return Plan(self.name, arrays, {**meta, **precision_meta(bits, policy)})

    def build(self, spec, table, plan):
        bits, policy = planned_precision(self, plan)
        generator = torch.Generator().manual_seed(self.config["seed"])
        role = plan.meta[spec.role]
        module = HashedCodebookEmbedding(spec.num_embeddings, role["n_codes"], spec.embedding_dim, role["a"],
                                         role["b"], padding_idx=spec.padding_idx, init_from=table.weight,
                                         generator=generator)
        return apply_bits(self.config, spec, module,
                          {"codebook": plan[f"codebook_bits_{spec.role}"] if policy == "frequency" else bits})
