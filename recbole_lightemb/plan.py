"""A plan: what a planner decided (widths, codes, …), saved beside the checkpoint as ``.npz``."""

import hashlib
import json
import math
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

META_KEY = "__meta__"
MAX_PLAN_ELEMENTS = 1 << 26
"""Values one plan member may hold when the dataset is not known yet (64 M: 8 per entity of 8 M entities)."""
MAX_PLAN_MEMBERS, MAX_META_CHARS = 64, 1 << 20


def plan_path(checkpoint_file):
    """Where a run's plan lives: beside its checkpoint, same stem."""
    return os.path.splitext(checkpoint_file)[0] + ".plan.npz"


def reused_plan(config, method_name):
    """The saved plan a run reuses instead of planning (``<method>_plan``, else ``emb_plan``), or None."""
    return config[f"{method_name}_plan"] or config["emb_plan"]


@dataclass
class Plan:
    """Per-entity arrays plus JSON-able facts; the only thing that flows from planner to model."""

    method: str
    arrays: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __getitem__(self, key):
        return self.arrays[key]

    def digest(self):
        """A fingerprint of everything the plan decided (ranks of a multi-process run compare it)."""
        h = hashlib.sha256(json.dumps({"method": self.method, **self.meta}, sort_keys=True, default=str).encode())
        for key in sorted(self.arrays):
            h.update(key.encode())
            h.update(np.ascontiguousarray(self.arrays[key]).tobytes())
        return h.hexdigest()

    def save(self, path):
        """Write ``path`` (``.npz``) whole or not at all (a run killed mid-write keeps the old file); returns
        the path written."""
        meta = json.dumps({"method": self.method, **self.meta})
        partial = f"{path}.partial"
        with open(partial, "wb") as f:
            np.savez_compressed(f, **{META_KEY: np.array(meta)}, **self.arrays)
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path, method=None, max_elements=MAX_PLAN_ELEMENTS):
        """Read a saved plan; ``method`` checks it was made by the method about to use it.

        Only data is read, and no more than the plan says it holds: every member's NumPy header is read
        first (numbers only, at most ``max_elements`` values — callers that know the dataset pass a bound
        from its entity counts), then at most that many bytes are inflated."""
        try:
            meta, arrays = _read_members(str(path), max_elements)
            saved_method = meta.pop("method")
        except PlanSizeError as error:
            raise ValueError(f"emb_plan={str(path)!r}: {error}") from None
        except Exception as error:  # noqa: BLE001  (NumPy and zipfile raise many kinds for a broken file)
            raise ValueError(f"emb_plan={str(path)!r}: not a readable plan file "
                             f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'empty'})") \
                from None
        if method is not None and saved_method != method:
            raise ValueError(f"plan file {path!r} was made by emb={saved_method!r}, not emb={method!r}")
        return cls(saved_method, arrays, meta)


class PlanSizeError(ValueError):
    """A plan member larger than allowed, or not plain numbers."""


def _read_members(path, max_elements):
    """The plan's meta dict and arrays, each member bounded by what its header declares and by ``max_elements``."""
    arrays, meta = {}, None
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_PLAN_MEMBERS:
            raise PlanSizeError(f"{len(members)} members, at most {MAX_PLAN_MEMBERS} allowed")
        for info in members:
            name = info.filename.removesuffix(".npy")
            with archive.open(info) as stream:
                version = np.lib.format.read_magic(stream)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(stream)
                if dtype.hasobject or dtype.kind not in "biufU":
                    raise PlanSizeError(f"member {name!r} holds {dtype}, not plain numbers or text")
                count = math.prod(shape)
                limit = MAX_META_CHARS if name == META_KEY else max_elements
                if count > limit:
                    raise PlanSizeError(f"member {name!r} declares {count} values, at most {limit} allowed for this "
                                        "dataset")
                wanted = count * dtype.itemsize
                data = stream.read(wanted)
                if len(data) != wanted or stream.read(1):
                    raise PlanSizeError(f"member {name!r} holds other than the {wanted} bytes its header declares")
            array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()
            if name == META_KEY:
                meta = json.loads(str(array))
            else:
                arrays[name] = array
    if not isinstance(meta, dict):
        raise PlanSizeError("no plan facts (__meta__) in the file")
    return meta, arrays
