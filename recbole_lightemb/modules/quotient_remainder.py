"""Quotient–remainder compositional embedding (DLRM's QR trick): two small tables, multiplied."""

import math

import torch
from torch import nn

from recbole_lightemb.modules.base import LightEmbedding


class QuotientRemainderEmbedding(LightEmbedding):
    """Entity ``i`` is ``Q[i // m] * R[i % m]``: unique for every id, no index stored."""

    def __init__(self, num_embeddings, embedding_dim, n_quotient_rows, padding_idx=None, init_from=None,
                 generator=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        self.n_remainders = math.ceil(num_embeddings / n_quotient_rows)
        n_quotient = math.ceil(num_embeddings / self.n_remainders)
        scale = init_from.detach().std().item() if init_from is not None and not init_from.is_meta else 0.1
        quotient = torch.randn(n_quotient, embedding_dim, generator=generator) * scale
        # Remainder rows near 1: the product starts at the model's own init scale.
        remainder = 1 + torch.randn(self.n_remainders, embedding_dim, generator=generator) * scale
        self.quotient = nn.Parameter(quotient)
        self.remainder = nn.Parameter(remainder)

    def _rows(self, ids):
        out = self.quotient[ids // self.n_remainders] * self.remainder[ids % self.n_remainders]
        if self.padding_idx is not None:
            out = out * (ids != self.padding_idx).unsqueeze(-1).to(out.dtype)
        return out

    def full_table(self):
        return self._rows(torch.arange(self.num_embeddings, device=self.quotient.device))

    def forward(self, ids):
        return self._rows(ids)

    def stored_floats(self):
        return (self.quotient.shape[0] + self.remainder.shape[0]) * self.embedding_dim
