"""The compression report: stored floats and bytes of every swapped table, against the full model."""

import torch
from recbole.utils import set_color

from recbole_lightemb.modules import FLOAT_BYTES, LightEmbedding
from recbole_lightemb.modules.master_free import master_free_stores
from recbole_lightemb.modules.row_ranges import RowRangesEmbedding


def compression_report(model, optimizer=None, search=None):
    """Read the report off the model itself, so it always describes what is really stored; with the run's
    ``optimizer``, also what the tables hold while training (``training``), and with the :func:`training_memory`
    of the search that made the plan (CIESS's masked full-width tables), that too (``search_training``):
    ``training_ratio`` is the larger of the two, what the run needed at its peak."""
    tables = []
    for name, module in _outer_tables(model):
        tables.append({
            "name": name,
            "role": getattr(module, "role", None),
            "entities": module.num_embeddings,
            "dim": module.embedding_dim,
            "stored_floats": int(module.stored_floats()),
            "stored_bytes": int(module.stored_bytes()),
        })
    full_floats = sum(t["entities"] * t["dim"] for t in tables)
    stored_bytes = sum(t["stored_bytes"] for t in tables)
    full_bytes = full_floats * FLOAT_BYTES
    left_full = [{**rows, "name": f"{name}[{rows['name']}]"} for name, module in model.named_modules()
                 if isinstance(module, RowRangesEmbedding) for rows in module.rows_left_full()]
    report = {
        "tables": tables,
        "rows_left_full": left_full,
        "stored_floats": sum(t["stored_floats"] for t in tables),
        "stored_bytes": stored_bytes,
        "full_floats": full_floats,
        "full_bytes": full_bytes,
        "ratio": stored_bytes / full_bytes if full_bytes else None,
    }
    if optimizer is not None:
        report["training"] = training_memory(model, optimizer)
        report["training_ratio"] = report["training"]["ratio"]
        if search is not None:
            report["search_training"] = search
            report["training_ratio"] = max(report["training_ratio"], search["ratio"])
    return report


def stored_row_bytes(model):
    """Bytes of the stored rows of ``model``'s tables, values and scales without their index: what a stream's
    budget of floats (at 4 bytes each) holds, whatever bits the rows take."""
    return sum(int(module.stored_bytes()) - int(module.index_bytes()) for _, module in _outer_tables(model))


def _outer_tables(model):
    """``(name, table)`` of every lightweight table not inside another (a residual's shared rows are
    counted by their owner); a table with row ranges gives its compressed ranges, and the rows it keeps
    full (other token fields, a mask token) stay outside the budget, listed apart."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, LightEmbedding) and not any(name.startswith(f"{n}.") for n in names):
            names.append(name)
            if isinstance(module, RowRangesEmbedding):
                for label, part in module.named_parts():
                    yield getattr(part, "table_name", f"{name}[{label}]"), part
            else:
                yield name, module


STATE_PER_FLOAT = {"Adam": 2, "AdamW": 2, "SparseAdam": 2, "Adamax": 2, "NAdam": 2, "RAdam": 2, "Adagrad": 1}
"""Floats of state per trained float of optimisers whose state does not depend on their settings."""


def state_per_float(optimizer):
    """Floats of state ``optimizer`` keeps per trained float (Adam: its two moments): measured on the
    parameters that have state, else from its kind (a model whose only trained floats are master-free rows
    with rule-kept step sizes hands it none); what full tables trained the same way would hold."""
    floats, held = 0, 0
    for param, state in optimizer.state.items():
        tensors = [t for t in state.values() if torch.is_tensor(t) and t.dim() > 0]
        if tensors:
            floats, held = floats + param.numel(), held + sum(t.numel() for t in tensors)
    if floats:
        return held / floats
    settings = optimizer.defaults
    if type(optimizer).__name__ == "SGD":
        return 1 if settings.get("momentum", 0) else 0
    if type(optimizer).__name__ == "RMSprop":
        return 1 + bool(settings.get("momentum", 0)) + bool(settings.get("centered", False))
    known = STATE_PER_FLOAT.get(type(optimizer).__name__, 0)  # another kind: none, so no run looks smaller than it is
    return known + bool(known and settings.get("amsgrad", False))


def training_memory(model, optimizer):
    """Bytes the swapped tables hold *while training*: parameters, their gradients, buffers (masks,
    codes, widths) and the optimiser's state for those parameters. Master-free rows keep codes and row-wise
    state in buffers and no gradient between steps; ``row_grad_bytes`` is the largest gradient of the rows one read
    handed their hook (measured), a transient of the batch like its activations, so, as for every method, not
    in ``training_bytes`` (a model that reads the whole table, LightGCN, makes it table-sized). A variable-width table that trains as a masked n × d
    buffer is counted at that size, not at its packed size. ``ratio`` is against plain full tables
    under the same optimiser (parameters plus the same state per float)."""
    params, grads, buffers, state, row_grads = 0, 0, 0, 0, 0
    for _, module in _outer_tables(model):
        for p in module.parameters():
            params += p.numel() * p.element_size()
            grads += p.numel() * p.element_size() if p.requires_grad else 0  # the gradient each step holds
            state += sum(t.numel() * t.element_size() for t in optimizer.state.get(p, {}).values()
                         if torch.is_tensor(t) and t.dim() > 0)
        buffers += sum(b.numel() * b.element_size() for b in module.buffers())
        row_grads += sum(store.peak_grad_bytes for store in master_free_stores(module))
    full = sum(m.num_embeddings * m.embedding_dim for _, m in _outer_tables(model)) * FLOAT_BYTES
    per_float = state_per_float(optimizer)
    total = params + grads + buffers + state
    full_training = full * (2 + per_float)  # full tables: parameters, gradients, the same optimiser state
    return {"param_bytes": params, "grad_bytes": grads, "buffer_bytes": buffers, "optimizer_bytes": state,
            "training_bytes": total, "full_training_bytes": int(full_training), "row_grad_bytes": row_grads,
            "ratio": total / full_training if full else None}


def format_report(report, emb):
    """RecBole-style coloured lines for the log."""
    lines = [set_color("compression", "pink") + f" (emb={emb})"]
    for t in report["tables"]:
        lines.append(f"    {t['name']:<24} {t['entities']:>8} x {t['dim']:<4} "
                     f"stored floats: {t['stored_floats']:>10}  bytes: {t['stored_bytes']:>11}")
    for t in report.get("rows_left_full", []):
        lines.append(f"    {t['name']:<24} {t['rows']:>8} x {t['dim']:<4} left full, not in the budget  "
                     f"bytes: {t['stored_bytes']:>11}")
    lines.append(
        set_color("    total", "blue") + f" stored floats: {report['stored_floats']} / {report['full_floats']}"
        f"  bytes: {report['stored_bytes']} / {report['full_bytes']}"
        + set_color("  ratio", "blue") + f": {report['ratio']:.4f}"
    )
    if report.get("packed_file"):
        packed = report["packed_file"]
        lines.append(f"    written packed: {packed['file']} ({packed['bytes']} bytes on disk: {packed['array_bytes']} of "
                     f"arrays, as counted, and the .npz framing of {packed['arrays']} arrays)")
    if report.get("training"):
        t = report["training"]
        lines.append(f"    held while training (parameters, gradients, buffers, optimiser state): {t['training_bytes']} bytes, "
                     f"ratio {t['ratio']:.4f} of full tables trained the same way")
    if report.get("search_training"):
        t = report["search_training"]
        lines.append(f"    held while searching (masked full-width tables): {t['training_bytes']} bytes, ratio "
                     f"{t['ratio']:.4f}; the run's peak: {report['training_ratio']:.4f}")
    return "\n".join(lines)
