"""Per-row widths trained in packed form: one flat parameter of ``Σ s_e`` floats, so parameters and
optimiser state follow the budget while training, not only on disk.

:class:`~recbole_lightemb.modules.VariableWidthEmbedding` trains an ``n × d`` table under a mask, which
lets a width search change widths in place; once widths are fixed (CIESS's final training) this table
holds only what is kept. A lookup gathers ``offset[e] + j`` for ``j < s_e`` in one indexed read.
"""

import numpy as np
import torch
from torch import nn

from recbole_lightemb.modules.base import LightEmbedding, index_bytes
from recbole_lightemb.modules.precision import LowBitWidths


class PackedWidthEmbedding(LowBitWidths, LightEmbedding):
    """Row ``e`` is ``values[offset[e] : offset[e] + s_e]``, zero-padded to ``d``; width 0 stores nothing.
    :meth:`set_row_bits` stores the rows in fewer bits."""

    def __init__(self, num_embeddings, embedding_dim, widths, padding_idx=None, init_from=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        widths = torch.as_tensor(np.asarray(widths), dtype=torch.long).clone()
        if widths.shape != (self.num_embeddings,) or int(widths.min()) < 0 or int(widths.max()) > embedding_dim:
            raise ValueError(f"widths must be {self.num_embeddings} integers in 0..{embedding_dim}")
        if padding_idx is not None:
            widths[padding_idx] = 0
        if init_from is None:
            init_from = nn.init.xavier_normal_(torch.empty(self.num_embeddings, embedding_dim))
        cols = torch.arange(embedding_dim)
        keep = cols[None, :] < widths[:, None]
        self.values = nn.Parameter(init_from.detach().float()[keep].clone())
        self.register_buffer("widths", widths.to(torch.int16 if embedding_dim > 127 else torch.int8))
        self.register_buffer("offsets", torch.cumsum(widths, 0) - widths, persistent=False)

    def forward(self, ids):
        return self.rounded(self._masters(ids), ids)

    def _masters(self, ids):
        if self.values.numel() == 0:  # every width 0 (no entity seen yet): zeros, still in the graph
            return self.values.new_zeros(*ids.shape, self.embedding_dim) + self.values.sum()
        widths = self.widths[ids].long()
        cols = torch.arange(self.embedding_dim, device=ids.device)
        keep = cols < widths.unsqueeze(-1)
        index = (self.offsets[ids].unsqueeze(-1) + cols).clamp(max=max(self.values.numel() - 1, 0))
        return self.values[index] * keep.to(self.values.dtype)

    def master_rows(self):
        """Every row's float32 values, zero past its width, before any rounding to stored bits."""
        return self._masters(torch.arange(self.num_embeddings, device=self.values.device))

    def full_table(self):
        """Built afresh in training mode or with gradients on; in evaluation without them (RecBole's full-sort
        scoring reads ``weight`` for every batch of a few users) kept while its tensors and the kept table are
        unchanged (the same objects and storage, in-place version counters), and dropped when training resumes,
        so it is not held while training. Writes through ``.data`` bypass version counters: nothing here makes
        them, and a caller that does must call ``train()`` or :meth:`forget_table` after."""
        if self.training or torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return self._table()
        tensors = (self.values, self.widths, self.offsets)
        if any(t.is_inference() for t in tensors):
            return self._table()
        state = [(t, t.untyped_storage(), t.data_ptr(), t._version) for t in tensors]
        kept = getattr(self, "_kept_table", None)
        if kept is None or kept[1]._version != kept[2] or not all(
                a[0] is b[0] and a[1] is b[1] and a[2:] == b[2:] for a, b in zip(kept[0], state)):
            table = self._table()
            kept = self._kept_table = (state, table, table._version)
        return kept[1]

    def forget_table(self):
        """Drop the table kept for evaluation."""
        self._kept_table = None

    def train(self, mode=True):
        self.forget_table()
        return super().train(mode)

    def _table(self):
        return self.forward(torch.arange(self.num_embeddings, device=self.values.device))

    def stored_floats(self):
        return self.values.numel()

    def index_bytes(self):
        """One width per stored row, as the masked form counts them (a width-0 row, an entity a stream
        has not seen yet or the padding row, stores nothing); the offsets are their running sum."""
        return int((self.widths > 0).sum()) * index_bytes(self.embedding_dim)
