"""What is counted is what is written: a model's lightweight tables in their stored form, as a file.

The checkpoint of a low-bit run holds the float32 masters it trained; a deployment needs only the
packed values. :func:`write_packed` writes every lightweight table of a model to one uncompressed
``.npz``: low-bit rows as packed codes and float32 scales per bit class (and a 2-bit class per row where
bits vary by row), float rows as float32, indices in the smallest integer type that holds them. For
the tables of ``uniform``, ``freq``, ``hash`` and ``qr`` (and ``quant``) the arrays are exactly the bytes
``compression.stored_bytes`` counts (``tests/test_precision.py``); the file adds only the ``.npz``
framing, at most :data:`OVERHEAD_PER_ARRAY` bytes per array. Rows of widths of their own (``scall``, ``uniform`` on a
stream) are written row after row, each in ``ceil(s_e · bits / 8)`` bytes, with a scale per stored row (rows of
per-row bits grouped by their bits, with each row's 2-bit class); their widths are written for every row, so the rows that store nothing (width 0: the padding row, entities a stream has
not seen yet) add their width's byte to what is counted. A run writes it when its tables have low-bit
rows (:func:`save_packed_beside`), as ``<checkpoint stem>.packed.npz``.

:func:`read_packed` loads such a file into a model built from the same plan: data only
(``allow_pickle=False``), every array's name, size, shape and type checked against what the model
stores before it is used. Rows read back are the stored rows, so the model scores as it did.
"""

import os

import numpy as np
import torch

from recbole_lightemb.modules.base import LightEmbedding
from recbole_lightemb.modules.master_free import MasterFreeRows
from recbole_lightemb.modules.precision import (BITS, FLOAT_BITS, LOW_BIT_ROWS, LowBitWidths, has_low_bit_rows,
                                                low_bit_parameters)
from recbole_lightemb.modules.quantized import pack, quantize, unpack
from recbole_lightemb.modules.row_ranges import RowRangesEmbedding

SUFFIX = ".packed.npz"
OVERHEAD_PER_ARRAY = 512
"""Bytes of ``.npz`` framing per array at most: the ``.npy`` header (128 bytes) and the zip entry's local and
central headers with the array's name twice (about 120 bytes plus twice the name)."""


def packed_path(checkpoint_file):
    """Where a run's packed tables live: beside its checkpoint, same stem."""
    return os.path.splitext(str(checkpoint_file))[0] + SUFFIX


def tables(model):
    """``(name, table)`` of every lightweight table not inside another; a table with row ranges gives its
    compressed ranges (its full rows stay in the checkpoint)."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, LightEmbedding) or isinstance(module, RowRangesEmbedding):
            continue
        if not any(name.startswith(f"{outer}.") for outer, _ in found):
            found.append((name, module))
    return found


def _int_type(values):
    """The smallest signed integer type holding ``values`` (indices, codes, widths)."""
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    return next(t for t in (np.int8, np.int16, np.int32, np.int64)
                if np.iinfo(t).min <= low and high <= np.iinfo(t).max)


def _classes(bits):
    """Each row's index into :data:`BITS`, two bits per row, packed."""
    index = np.searchsorted(BITS, bits).astype(np.uint8)
    return np.packbits(((index[:, None] >> np.arange(2)) & 1).astype(np.uint8).reshape(-1))


def _width_rows(table):
    """Whether ``table`` stores rows of widths of their own in low bits (some rows at least)."""
    return isinstance(table, LowBitWidths) and bool((table.bits_per_row() != FLOAT_BITS).any())


def _kept_bytes(widths, bits):
    """Bytes each row of ``widths`` keeps of its packed codes."""
    return -(-widths * bits // 8)


def _width_rows_arrays(table):
    """A low-bit table of widths of its own: per bit class, its rows' packed codes (each row's first
    ``ceil(s_e · bits / 8)`` bytes, row after row) and the scales of its stored rows (32-bit rows: their kept
    floats); with per-row bits, each row's class."""
    bits, widths = table.bits_per_row(), table.widths.long().cpu().numpy()
    rows, arrays = table.master_rows().detach().cpu().float(), {}
    for b in sorted(set(bits.tolist())):
        where = np.flatnonzero(bits == b)
        kept = np.arange(table.embedding_dim)[None, :] < widths[where][:, None]
        if b == FLOAT_BITS:
            arrays["values.float32"] = rows[where].numpy()[kept]
            continue
        codes, scale = quantize(rows[where], b)
        packed = pack(codes, b)
        arrays[f"values.bits{b}"] = packed[np.arange(packed.shape[1]) < _kept_bytes(widths[where], b)[:, None]]
        arrays[f"values.scale{b}"] = scale.reshape(-1).numpy()[widths[where] > 0]
    if np.ndim(table.row_bits()):
        arrays["values.classes"] = _classes(bits)
    return arrays


def _width_rows_values(table, arrays):
    """The flat ``values`` (kept floats, row after row) that :func:`_width_rows_arrays` stored."""
    bits, widths = table.bits_per_row(), table.widths.long().cpu().numpy()
    if not np.array_equal(arrays["widths"], widths):
        raise ValueError("the widths differ from the plan's")
    if np.ndim(table.row_bits()) and not np.array_equal(arrays["values.classes"], _classes(bits)):
        raise ValueError("the bits per row differ from the plan's")
    rows = torch.zeros(table.num_embeddings, table.embedding_dim)
    for b in sorted(set(bits.tolist())):
        where = np.flatnonzero(bits == b)
        kept = torch.arange(table.embedding_dim)[None, :] < torch.from_numpy(widths[where])[:, None]
        if b == FLOAT_BITS:
            part = torch.zeros(len(where), table.embedding_dim)
            part[kept] = torch.from_numpy(arrays["values.float32"]).float()
            rows[where] = part
            continue
        packed = np.zeros((len(where), int(_kept_bytes(table.embedding_dim, b))), dtype=np.uint8)
        packed[np.arange(packed.shape[1]) < _kept_bytes(widths[where], b)[:, None]] = arrays[f"values.bits{b}"]
        scales = torch.zeros(len(where))
        scales[torch.from_numpy(widths[where] > 0)] = torch.from_numpy(arrays[f"values.scale{b}"]).float()
        rows[where] = unpack(packed, table.embedding_dim, b).float() * scales[:, None]
    return rows[torch.arange(table.embedding_dim)[None, :] < torch.from_numpy(widths)[:, None]]


def table_arrays(table):
    """The arrays ``table`` stores, by name: what :func:`write_packed` writes and :func:`read_packed` expects."""
    if _width_rows(table):
        arrays = _width_rows_arrays(table)
        for key, value in table.state_dict().items():
            if key != "values":  # the widths
                arrays[key] = value.detach().cpu().numpy().astype(_int_type(value.cpu().numpy()))
        return arrays
    arrays, low_bit = {}, low_bit_parameters(table, inner=True)
    for prefix, master, rows in low_bit:
        bits = rows.bits_per_row(master.shape[0])
        if isinstance(rows, MasterFreeRows):  # its codes and step sizes are the stored form already
            codes, scales = rows.integer_codes().cpu(), rows.step_sizes().cpu()
        else:
            values = master.detach().cpu().float()
        for b in sorted(set(bits.tolist())):
            where = torch.from_numpy(np.flatnonzero(bits == b))
            if b == FLOAT_BITS:
                arrays[f"{prefix}.float32"] = values[where].numpy()
                continue
            if isinstance(rows, MasterFreeRows):
                part, scale = codes[where], scales[where]
            else:
                part, scale = quantize(values[where], b)
            arrays[f"{prefix}.bits{b}"] = pack(part, b)
            arrays[f"{prefix}.scale{b}"] = scale.reshape(-1).numpy()
        if rows.fixed_bits is None:
            arrays[f"{prefix}.classes"] = _classes(bits)
    masters = {key for key, _, _ in low_bit}
    for key, value in table.state_dict().items():
        if key in masters or LOW_BIT_ROWS in key.split("."):
            continue  # low-bit rows: stored above (master-free codes and their optimiser state too)
        value = value.detach().cpu()
        arrays[key] = value.float().numpy() if value.is_floating_point() else \
            value.numpy().astype(_int_type(value.numpy()))
    return arrays


def write_packed(model, path):
    """Write ``model``'s lightweight tables to ``path`` whole or not at all; returns ``{"file", "bytes",
    "array_bytes", "arrays"}``: the file's size, the arrays' bytes without the ``.npz`` framing, and how many."""
    arrays = {f"{name}/{key}": value for name, table in tables(model) for key, value in table_arrays(table).items()}
    partial = f"{path}.partial"
    with open(partial, "wb") as f:
        np.savez(f, **arrays)
    os.replace(partial, path)
    return {"file": str(path), "bytes": os.path.getsize(path),
            "array_bytes": int(sum(a.nbytes for a in arrays.values())), "arrays": len(arrays)}


def read_packed(model, path):
    """Load the tables :func:`write_packed` wrote into ``model`` (built from the same plan). Runs no code from
    the file; a name, size, shape or type that is not what the model stores is a ``ValueError`` naming the file."""
    path = str(path)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001  (NumPy and zipfile raise many kinds for a broken file)
        raise ValueError(f"packed tables {path!r}: not a readable .npz ({type(error).__name__}: {error})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"packed tables {path!r}: not an .npz archive")
    with data:
        try:
            _read(model, data)
        except Exception as error:  # noqa: BLE001
            raise ValueError(f"packed tables {path!r}: {error}") from None
    return model


def _read(model, data):
    members = {info.filename[:-len(".npy")]: info.file_size for info in data.zip.infolist()}
    expected = {name: table_arrays(table) for name, table in tables(model)}
    extra = sorted(set(members) - {f"{name}/{key}" for name, arrays in expected.items() for key in arrays})
    if extra:
        raise ValueError(f"holds arrays the model does not store: {extra[:3]}")
    for name, table in tables(model):
        found = {}
        for key, want in expected[name].items():
            full = f"{name}/{key}"
            if full not in members:
                raise ValueError(f"has no {full!r}")
            if members[full] > want.size * 8 + OVERHEAD_PER_ARRAY:  # checked before it is read
                raise ValueError(f"{full!r} holds {members[full]} bytes for {want.size} stored values")
            got = data[full]
            if (got.shape != want.shape or got.dtype.kind != want.dtype.kind or got.dtype.itemsize > 8
                    or (want.dtype == np.uint8 and got.dtype != want.dtype)):  # packed codes: bytes, not truncated
                raise ValueError(f"{full!r} is {got.dtype}{list(got.shape)}, the model stores "
                                 f"{want.dtype}{list(want.shape)}")
            found[key] = got
        _load(table, found)


def _load(table, arrays):
    """Put the arrays of :func:`table_arrays` back into ``table``: low-bit rows as their stored values."""
    state = table.state_dict()
    if _width_rows(table):
        state["values"] = _width_rows_values(table, arrays)
        table.load_state_dict(state)
        return
    low_bit = low_bit_parameters(table, inner=True)
    for prefix, master, rows in low_bit:
        bits = rows.bits_per_row(master.shape[0])
        if rows.fixed_bits is None and not np.array_equal(arrays[f"{prefix}.classes"], _classes(bits)):
            raise ValueError(f"{prefix}: the bits per row differ from the plan's")
        values, codes, scales = torch.empty(master.shape), torch.zeros(master.shape), torch.ones(master.shape[0])
        for b in sorted(set(bits.tolist())):
            where = torch.from_numpy(np.flatnonzero(bits == b))
            if b == FLOAT_BITS:
                values[where] = torch.from_numpy(arrays[f"{prefix}.float32"])
                continue
            codes[where] = unpack(arrays[f"{prefix}.bits{b}"], master.shape[1], b).float()
            scales[where] = torch.from_numpy(arrays[f"{prefix}.scale{b}"])
            values[where] = codes[where] * scales[where, None]
        if isinstance(rows, MasterFreeRows):
            rows.load_stored(codes, scales)
        else:
            state[prefix] = values
    for key in state:
        if key in arrays:
            state[key] = torch.from_numpy(np.ascontiguousarray(arrays[key])).to(state[key].dtype)
    table.load_state_dict(state)  # master-free rows: loaded above, and their own keys are the checkpoint's


def save_packed_beside(model, checkpoint_file):
    """After a run: write its packed tables beside ``checkpoint_file`` when it has low-bit rows (else ``None``)."""
    if not has_low_bit_rows(model):
        return None
    return write_packed(model, packed_path(checkpoint_file))


def load_packed_beside(model, checkpoint_file):
    """When a checkpoint is loaded: its low-bit tables from the packed file beside it, where there is one (a
    checkpoint written before packed files keeps its float32 masters, which round to the same rows)."""
    path = packed_path(checkpoint_file)
    if has_low_bit_rows(model) and os.path.isfile(path):
        read_packed(model, path)
    return model
