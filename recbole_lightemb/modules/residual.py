"""A shared row plus a small private one: sharing for what neighbours have in common, a few private
coordinates for what tells them apart (BACO's ``baco_residual``). The private rows may be stored in
a few bits per value (``baco_residual_bits``) through the precision axis
(:func:`~recbole_lightemb.modules.precision.apply_precision`), as ``emb: quant`` stores its rows: more
private coordinates for the same bytes, written packed, and trainable without masters."""

import torch.nn.functional as F
from torch import nn

from recbole_lightemb.modules.base import LightEmbedding
from recbole_lightemb.modules.precision import FLOAT_BITS, apply_precision
from recbole_lightemb.modules.quantized import row_bytes


class ResidualEmbedding(LightEmbedding):
    """``shared(ids)`` plus a private ``n × width`` row, zero-padded to ``d``; both are stored and counted.
    With ``bits`` below 32 the private rows are low-bit rows of the precision axis: float32 masters rounded in
    the forward pass (straight-through), or with ``master_free`` the codes themselves; stored as ``bits``-bit
    values with one float32 scale per row."""

    def __init__(self, shared, width, init_from=None, bits=FLOAT_BITS, master_free=None):
        super().__init__(shared.num_embeddings, shared.embedding_dim, shared.padding_idx)
        if not 1 <= width < shared.embedding_dim:
            raise ValueError(f"residual width must be in 1..{shared.embedding_dim - 1}, got {width}")
        self.shared = shared
        self.width, self.bits = int(width), int(bits)
        private = init_from.detach()[:, -self.width:].clone() if init_from is not None else None
        if private is None:
            private = nn.init.xavier_normal_(shared.full_table().detach().new_empty(self.num_embeddings, self.width))
        if self.padding_idx is not None:
            private[self.padding_idx] = 0
        self.private = nn.Parameter(private)
        apply_precision(self, {"private": self.bits}, master_free)

    def _pad(self, rows):
        return F.pad(rows, (0, self.embedding_dim - self.width))

    def full_table(self):
        return self.shared.full_table() + self._pad(self._zero_padding_row(self.private))

    def forward(self, ids):
        return self.shared(ids) + self._pad(F.embedding(ids, self.private, self.padding_idx))

    def stored_floats(self):
        """The shared rows' floats plus the private values (and, quantized, one scale per row)."""
        scales = 0 if self.bits == FLOAT_BITS else self.num_embeddings
        return self.shared.stored_floats() + self.private.numel() + scales

    def index_bytes(self):
        return self.shared.index_bytes()

    def stored_bytes(self):
        return self.shared.stored_bytes() + self.num_embeddings * int(row_bytes(self.width, self.bits))
