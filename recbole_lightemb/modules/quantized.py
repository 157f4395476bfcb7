"""Rows stored in a few bits each: more coordinates for the same bytes than a narrower float table.

A ``uniform`` table at 25 % of the bytes keeps 16 float32 coordinates per row; at 8 bits the same
bytes keep 60 coordinates plus a float32 scale per row. Training keeps float32 master weights and
rounds them in the forward pass to the stored grid (symmetric, one scale per row: ``max |x| /
(2^(b−1) − 1)``), passing gradients straight through the rounding (low-precision training as in
Li et al., "ALPT", AAAI 2023). What a deployment stores — and what the report counts — is the
``b``-bit values and one float32 scale per row; the master weights are training memory only, which
the report's ``training`` figures show.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_lightemb.modules.base import FLOAT_BYTES, LightEmbedding


def quantize(rows, bits):
    """Integer codes in ``-(2^(b−1)−1) .. 2^(b−1)−1`` and the per-row float32 scale of ``rows``."""
    levels = 2 ** (bits - 1) - 1
    scale = rows.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / levels
    return torch.round(rows.detach() / scale).clamp(-levels, levels), scale


def fake_quantize(rows, bits):
    """``rows`` rounded to ``bits``-bit integers times a per-row scale; gradients pass straight through."""
    codes, scale = quantize(rows, bits)
    return rows + (codes * scale - rows).detach()


def pack(codes, bits):
    """``(n, w)`` integer codes as ``(n, ceil(w·bits/8))`` bytes: what a deployment stores."""
    unsigned = (codes.long() + 2 ** (bits - 1) - 1).cpu().numpy().astype(np.uint32)
    planes = ((unsigned[..., None] >> np.arange(bits)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(len(unsigned), -1), axis=1)


def unpack(packed, width, bits):
    """The integer codes :func:`pack` stored."""
    planes = np.unpackbits(packed, axis=1)[:, : width * bits].reshape(len(packed), width, bits)
    unsigned = (planes.astype(np.int64) << np.arange(bits)).sum(-1)
    return torch.from_numpy(unsigned - (2 ** (bits - 1) - 1))


class QuantizedEmbedding(LightEmbedding):
    """An ``n × width`` table of ``bits``-bit values with a float32 scale per row, zero-padded to ``d``."""

    def __init__(self, num_embeddings, embedding_dim, width, bits, padding_idx=None, init_from=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        if not 1 <= width <= embedding_dim:
            raise ValueError(f"width must be in 1..{embedding_dim}, got {width}")
        self.width, self.bits = int(width), int(bits)
        if init_from is not None:
            data = init_from.detach()[:, : self.width].clone().float()
        else:
            data = nn.init.xavier_normal_(torch.empty(num_embeddings, self.width))
        if padding_idx is not None:
            data[padding_idx] = 0
        self.table = nn.Parameter(data)

    def _out(self, rows):
        return F.pad(fake_quantize(rows, self.bits), (0, self.embedding_dim - self.width))

    def full_table(self):
        return self._out(self._zero_padding_row(self.table))

    def forward(self, ids):
        return self._out(F.embedding(ids, self.table, self.padding_idx))

    def export(self):
        """What a deployment keeps: the packed ``bits``-bit rows and one float32 scale per row."""
        codes, scale = quantize(self._zero_padding_row(self.table), self.bits)
        return pack(codes, self.bits), scale.squeeze(1).float()

    def stored_floats(self):
        """Stored values (``bits`` each) plus one float32 scale per row."""
        return self.num_embeddings * (self.width + 1)

    def stored_bytes(self):
        return self.num_embeddings * row_bytes(self.width, self.bits)


def row_bytes(width, bits):
    """Bytes of one stored row: its values packed into whole bytes, plus its float32 scale."""
    return math.ceil(width * bits / 8) + FLOAT_BYTES


def quantized_width(budget_bytes_per_row, bits, dim):
    """The widest row of ``bits``-bit values whose bytes plus its float32 scale fit ``budget_bytes_per_row``."""
    width = min(dim, int((budget_bytes_per_row - FLOAT_BYTES) * 8 // bits))
    while width > 0 and row_bytes(width, bits) > budget_bytes_per_row:
        width -= 1
    return width
