"""The compression report: stored floats and bytes of every swapped table, against the full model."""

from recbole.utils import set_color

from recbole_lightemb.modules import FLOAT_BYTES, LightEmbedding


def compression_report(model):
    """Read the report off the model itself, so it always describes what is really stored."""
    tables, outer = [], []
    for name, module in model.named_modules():
        if isinstance(module, LightEmbedding) and not any(name.startswith(f"{o}.") for o in outer):
            outer.append(name)  # a table inside another (a residual's shared rows) is counted by its owner
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
    return {
        "tables": tables,
        "stored_floats": sum(t["stored_floats"] for t in tables),
        "stored_bytes": stored_bytes,
        "full_floats": full_floats,
        "full_bytes": full_bytes,
        "ratio": stored_bytes / full_bytes if full_bytes else None,
    }


def format_report(report, emb):
    """RecBole-style coloured lines for the log."""
    lines = [set_color("compression", "pink") + f" (emb={emb})"]
    for t in report["tables"]:
        lines.append(f"    {t['name']:<24} {t['entities']:>8} x {t['dim']:<4} "
                     f"stored floats: {t['stored_floats']:>10}  bytes: {t['stored_bytes']:>11}")
    lines.append(
        set_color("    total", "blue") + f" stored floats: {report['stored_floats']} / {report['full_floats']}"
        f"  bytes: {report['stored_bytes']} / {report['full_bytes']}"
        + set_color("  ratio", "blue") + f": {report['ratio']:.4f}"
    )
    return "\n".join(lines)
