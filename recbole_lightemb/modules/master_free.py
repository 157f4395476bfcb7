"""Low-bit rows trained without float32 masters: what a table stores is what it trains (``emb_master_free``).

With masters (:mod:`~recbole_lightemb.modules.precision`'s default) every low-bit row keeps a float32 copy as
wide as the row, its gradient and the optimiser's two moments: a 4-bit table at 10 % of the stored bytes holds
about two thirds of a full table's bytes while training. Here the ``b``-bit codes are the only copy of the
rows: packed ``8 / b`` to a byte in a buffer, with one learned step size per row (its log, a float32 parameter
trained by RecBole's own optimiser, as ALPT learns it: Li et al., AAAI 2023) and a row-wise optimiser state.
Stochastic rounding is unbiased but not free: its variance grows with the update's size against the grid's
step, so 2- and 4-bit rows train noisier than 8-bit ones (``docs/methods.md`` has the figures).

A read by ids dequantises only those rows. Their gradient is applied in place when it arrives (a tensor hook,
during ``backward``): a row-wise RMSprop step (the default; one float of state per row, its decayed mean
squared gradient: Adam's step without the first moment, which would cost a float per value), a row-wise
Adagrad step (the running sum instead, as FBGEMM's exact row-wise Adagrad) or a plain SGD step, divided by the
row's step size and rounded stochastically onto the integer grid, so the expected code is the exact update;
codes are clipped to the grid. Each read is its own update: a table read twice in one batch (BPR's positive
and negative items) takes two steps. The hook also measures the gradient it is handed
(:attr:`MasterFreeRows.peak_grad_bytes`). The rounding's generator is not in the checkpoint: a resumed run
rounds from a fresh seed.

The trained codes may hold more bits than the rows stored (``emb_master_free_bits``: 16 for 2-, 4- or 8-bit
rows; or 8 for 2- and 4-bit ones; per-row bits train every row at one such width). They are then a fixed-point
master: a read rounds each row to its stored grid spanning the row's largest value, as ``emb: quant`` rounds
its float32 masters (gradients passing straight through), and the step size is kept by a rule instead of
learned: after each update a row whose largest code left the grid, or fell below half of it, is rescaled so
that it spans the grid again (update and rescale are rounded once, stochastically). A learned step size could not keep up here: after 30 epochs of BPR on
ml-100k half the 16-bit codes sat at the grid's edge. The cost is the trained codes' bytes while training
(2 bytes a value at 16 bits); the step sizes then hold no gradient or optimiser state.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_lightemb.modules.quantized import levels, quantize, rows_bytes

OPTIMIZERS = {"rowwise_adagrad": "one float per row", "rowwise_rmsprop": "one float per row", "sgd": "none"}
"""Row-wise optimisers master-free rows can be trained by, and the state each holds."""
BITS = (2, 4, 8)
TRAIN_BITS = (2, 4, 8, 16)
"""Bits the trained codes may hold: the stored rows' own, or more (16-bit codes are an int16 buffer)."""
EPS = 1e-8
DECAY = 0.999
"""``rowwise_rmsprop``'s decay of the mean squared gradient (Adam's β2); the first update sets it."""


@dataclass(frozen=True)
class MasterFree:
    """How master-free rows are trained: the row-wise optimiser, its learning rate, the rounding's seed, and
    the bits of the trained codes (None: the stored rows' bits)."""

    optimizer: str
    lr: float
    seed: int
    bits: int | None = None


def pack_codes(codes, bits):
    """Integer codes ``(..., w)`` in ``-(2^(b−1)−1) .. 2^(b−1)−1`` as ``(..., ceil(w·b/8))`` bytes, ``8 / b``
    codes to a byte, the first in the lowest bits."""
    per_byte = 8 // bits
    unsigned = (codes + levels(bits)).to(torch.int64)
    pad = (-unsigned.shape[-1]) % per_byte
    if pad:
        unsigned = torch.cat([unsigned, unsigned.new_zeros(*unsigned.shape[:-1], pad)], -1)
    shifts = bits * torch.arange(per_byte, device=codes.device)
    grouped = unsigned.view(*unsigned.shape[:-1], unsigned.shape[-1] // per_byte, per_byte)
    return (grouped << shifts).sum(-1).to(torch.uint8)


def unpack_codes(packed, width, bits):
    """The integer codes :func:`pack_codes` stored, as floats."""
    per_byte = 8 // bits
    shifts = bits * torch.arange(per_byte, device=packed.device)
    unsigned = (packed.to(torch.int64).unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return unsigned.flatten(-2)[..., :width].to(torch.float32) - levels(bits)


class MasterFreeRows(nn.Module):
    """A ``(rows, width)`` parameter replaced by its codes (the ``bits``-bit stored ones, or finer), a per-row step
    size (learned, or kept by a rule when the codes are finer) and a row-wise optimiser state; the table's code
    reads it through :class:`StoredRows`."""

    def __init__(self, rows, bits, training):
        super().__init__()
        stored = sorted(set(np.unique(bits).tolist()))
        if not set(stored) <= set(BITS):
            raise ValueError(f"emb_master_free: rows of {', '.join(map(str, stored))} bits; master-free training "
                             f"needs every row in {', '.join(map(str, BITS))}")
        if training.optimizer not in OPTIMIZERS:
            raise ValueError(f"emb_master_free_optimizer={training.optimizer!r}: allowed "
                             + ", ".join(f"{name} (state: {state})" for name, state in OPTIMIZERS.items()))
        train_bits = int(stored[-1] if training.bits is None else training.bits)
        if train_bits not in TRAIN_BITS or train_bits < stored[-1]:
            raise ValueError(f"emb_master_free_bits={training.bits!r}: rows stored in up to {stored[-1]} bits train "
                             f"codes of {', '.join(str(b) for b in TRAIN_BITS if b >= stored[-1])} bits")
        self.width, self.train_bits = int(rows.shape[1]), train_bits
        self.fixed_bits = int(stored[0]) if np.ndim(bits) == 0 else None
        self.optimizer, self.lr, self.seed = training.optimizer, float(training.lr), int(training.seed)
        if self.fixed_bits is None:  # per-row bits (the plan rebuilds them: not in the checkpoint)
            row_bits = torch.as_tensor(np.asarray(bits).astype(np.uint8), device=rows.device)
            self.register_buffer("row_bits", row_bits, persistent=False)
        self.absmax = self.fixed_bits != train_bits  # finer codes than some stored rows: a fixed-point master
        codes, scale = quantize(rows.detach().float(), train_bits)
        self.register_buffer("codes", self._pack(codes))
        # a parameter either way (a model whose only tables are these still has one for RecBole's optimiser), learned
        # only where the trained codes are the stored ones; otherwise the rule in _apply_gradient keeps it
        self.log_step = nn.Parameter(scale.squeeze(-1).log(), requires_grad=not self.absmax)
        if self.optimizer != "sgd":
            self.register_buffer("sq", torch.zeros(rows.shape[0], device=rows.device))
        self.peak_grad_bytes = 0
        self._generator = None

    @property
    def num_rows(self):
        return self.codes.shape[0]

    def _pack(self, codes):
        if self.train_bits == 16:
            return codes.to(torch.int16)
        return pack_codes(codes, self.train_bits)

    def trained_codes(self, ids=None):
        """The trained codes of rows ``ids`` (all by default), as floats."""
        packed = self.codes if ids is None else self.codes[ids]
        if self.train_bits == 16:
            return packed.to(torch.float32)
        return unpack_codes(packed, self.width, self.train_bits)

    def _stored_levels(self, ids=None):
        """The largest stored code of rows ``ids``: one for all, or ``(len(ids), 1)`` under per-row bits."""
        if self.fixed_bits is not None:
            return float(levels(self.fixed_bits))
        return levels((self.row_bits if ids is None else self.row_bits[ids]).float()).unsqueeze(-1)

    def _stored(self, ids=None):
        """The stored codes of rows ``ids`` (all by default), as floats, and the trained codes per stored level:
        the trained codes themselves, or (finer trained codes) rounded to the stored grid spanning each row's
        largest value, as ``emb: quant`` rounds its float32 masters."""
        codes = self.trained_codes(ids)
        if not self.absmax:
            return codes, 1.0
        top = self._stored_levels(ids)
        ratio = codes.abs().amax(-1, keepdim=True).clamp(min=1.0) / top
        return torch.round(codes / ratio).clamp(-top, top), ratio

    def integer_codes(self, ids=None):
        """The stored codes of rows ``ids`` (all by default), as floats."""
        return self._stored(ids)[0]

    def rows(self, ids, frozen_id=None):
        """Rows ``ids`` (any shape) as stored, as floats; while training with gradients on, their gradient
        updates their trained codes (never the row of ``frozen_id``, a padding id, as ``F.embedding`` leaves
        it)."""
        flat = ids.reshape(-1)
        codes, ratio = self._stored(flat)
        out = codes * (self._step_size(flat).unsqueeze(-1) * ratio)
        if self.training and torch.is_grad_enabled():
            if not out.requires_grad:  # step sizes kept by the rule, not learned: no parameter carries the gradient
                out.requires_grad_()
            out.register_hook(partial(self._apply_gradient, flat, frozen_id))
        return out.view(*ids.shape, self.width)

    def _step_size(self, ids):
        return self.log_step[ids].exp()

    def step_sizes(self):
        """Every row's stored step size (its float32 scale as stored), detached."""
        step = self.log_step.detach().exp()
        return step * self._stored()[1].reshape(-1) if self.absmax else step

    def full(self):
        return self.rows(torch.arange(self.num_rows, device=self.codes.device))

    @torch.no_grad()
    def _apply_gradient(self, flat, frozen_id, grad):
        ids, where = torch.unique(flat, return_inverse=True)
        step = grad.new_zeros(len(ids), self.width).index_add_(0, where, grad)
        self.peak_grad_bytes = max(self.peak_grad_bytes, (grad.numel() + step.numel()) * grad.element_size())
        if frozen_id is not None:
            keep = ids != frozen_id
            ids, step = ids[keep], step[keep]
        if self.optimizer != "sgd":
            square, held = step.pow(2).mean(1), self.sq[ids]
            if self.optimizer == "rowwise_adagrad":
                held = held + square
            else:
                held = torch.where(held > 0, DECAY * held + (1 - DECAY) * square, square)
            self.sq[ids] = held
            step = step / (held.sqrt() + EPS).unsqueeze(1)
        codes = self.trained_codes(ids) - self.lr * step / self._step_size(ids).unsqueeze(1)
        top = levels(self.train_bits)
        if self.absmax:  # keep each row's largest code in (top / 2, top]: grown on overflow, shrunk past half
            peak = codes.abs().amax(1)
            factor = torch.where((peak > top) | ((peak < top / 2) & (peak > 0)), peak / top, 1.0)
            codes = codes / factor.unsqueeze(1)
            self.log_step.data[ids] += factor.log()
        noise = torch.rand(codes.shape, generator=self._rounding(codes.device), device=codes.device)
        self.codes[ids] = self._pack(torch.floor(codes + noise).clamp(-top, top))

    def _rounding(self, device):
        """The stochastic rounding's generator, seeded from the run's seed at the first update."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def read(self, owner, leaf):
        """What ``owner.<leaf>`` reads as (see :func:`~recbole_lightemb.modules.precision.apply_precision`)."""
        return StoredRows(self)

    def bits_per_row(self, n_rows):
        """Every row's stored bits as a NumPy array."""
        if self.fixed_bits is not None:
            return np.full(n_rows, self.fixed_bits, dtype=np.int64)
        return self.row_bits.cpu().numpy().astype(np.int64)

    def stored_bytes(self, rows):
        """Bytes of the rows as stored: packed codes and a float32 scale per row (and a bit class per row under
        per-row bits)."""
        return rows_bytes(self.width, self.bits_per_row(self.num_rows), self.fixed_bits is None)

    def load_stored(self, codes, scale):
        """Take the stored form back: integer codes ``(rows, width)`` and per-row scales (finer trained codes
        become the stored ones on their grid, which read back as them)."""
        with torch.no_grad():
            ratio = levels(self.train_bits) / self._stored_levels() if self.absmax else 1.0
            self.codes.copy_(self._pack(torch.round(codes.to(self.codes.device).float() * ratio)))
            scale = torch.as_tensor(scale, dtype=torch.float32, device=self.codes.device)
            self.log_step.copy_((scale / torch.as_tensor(ratio, device=scale.device).reshape(-1)).log())


class StoredRows:
    """``self.<parameter>`` of a table whose rows are master-free: indexing it by ids (or ``F.embedding``)
    reads and trains only those rows; any other use reads the whole table, dequantised."""

    def __init__(self, store):
        object.__setattr__(self, "_store", store)

    @property
    def shape(self):
        return torch.Size((self._store.num_rows, self._store.width))

    @property
    def dtype(self):
        return self._store.log_step.dtype

    @property
    def device(self):
        return self._store.codes.device

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return self.shape.numel()

    def __getitem__(self, index):
        if torch.is_tensor(index) and not index.is_floating_point() and index.dtype != torch.bool:
            return self._store.rows(index)
        return self._store.full()[index]

    def __getattr__(self, name):
        return getattr(self._store.full(), name)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.embedding:
            ids, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            padding = args[2] if len(args) > 2 else kwargs.get("padding_idx")
            if isinstance(weight, cls) and not isinstance(ids, cls):
                if padding is not None and padding < 0:
                    padding += weight._store.num_rows
                return weight._store.rows(ids, padding)

        def whole(value):
            return value._store.full() if isinstance(value, cls) else value

        return func(*map(whole, args), **{key: whole(value) for key, value in kwargs.items()})


def _whole_table(operator):
    """``StoredRows``'s arithmetic: the whole table, dequantised, as the operand."""
    return lambda self, *other: getattr(self._store.full(), operator)(*other)


for _operator in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__matmul__",
                  "__neg__"):
    setattr(StoredRows, _operator, _whole_table(_operator))


def master_free_stores(module):
    """Every :class:`MasterFreeRows` inside ``module``."""
    return [m for m in module.modules() if isinstance(m, MasterFreeRows)]
