"""The memory budget every method shares: ``emb_budget``, a fraction of the full tables' bytes."""

import numbers

from recbole_lightemb.modules import FLOAT_BYTES


def check_fraction(config, key):
    """``config[key]`` must be ``None`` or a number in (0, 1]; raise naming key, value and range."""
    value = config[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"{key}={value!r}: expected a fraction of the full embedding memory in (0, 1], e.g. 0.25")
    return float(value)


def check_positive_int(config, key):
    value = config[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{key}={value!r}: expected a positive integer")
    return int(value)


def full_bytes(specs):
    """Bytes of the plain float32 tables the specs describe."""
    return sum(s.num_embeddings * s.embedding_dim for s in specs) * FLOAT_BYTES


def require_budget(config, method):
    """The budget fraction a compressing method needs; a clear error when it is missing."""
    fraction = check_fraction(config, "emb_budget")
    if fraction is None:
        raise ValueError(f"emb={method!r} needs emb_budget (fraction of the full embedding memory in (0, 1], "
                         "e.g. --emb_budget=0.25)")
    return fraction


def entities_per_role(specs):
    """``{role: number of entities}``; every table of a role has one row per entity."""
    return {spec.role: spec.num_embeddings for spec in specs}
