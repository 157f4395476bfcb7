"""Every row the same narrow width: the equal-memory baseline every method must beat."""

import torch
import torch.nn.functional as F
from torch import nn

from recbole_lightemb.modules.base import LightEmbedding


class UniformEmbedding(LightEmbedding):
    """An ``n × width`` table, zero-padded to ``embedding_dim`` on the way out."""

    def __init__(self, num_embeddings, embedding_dim, width, padding_idx=None, init_from=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        if not 1 <= width <= embedding_dim:
            raise ValueError(f"width must be in 1..{embedding_dim}, got {width}")
        self.width = int(width)
        if init_from is not None:
            # The first `width` columns of the model's own init keep its scale.
            data = init_from.detach()[:, : self.width].clone()
        else:
            data = torch.empty(num_embeddings, self.width)
            nn.init.xavier_normal_(data)
        if padding_idx is not None:
            data[padding_idx] = 0
        self.table = nn.Parameter(data)

    def _pad(self, rows):
        return F.pad(rows, (0, self.embedding_dim - self.width))

    def full_table(self):
        return self._pad(self.table)

    def forward(self, ids):
        return self._pad(F.embedding(ids, self.table, self.padding_idx))

    def stored_floats(self):
        return self.num_embeddings * self.width
