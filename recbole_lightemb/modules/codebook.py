"""Rows shared through codes: an entity's vector is the mean of the codebook rows it points to."""

import numpy as np
import torch
from torch import nn

from recbole_lightemb.modules.base import LightEmbedding

CODE_BYTES = 4
"""Codes are kept as int32, like the authors' BACO code and most deployments."""


def init_rows(n_rows, init_from, generator):
    """Codebook rows drawn from the model's own initial table, so their scale matches its init."""
    picks = torch.randint(0, init_from.shape[0], (n_rows,), generator=generator)
    return init_from.detach()[picks].clone()


class CodebookEmbedding(LightEmbedding):
    """``codes`` is ``(n, m)`` (``-1`` = no code); an entity with no code at all is a zero row.

    Codes are kept as a buffer and counted in :meth:`index_bytes`; :class:`HashedCodebookEmbedding`
    computes them from the id instead and stores none.
    """

    def __init__(self, codes, n_codes, embedding_dim, padding_idx=None, init_from=None, generator=None):
        codes = np.asarray(codes)
        codes = codes.reshape(len(codes), -1)
        super().__init__(len(codes), embedding_dim, padding_idx)
        if codes.max(initial=-1) >= n_codes or codes.min(initial=0) < -1:
            raise ValueError(f"codes must lie in -1..{n_codes - 1}")
        codes = torch.as_tensor(codes, dtype=torch.int32).clone()
        if padding_idx is not None:
            codes[padding_idx] = -1
        self.register_buffer("codes", codes)
        self.n_codes = int(n_codes)
        if init_from is None:
            rows = torch.empty(n_codes, embedding_dim)
            nn.init.xavier_normal_(rows)
        else:
            rows = init_rows(n_codes, init_from, generator)
        self.codebook = nn.Parameter(rows)

    def _lookup(self, codes):
        codes = codes.long()
        valid = (codes >= 0).unsqueeze(-1).to(self.codebook.dtype)
        rows = self.codebook[codes.clamp(min=0)] * valid
        return rows.sum(-2) / valid.sum(-2).clamp(min=1)

    def full_table(self):
        return self._lookup(self.codes)

    def forward(self, ids):
        return self._lookup(self.codes[ids])

    def stored_floats(self):
        return self.n_codes * self.embedding_dim

    def index_bytes(self):
        return self.codes.numel() * CODE_BYTES


HASH_PRIME = 2_147_483_647  # 2**31 - 1, for a universal hash ((a·i + b) mod p) mod K


class HashedCodebookEmbedding(LightEmbedding):
    """The hashing trick: id ``i`` reads row ``((a·i + b) mod p) mod n_codes``, computed at every lookup,
    so nothing but the rows and three integers is kept, in memory or in the checkpoint."""

    def __init__(self, num_embeddings, n_codes, embedding_dim, a, b, padding_idx=None, init_from=None,
                 generator=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        self.n_codes, self.a, self.b = int(n_codes), int(a), int(b)
        if init_from is None:
            rows = nn.init.xavier_normal_(torch.empty(n_codes, embedding_dim))
        else:
            rows = init_rows(n_codes, init_from, generator)
        self.codebook = nn.Parameter(rows)

    def codes_of(self, ids):
        return (self.a * ids.long() + self.b) % HASH_PRIME % self.n_codes

    def forward(self, ids):
        rows = self.codebook[self.codes_of(ids)]
        if self.padding_idx is not None:
            rows = rows * (ids != self.padding_idx).unsqueeze(-1).to(rows.dtype)
        return rows

    def full_table(self):
        return self.forward(torch.arange(self.num_embeddings, device=self.codebook.device))

    def stored_floats(self):
        return self.n_codes * self.embedding_dim
