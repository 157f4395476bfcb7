"""Precision as an axis: the rows of any table stored in a few bits per value, beside its shape.

A method decides a table's shape (widths, rows, codes); this module decides how many bits each of
its stored row values takes. Any :class:`~recbole_lightemb.modules.base.LightEmbedding` that keeps
its rows in ``(rows, width)`` parameters joins by :func:`apply_precision` on those parameters: every
read of them is rounded to the stored grid (as a ``torch.nn.utils.parametrize`` parametrization would,
but the parameter keeps its name), so the module's own code and its checkpoint keys are unchanged. The
grid is symmetric with one float32 scale per row (per row, not per block): ``scale = max |x| /
(2^(b−1) − 1)``, as ``emb: quant`` has always stored its rows. Rows of 32 bits are plain float32 and
carry no scale.

Training keeps float32 masters and passes gradients straight through the rounding (Li et al.,
"ALPT", AAAI 2023); what a deployment stores, what :meth:`LightEmbedding.stored_bytes` counts and what
:mod:`recbole_lightemb.modules.packed_file` writes, is the packed values, the scales and, with
per-row bits, a 2-bit bit class per row.

Mixed precision (policy ``frequency``): the rows of a table are ranked by the training interactions
that read them and split as the frequency buckets of the report are (head 20 %, torso 30 %, tail
50 % of the rows); the head gets the next precision above ``emb_bits``, the torso ``emb_bits``, the
tail the next below (``emb_bits: 4`` → 8 / 4 / 2 bits).
"""


import numpy as np
import torch
from torch import nn

from recbole_lightemb.modules.base import FLOAT_BYTES, LightEmbedding
from recbole_lightemb.modules.master_free import MasterFreeRows
from recbole_lightemb.modules.quantized import FLOAT_BITS, class_bytes, fake_quantize, row_bytes, rows_bytes

ROW_SLACK_BYTES = FLOAT_BYTES + 1
"""What a budget sets aside per row of widths of its own before its values: the row's float32 scale, and up to one
byte its last packed value may leave unused."""

BITS = (2, 4, 8, 32)
"""Bits per stored value a config may ask for (32: float32, today's tables)."""
POLICIES = ("fixed", "frequency")
SHARES = (0.2, 0.3, 0.5)
"""Head, torso and tail shares of a table's rows under the ``frequency`` policy."""
LOW_BIT_ROWS = "low_bit_rows"
"""The submodule of a table holding its low-bit rows (state-dict prefix of master-free codes)."""


def check_precision(bits, policy):
    """``emb_bits`` and ``emb_bits_policy`` as given; a one-line ``ValueError`` naming the allowed values."""
    if isinstance(bits, bool) or bits not in BITS:
        raise ValueError(f"emb_bits={bits!r}: allowed {', '.join(map(str, BITS))} (bits per stored value)")
    if policy not in POLICIES:
        raise ValueError(f"emb_bits_policy={policy!r}: allowed {', '.join(POLICIES)}")
    return int(bits), policy


def ladder(bits):
    """(head, torso, tail) bits of the ``frequency`` policy around ``bits``."""
    k = BITS.index(bits)
    return BITS[min(k + 1, len(BITS) - 1)], bits, BITS[max(k - 1, 0)]


def class_counts(n_rows):
    """How many of ``n_rows`` rows fall in the head, torso and tail (the tail takes the rounding)."""
    head = int(round(SHARES[0] * n_rows))
    torso = int(round(SHARES[1] * n_rows))
    return head, torso, n_rows - head - torso


def row_bits(frequency, bits, policy):
    """Bits of each row: ``bits`` for all (``fixed``), else the ``frequency`` ladder by descending
    ``frequency`` (ties by row order)."""
    frequency = np.asarray(frequency, dtype=np.float64)
    out = np.full(len(frequency), bits, dtype=np.int64)
    if policy == "fixed":
        return out
    order = np.lexsort((np.arange(len(frequency)), -frequency))
    head, torso, _ = class_counts(len(frequency))
    up, mid, down = ladder(bits)
    out[order[:head]], out[order[head:head + torso]], out[order[head + torso:]] = up, mid, down
    return out


def table_bytes(n_rows, width, bits, policy):
    """Bytes of ``n_rows`` rows of ``width`` at ``bits`` under ``policy``; the ``frequency`` policy's cost
    depends only on how many rows fall in each class, not on which."""
    if policy == "fixed":
        return n_rows * int(row_bytes(width, bits))
    counts = class_counts(n_rows)
    return (sum(c * int(row_bytes(width, b)) for c, b in zip(counts, ladder(bits)))
            + class_bytes(n_rows, True))


def most_rows(max_bytes, width, bits, policy):
    """The most rows of ``width`` at ``bits`` under ``policy`` within ``max_bytes`` (bisection: the bytes grow
    with the rows)."""
    low, high = 0, int(max_bytes // table_bytes(1, width, min(ladder(bits) + (bits,)), "fixed")) + 1
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if table_bytes(mid, width, bits, policy) <= max_bytes else (low, mid)
    return low


def config_bits(config):
    """``emb_bits`` of a config, 32 where it has none (a planner built from a bare mapping)."""
    try:
        bits = config["emb_bits"]
    except KeyError:
        bits = None
    return FLOAT_BITS if bits is None else int(bits)


def config_policy(config):
    """``emb_bits_policy`` of a config, ``fixed`` where it has none."""
    try:
        policy = config["emb_bits_policy"]
    except KeyError:
        policy = None
    return "fixed" if policy is None else policy


def row_class_bytes(n_rows, groups=1):
    """The most bytes the 2-bit classes of ``n_rows`` rows of per-row bits take, kept in up to ``groups`` arrays
    (a table grouped by width keeps one per group, each rounded up to whole bytes)."""
    return class_bytes(n_rows, True) + max(int(groups) - 1, 0)


def values_within(floats, n_rows, bits, reserved_bytes=0):
    """How many ``bits``-bit values the bytes of ``floats`` float32 values hold over ``n_rows`` rows of widths of
    their own (a stream's and SCALL's budgets): each row's scale and its last byte's slack set aside first, and
    ``reserved_bytes`` (per-row bit classes), so any widths summing to at most this fit the bytes. ``floats``
    itself at 32 bits with nothing reserved."""
    if bits == FLOAT_BITS and not reserved_bytes:
        return int(floats)
    return max(0, (int(floats) * FLOAT_BYTES - n_rows * ROW_SLACK_BYTES - int(reserved_bytes)) * 8 // bits)


def quantize_rows(rows, bits):
    """Per-row rounding to each row's grid (``bits``: an int, or one per row; 32 leaves a row as it is);
    gradients pass straight through."""
    if not torch.is_tensor(bits):
        return rows if bits == FLOAT_BITS else fake_quantize(rows, bits)
    levels = (2.0 ** (bits.to(rows.dtype) - 1) - 1).unsqueeze(-1)
    scale = rows.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / levels
    rounded = torch.round(rows.detach() / scale).clamp(-levels, levels) * scale
    rounded = torch.where((bits == FLOAT_BITS).unsqueeze(-1), rows.detach(), rounded)
    return rows + (rounded - rows).detach()


class LowBitRows(nn.Module):
    """The rounding of one parameter's rows: ``bits`` per value, one for all or one per row (a buffer that the
    plan rebuilds, so not in the checkpoint)."""

    def __init__(self, bits, n_rows):
        super().__init__()
        if np.ndim(bits) == 0:
            self.fixed_bits = int(bits)
        else:
            self.fixed_bits = None
            bits = np.asarray(bits)
            if bits.shape != (n_rows,) or not set(np.unique(bits).tolist()) <= set(BITS):
                raise ValueError(f"per-row bits must be {n_rows} values from {BITS}")
            self.register_buffer("row_bits", torch.as_tensor(bits.astype(np.uint8)), persistent=False)

    def read(self, owner, leaf):
        """What ``owner.<leaf>`` reads as: the master parameter, rounded."""
        return self(owner._parameters[leaf])

    def forward(self, rows, ids=None):
        """``rows`` rounded: every row of the parameter, or with per-row bits the rows of ``ids`` gathered."""
        if self.fixed_bits is not None:
            return quantize_rows(rows, self.fixed_bits)
        return quantize_rows(rows, (self.row_bits if ids is None else self.row_bits[ids]).long())

    def bits_per_row(self, n_rows):
        """Every row's bits as a NumPy array."""
        if self.fixed_bits is not None:
            return np.full(n_rows, self.fixed_bits, dtype=np.int64)
        return self.row_bits.cpu().numpy().astype(np.int64)

    def stored_bytes(self, rows):
        """Bytes of ``rows`` (the master parameter) as stored."""
        n, width = rows.shape
        return rows_bytes(width, self.bits_per_row(n), self.fixed_bits is None)


class LowBitWidths:
    """For tables whose rows have widths of their own (:class:`~recbole_lightemb.modules.VariableWidthEmbedding`,
    :class:`~recbole_lightemb.modules.packed.PackedWidthEmbedding`): every row read is rounded to ``bits`` per
    value over its own width (the coordinates past it are zero, so they change neither the scale nor the
    rounding), with one float32 scale per stored row. Each row is stored as ``ceil(s_e · bits / 8)`` bytes and
    its scale; the checkpoint keeps the float32 masters, the packed file the codes. Per-row bits (mixed
    precision) add a 2-bit class per row."""

    def set_row_bits(self, bits):
        """Store every row at ``bits`` (2, 4, 8 or 32; 32 is the float table as it was), or each row at its own
        (one per row: mixed precision)."""
        if np.ndim(bits) == 0:
            bits, _ = check_precision(bits, "fixed")
        if LOW_BIT_ROWS in self._modules:
            del self._modules[LOW_BIT_ROWS]
        if np.ndim(bits) or bits != FLOAT_BITS:
            self.add_module(LOW_BIT_ROWS, LowBitRows(bits, self.num_embeddings).to(self.widths.device))

    def row_bits(self):
        """Bits of every stored value (32: float32): one for all rows, or an array of one per row."""
        rows = self._modules.get(LOW_BIT_ROWS)
        if rows is None:
            return FLOAT_BITS
        return rows.fixed_bits if rows.fixed_bits is not None else rows.bits_per_row(self.num_embeddings)

    def bits_per_row(self):
        """Every row's bits as an array."""
        return np.broadcast_to(np.asarray(self.row_bits(), dtype=np.int64), (self.num_embeddings,))

    def rounded(self, rows, ids=None):
        """``rows`` (zero past each row's width; those of ``ids``, or every row) as stored."""
        rounding = self._modules.get(LOW_BIT_ROWS)
        return rows if rounding is None else rounding(rows, ids)

    def stored_bytes(self):
        widths = self.widths.long().cpu().numpy()
        return rows_bytes(widths, self.bits_per_row(), np.ndim(self.row_bits()) > 0) + self.index_bytes()


def _owner(module, name):
    """The submodule holding parameter ``name`` (dotted, e.g. ``values.0``) and its own name there."""
    *path, leaf = name.split(".")
    for part in path:
        module = getattr(module, part)
    return module, leaf


def _low_bit_read(leaf):
    """The attribute ``leaf`` of a table part read through its low-bit rows (rounded masters, or master-free)."""
    return property(lambda self: self._low_bit_rows[leaf].read(self, leaf))


def apply_precision(module, bits, master_free=None):
    """Store ``module``'s row parameters at ``bits`` (``{parameter name: int or per-row array}``); 32 for
    every row leaves a parameter untouched, so ``emb_bits: 32`` is exactly the float32 table. Returns ``module``.

    Every read of a low-bit parameter (``self.table`` in the module's own code) returns its rounded rows, as
    ``torch.nn.utils.parametrize`` would, but the parameter keeps its name and place: the checkpoint, the
    optimiser and the code that reads the parameter are the float32 table's. With ``master_free`` (a
    :class:`~recbole_lightemb.modules.master_free.MasterFree`) the parameter is replaced by its codes instead,
    trained in place (:mod:`~recbole_lightemb.modules.master_free`), under ``low_bit_rows`` in the checkpoint."""
    roundings = module.get_submodule(LOW_BIT_ROWS) if hasattr(module, LOW_BIT_ROWS) else nn.ModuleDict()
    for name, value in bits.items():
        owner, leaf = _owner(module, name)
        param = owner._parameters.get(leaf)
        if param is None or param.dim() != 2:
            raise ValueError(f"{name}: low-bit rows need a (rows, width) parameter")
        if np.ndim(value) == 0 and int(value) == FLOAT_BITS:
            continue
        if master_free is None:
            rounding = LowBitRows(value, param.shape[0]).to(param.device)
        else:
            rounding = MasterFreeRows(param, value, master_free)
            del owner._parameters[leaf]
        if "_low_bit_rows" not in owner.__dict__:
            owner.__dict__["_low_bit_rows"] = {}
            owner.__class__ = type(f"LowBit{type(owner).__name__}", (type(owner),), {})
        owner.__dict__["_low_bit_rows"][leaf] = rounding
        setattr(type(owner), leaf, _low_bit_read(leaf))
        roundings[name.replace(".", "_")] = rounding  # moved with the table, its buffer counted while training
    if len(roundings) and not hasattr(module, LOW_BIT_ROWS):
        setattr(module, LOW_BIT_ROWS, roundings)
    return module


def low_bit_parameters(module, inner=False):
    """``[(state-dict key, master parameter, LowBitRows or MasterFreeRows)]`` of ``module``'s low-bit rows: its own, and with
    ``inner`` those of the tables inside it too (a residual's shared rows)."""
    found, nested = [], []
    for owner_name, owner in module.named_modules():
        if any(owner_name.startswith(f"{name}.") for name in nested):
            continue
        if owner is not module and isinstance(owner, LightEmbedding) and not inner:
            nested.append(owner_name)
            continue
        for leaf, rounding in owner.__dict__.get("_low_bit_rows", {}).items():
            master = owner._parameters[leaf] if leaf in owner._parameters else getattr(owner, leaf)  # master-free: its codes
            found.append((f"{owner_name}.{leaf}" if owner_name else leaf, master, rounding))
    return found


def precision_saving(module):
    """Bytes ``module``'s low-bit rows save against the float32 rows its ``stored_floats`` counts."""
    return sum(param.numel() * FLOAT_BYTES - rows.stored_bytes(param) for _, param, rows in low_bit_parameters(module))


def has_low_bit_rows(module):
    """Whether any table of ``module`` stores low-bit rows."""
    return any(isinstance(m, (LowBitRows, MasterFreeRows)) for m in module.modules())
