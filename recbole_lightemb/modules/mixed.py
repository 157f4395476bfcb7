"""Rows of a few widths, each width group in its own dense table, projected up to ``d``.

With prefix widths (a width-``s`` row is the first ``s`` coordinates of a ``d``-wide row) a narrow
entity only ever meets the first ``s`` coordinates of its partners, so the extra coordinates of a
wide entity are wasted on every narrow one. Mixed-dimension rows (Ginart et al., "Mixed dimension
embeddings", ISIT 2021; torchrec's mixed-dimension tables) give each width group ``w`` a learned
``w × d`` projection instead: every row reaches all ``d`` coordinates, at the cost of the
projections' floats, which are counted. Without projection a group is zero-padded (prefix widths).

Storage is packed during training too: one ``n_w × w`` parameter per group, so parameters and
optimiser state follow the budget, never an ``n × d`` buffer.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_lightemb.modules.base import FLOAT_BYTES, LightEmbedding, index_bytes
from recbole_lightemb.modules.precision import rows_bytes


def power_of_two_widths(dim, min_width):
    """Powers of two in ``min_width..dim``, and ``dim`` itself: few groups, so few projections to pay for."""
    widths = {dim} | {1 << k for k in range(dim.bit_length()) if min_width <= (1 << k) <= dim}
    return np.array(sorted(w for w in widths if w >= min_width))


def mixed_bytes(widths, dim, projection, bits=None, per_row=False):
    """What a :class:`MixedDimEmbedding` with these widths stores: rows, projections, index. ``bits`` (one per
    row) stores the rows in low-bit form, each group a parameter of its own (``per_row``: with its rows' bit
    classes); the projections stay float32."""
    groups, sizes = np.unique(widths[widths > 0], return_counts=True)
    projections = int(sum(w * dim for w in groups if w < dim)) if projection else 0
    if bits is None:
        rows = int(widths.sum()) * FLOAT_BYTES
    else:
        rows = sum(rows_bytes(w, bits[widths == w], per_row) for w in groups)
    return rows + projections * FLOAT_BYTES + len(widths) * (index_bytes(len(groups)) + index_bytes(int(sizes.max(initial=1))))


class MixedDimEmbedding(LightEmbedding):
    """Per-row widths from a small set; ``group`` and ``slot`` (stored, counted) locate each row."""

    def __init__(self, num_embeddings, embedding_dim, widths, padding_idx=None, init_from=None, projection=True):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        widths = np.asarray(widths, dtype=np.int64).copy()
        if widths.shape != (self.num_embeddings,) or widths.min(initial=0) < 0 or widths.max(initial=0) > embedding_dim:
            raise ValueError(f"widths must be {self.num_embeddings} integers in 0..{embedding_dim}")
        if padding_idx is not None:
            widths[padding_idx] = 0
        if init_from is None:
            init_from = torch.empty(self.num_embeddings, self.embedding_dim)
            nn.init.xavier_normal_(init_from)
        init = init_from.detach().float()
        self.group_widths = sorted({int(w) for w in widths if w > 0}, reverse=True)
        group, slot = np.full(self.num_embeddings, -1), np.zeros(self.num_embeddings, dtype=np.int64)
        self.values, self.projections, self.projected = nn.ParameterList(), nn.ParameterList(), []
        for g, width in enumerate(self.group_widths):
            members = np.flatnonzero(widths == width)
            group[members], slot[members] = g, np.arange(len(members))
            self.values.append(nn.Parameter(init[torch.from_numpy(members), :width].clone()))
            self.projected.append(projection and width < embedding_dim)
            if self.projected[-1]:  # starts as the prefix embedding: [I_w | 0]
                self.projections.append(nn.Parameter(torch.eye(width, embedding_dim)))
        group_type = torch.int8 if index_bytes(len(self.group_widths)) == 1 else torch.int16  # SCALL's: up to d widths
        self.register_buffer("group", torch.from_numpy(group).to(group_type))
        self.register_buffer("slot", torch.from_numpy(slot).to(torch.int32))

    def forward(self, ids):
        if not any(self.projected):
            return self._prefix_rows(ids)
        flat = ids.reshape(-1)
        group, slot = self.group[flat].long(), self.slot[flat].long()
        out = torch.zeros(flat.numel(), self.embedding_dim, device=flat.device, dtype=self.values[0].dtype)
        projection = iter(self.projections)
        for g, width in enumerate(self.group_widths):
            where = (group == g).nonzero().squeeze(1)
            rows = self.values[g][slot[where]]
            rows = rows @ next(projection) if self.projected[g] else F.pad(rows, (0, self.embedding_dim - width))
            out = out.index_copy(0, where, rows)
        return out.view(*ids.shape, self.embedding_dim)

    def _prefix_rows(self, ids):
        """Without projections every group's rows are one flat run of values (as they read: rounded or
        dequantised), row ``e`` at ``start(g) + slot · w_g``: one gather for all ids, not one per group."""
        flat_ids = ids.reshape(-1)
        if not self.group_widths:
            return torch.zeros(*ids.shape, self.embedding_dim, device=ids.device)
        groups = list(self.values)
        values = torch.cat([rows.reshape(-1) for rows in groups])
        starts = np.cumsum([0] + [rows.numel() for rows in groups])[:-1]
        widths = torch.tensor([0, *self.group_widths], device=ids.device)  # by group + 1: a width-0 row is -1
        starts = torch.tensor([0, *starts.tolist()], device=ids.device)
        group, slot = self.group[flat_ids].long() + 1, self.slot[flat_ids].long()
        cols = torch.arange(self.embedding_dim, device=ids.device)
        keep = cols < widths[group].unsqueeze(-1)
        index = (starts[group] + slot * widths[group]).unsqueeze(-1) + cols
        rows = values[index.clamp(max=values.numel() - 1)] * keep.to(values.dtype)
        return rows.view(*ids.shape, self.embedding_dim)

    def full_table(self):
        return self.forward(torch.arange(self.num_embeddings, device=self.group.device))

    def stored_floats(self):
        return sum(p.numel() for p in self.values) + sum(p.numel() for p in self.projections)

    def index_bytes(self):
        """A group id (1 byte, 2 past 127 groups) and a slot inside the group per row."""
        largest = max((p.shape[0] for p in self.values), default=1)
        return self.num_embeddings * (index_bytes(len(self.group_widths)) + index_bytes(largest))

    def group_members(self, widths, g):
        """The rows of group ``g`` among the ``widths`` the table was built with, in the order of its parameter's rows."""
        widths = np.asarray(widths).copy()
        if self.padding_idx is not None:
            widths[self.padding_idx] = 0
        return np.flatnonzero(widths == self.group_widths[g])

    def group_bits(self, widths, bits):
        """``{group parameter: bits}`` for :func:`~recbole_lightemb.modules.precision.apply_precision`: one ``bits``
        for every group, or, per row, each group's rows' among ``widths`` (the table's own, as built)."""
        return {f"values.{g}": bits[self.group_members(widths, g)] if np.ndim(bits) else bits
                for g in range(len(self.group_widths))}

    def widths(self):
        """Each row's width (0 for the padding row)."""
        group = self.group.long()
        table = torch.tensor([0] + self.group_widths, device=group.device)
        return table[group + 1]
