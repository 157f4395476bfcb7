"""A shared row plus a small private one: sharing for what neighbours have in common, a few private
coordinates for what tells them apart (BACO's ``baco_residual``)."""

import torch.nn.functional as F
from torch import nn

from recbole_lightemb.modules.base import LightEmbedding


class ResidualEmbedding(LightEmbedding):
    """``shared(ids)`` plus a private ``n × width`` row, zero-padded to ``d``; both are stored and counted."""

    def __init__(self, shared, width, init_from=None):
        super().__init__(shared.num_embeddings, shared.embedding_dim, shared.padding_idx)
        if not 1 <= width < shared.embedding_dim:
            raise ValueError(f"residual width must be in 1..{shared.embedding_dim - 1}, got {width}")
        self.shared = shared
        self.width = int(width)
        private = init_from.detach()[:, -self.width:].clone() if init_from is not None else None
        if private is None:
            private = nn.init.xavier_normal_(shared.full_table().detach().new_empty(self.num_embeddings, self.width))
        if self.padding_idx is not None:
            private[self.padding_idx] = 0
        self.private = nn.Parameter(private)

    def _pad(self, rows):
        return F.pad(rows, (0, self.embedding_dim - self.width))

    def full_table(self):
        return self.shared.full_table() + self._pad(self._zero_padding_row(self.private))

    def forward(self, ids):
        return self.shared(ids) + self._pad(F.embedding(ids, self.private, self.padding_idx))

    def stored_floats(self):
        return self.shared.stored_floats() + self.private.numel()

    def index_bytes(self):
        return self.shared.index_bytes()
