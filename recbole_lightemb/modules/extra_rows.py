"""Entity rows compressed, special rows kept: BERT4Rec's item table ends with a mask-token row that is
not an item, so it stays a full float row while the item rows are compressed."""

import torch
from torch import nn

from recbole_lightemb.modules.base import LightEmbedding


class ExtraRowsEmbedding(LightEmbedding):
    """Rows ``0..n-1`` from ``entities`` (any lightweight table), rows ``n..`` from a full ``extra`` table."""

    def __init__(self, entities, extra_rows):
        super().__init__(entities.num_embeddings + extra_rows.shape[0], entities.embedding_dim, entities.padding_idx)
        self.entities = entities
        self.extra = nn.Parameter(extra_rows.detach().clone().float())

    def full_table(self):
        return torch.cat([self.entities.full_table(), self.extra], 0)

    def forward(self, ids):
        n = self.entities.num_embeddings
        special = ids >= n
        rows = self.entities(ids.clamp(max=n - 1))
        if special.any():
            rows = torch.where(special.unsqueeze(-1), self.extra[(ids - n).clamp(min=0)], rows)
        return rows

    def stored_floats(self):
        return self.entities.stored_floats() + self.extra.numel()

    def stored_bytes(self):
        return self.entities.stored_bytes() + self.extra.numel() * 4

    def index_bytes(self):
        return self.entities.index_bytes()
