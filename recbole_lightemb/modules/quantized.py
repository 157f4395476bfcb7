"""The stored grid of low-bit rows: per-row symmetric rounding and bit packing.

A ``uniform`` table at 25 % of the bytes keeps 16 float32 coordinates per row; at 8 bits the same
bytes keep 60 coordinates plus a float32 scale per row. Rows are rounded to a symmetric grid with one
scale per row, ``max |x| / (2^(b−1) − 1)``, gradients passing straight through the rounding
(low-precision training as in Li et al., "ALPT", AAAI 2023); a deployment keeps the ``b``-bit codes,
packed into whole bytes, and the scale. :mod:`~recbole_lightemb.modules.precision` applies this grid to
the rows of any table (``emb_bits``; ``emb: quant`` is ``emb: uniform`` with ``quant_bits``).
"""

import math

import numpy as np
import torch

from recbole_lightemb.modules.base import FLOAT_BYTES

FLOAT_BITS = 32
"""Bits of a float32 value: rows at 32 bits are plain float32 and carry no scale."""
CLASS_BITS = 2
"""Bits of one row's bit class under per-row bits: four classes, one per value of ``emb_bits`` (2, 4, 8, 32)."""


def levels(bits):
    """The largest code of a ``bits``-bit grid: symmetric, so ``-(2^(b−1)−1) .. 2^(b−1)−1`` (no −2^(b−1))."""
    return 2 ** (bits - 1) - 1


def quantize(rows, bits):
    """Integer codes in ``-levels(b) .. levels(b)`` and the per-row float32 scale of ``rows``."""
    top = levels(bits)
    scale = rows.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / top
    return torch.round(rows.detach() / scale).clamp(-top, top), scale


def fake_quantize(rows, bits):
    """``rows`` rounded to ``bits``-bit integers times a per-row scale; gradients pass straight through."""
    codes, scale = quantize(rows, bits)
    return rows + (codes * scale - rows).detach()


def pack(codes, bits):
    """``(n, w)`` integer codes as ``(n, ceil(w·bits/8))`` bytes: what a deployment stores."""
    unsigned = (codes.long() + levels(bits)).cpu().numpy().astype(np.uint32)
    planes = ((unsigned[..., None] >> np.arange(bits)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(unsigned.shape[0], unsigned.shape[1] * bits), axis=1)


def unpack(packed, width, bits):
    """The integer codes :func:`pack` stored."""
    planes = np.unpackbits(packed, axis=1)[:, : width * bits].reshape(len(packed), width, bits)
    unsigned = (planes.astype(np.int64) << np.arange(bits)).sum(-1)
    return torch.from_numpy(unsigned - levels(bits))


def row_bytes(width, bits):
    """Bytes of one stored row (or of each, for arrays): float32 values, or ``bits``-bit values packed into
    whole bytes plus a float32 scale."""
    width = np.asarray(width)
    bits = np.asarray(bits)
    low = -(-width * bits // 8) + FLOAT_BYTES * (width > 0)  # the values, and the row's float32 scale
    return np.where(bits == FLOAT_BITS, width * FLOAT_BYTES, low)


def class_bytes(n_rows, per_row):
    """Bytes of the per-row bit classes of a parameter of ``n_rows`` rows (none when every row has the same bits)."""
    return math.ceil(n_rows * CLASS_BITS / 8) if per_row else 0


def rows_bytes(width, bits, per_row):
    """Bytes of a parameter's rows: ``width`` and ``bits`` one for all or one per row (at least one is per row)."""
    each = row_bytes(width, bits)
    return int(each.sum()) + class_bytes(each.size, per_row)


def quantized_width(budget_bytes_per_row, bits, dim):
    """The widest row of ``bits``-bit values whose bytes plus its float32 scale fit ``budget_bytes_per_row``."""
    width = min(dim, int((budget_bytes_per_row - FLOAT_BYTES) * 8 // bits))
    while width > 0 and row_bytes(width, bits) > budget_bytes_per_row:
        width -= 1
    return width
