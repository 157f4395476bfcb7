"""The plain table: RecBole's own embedding, only wrapped so it reports its size."""

import torch.nn.functional as F

from recbole_lightemb.modules.base import LightEmbedding


class FullEmbedding(LightEmbedding):
    """Keeps the model's original ``weight`` parameter (same init, same name in ``state_dict``),
    so ``emb: full`` reproduces plain RecBole exactly."""

    def __init__(self, table):
        super().__init__(table.num_embeddings, table.embedding_dim, table.padding_idx)
        # Set directly: ``weight`` is the interface's property, so register_parameter would refuse it.
        self._parameters["weight"] = table.weight

    def full_table(self):
        return self._parameters["weight"]

    def forward(self, ids):
        return F.embedding(ids, self._parameters["weight"], self.padding_idx)

    def stored_floats(self):
        return self.num_embeddings * self.embedding_dim
