"""The interface every lightweight table shares, so models and reports need not know the kind."""

import numpy as np
import torch
from torch import nn

FLOAT_BYTES = 4
"""Bytes of one stored float: tables are kept in float32, like RecBole's."""


def index_bytes(max_value):
    """Bytes of the smallest unsigned/signed integer type that holds ``max_value`` (indices, widths)."""
    for dtype in (np.int8, np.int16, np.int32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype).itemsize
    return 8


class LightEmbedding(nn.Module):
    """Stands in for ``nn.Embedding``: same call, same ``weight`` view, plus honest accounting.

    Subclasses store whatever they need and implement :meth:`forward` on ids and
    :meth:`full_table` (the whole ``(num_embeddings, embedding_dim)`` table, differentiable).
    ``stored_floats``/``stored_bytes`` count what a deployment must keep: floats and index arrays.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None):
        super().__init__()
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.padding_idx = padding_idx

    @property
    def weight(self):
        """The whole table, as RecBole models that read ``.weight`` expect."""
        return self.full_table()

    def full_table(self):
        raise NotImplementedError

    def forward(self, ids):
        return self.full_table()[ids]

    def stored_floats(self):
        """Stored values, whatever their precision (their bytes are :meth:`stored_bytes`)."""
        raise NotImplementedError

    def index_bytes(self):
        """Bytes of non-float storage (codes, widths); zero for plain tables."""
        return 0

    def stored_bytes(self):
        """The values at float32, less what low-bit rows save (packed values, per-row scales and bit classes
        counted instead, see :mod:`~recbole_lightemb.modules.precision`), plus the index."""
        from recbole_lightemb.modules.precision import precision_saving  # it builds on this class

        return self.stored_floats() * FLOAT_BYTES + self.index_bytes() - precision_saving(self)

    def _zero_padding_row(self, table):
        """Return ``table`` with the padding row zeroed (without breaking autograd)."""
        if self.padding_idx is None:
            return table
        keep = torch.ones(self.num_embeddings, 1, device=table.device, dtype=table.dtype)
        keep[self.padding_idx] = 0
        return table * keep

    def extra_repr(self):
        return (
            f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}, "
            f"stored_floats={self.stored_floats()}"
        )
