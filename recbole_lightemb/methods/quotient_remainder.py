"""``emb: qr``: quotient–remainder embeddings sized to ``emb_budget``; at ``emb_bits`` below 32 the same
bytes buy more quotient and remainder rows of low-bit values."""

import math

import numpy as np
import torch

from recbole_lightemb.budget import entities_per_role, require_budget
from recbole_lightemb.methods.hashing import role_widths
from recbole_lightemb.methods.precision import (apply_bits, planned_precision, precision_meta, precision_of,
                                                shared_row_frequency, training_counts)
from recbole_lightemb.modules import FLOAT_BYTES, QuotientRemainderEmbedding
from recbole_lightemb.modules.precision import FLOAT_BITS, most_rows, row_bits, table_bytes
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method


def fewest_rows(n):
    """The fewest quotient plus remainder rows that give ``n`` entities unique pairs."""
    return min(m + math.ceil(n / m) for m in range(1, math.isqrt(n) + 2))


def quotient_rows_for(n, max_rows):
    """The most quotient rows ``q`` with ``q + ceil(n / ceil(n / q))`` total rows within ``max_rows``."""
    for q in range(min(n, max_rows), 0, -1):
        remainders = math.ceil(n / q)
        if math.ceil(n / remainders) + remainders <= max_rows:
            return q
    raise ValueError(f"emb_budget leaves {max_rows} rows for {n} entities; qr needs at least {fewest_rows(n)}: "
                     "raise emb_budget")


def split(n, q):
    """(quotient rows, remainder rows) of ``n`` entities over at most ``q`` quotient rows, as the table builds them."""
    remainders = math.ceil(n / q)
    return math.ceil(n / remainders), remainders


def split_bytes(n, q, dim, bits, policy):
    """Bytes of the quotient and remainder rows of ``n`` entities over ``q`` quotient rows."""
    return sum(table_bytes(rows, dim, bits, policy) for rows in split(n, q))


def low_bit_split(n, dim, max_bytes, bits, policy):
    """The most quotient rows whose quotient and remainder rows at ``bits`` under ``policy`` fit ``max_bytes``
    (``None``: not even the fewest rows fit)."""
    max_rows = most_rows(max_bytes, dim, bits, policy) + 2  # two parameters: their class bytes round apart
    while max_rows >= fewest_rows(n):
        q = quotient_rows_for(n, max_rows)
        if split_bytes(n, q, dim, bits, policy) <= max_bytes:
            return q
        max_rows -= 1
    return None


@register_method("qr")
class QuotientRemainder(EmbeddingMethod):
    """A cheap baseline: every id gets a unique product of two shared rows, no index stored."""

    precision = True

    def check_config(self):
        require_budget(self.config, self.name)
        precision_of(self.config)

    def plan(self, dataset, tables):
        fraction = require_budget(self.config, self.name)
        bits, policy = precision_of(self.config)
        dims = role_widths(tables)
        rows, arrays = {}, {}
        for role, n in entities_per_role(tables).items():
            if (bits, policy) == (FLOAT_BITS, "fixed"):
                rows[role] = quotient_rows_for(n, int(fraction * n))
            else:
                full = n * dims[role] * FLOAT_BYTES
                rows[role] = low_bit_split(n, dims[role], fraction * full, bits, policy)
                if rows[role] is None:  # the fewest rows lie near √n
                    least = min(split_bytes(n, q, dims[role], bits, policy)
                                for q in range(1, min(n, 2 * math.isqrt(n) + 2) + 1))
                    raise ValueError(f"emb_budget={fraction!r} leaves too few {bits}-bit rows for the {n} {role} ids "
                                     f"(qr needs at least {fewest_rows(n)}); allowed: emb_budget >= {least / full:.4g}")
            if policy == "frequency":
                n_quotient, n_remainder = split(n, rows[role])
                ids, counts = np.arange(n), training_counts(dataset)[role][:n]
                arrays[f"quotient_bits_{role}"] = row_bits(
                    shared_row_frequency(ids // n_remainder, counts, n_quotient), bits, policy).astype(np.uint8)
                arrays[f"remainder_bits_{role}"] = row_bits(
                    shared_row_frequency(ids % n_remainder, counts, n_remainder), bits, policy).astype(np.uint8)
        return Plan(self.name, arrays, meta={"quotient_rows": rows, **precision_meta(bits, policy)})

    def build(self, spec, table, plan):
        bits, policy = planned_precision(self, plan)
        generator = torch.Generator().manual_seed(self.config["seed"])
        module = QuotientRemainderEmbedding(spec.num_embeddings, spec.embedding_dim,
                                            plan.meta["quotient_rows"][spec.role], padding_idx=spec.padding_idx,
                                            init_from=table.weight, generator=generator)
        if policy == "frequency":
            bits = {name: plan[f"{name}_bits_{spec.role}"] for name in ("quotient", "remainder")}
        else:
            bits = {"quotient": bits, "remainder": bits}
        return apply_bits(self.config, spec, module, bits)
