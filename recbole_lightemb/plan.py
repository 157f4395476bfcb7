"""A plan: what a planner decided (widths, codes, …), saved beside the checkpoint as ``.npz``."""

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

META_KEY = "__meta__"


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
    def load(cls, path, method=None):
        """Read a saved plan; ``method`` checks it was made by the method about to use it."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data[META_KEY]))
                arrays = {k: data[k] for k in data.files if k != META_KEY}
            saved_method = meta.pop("method")
        except Exception as error:  # noqa: BLE001  (NumPy and zipfile raise many kinds for a broken file)
            raise ValueError(f"emb_plan={str(path)!r}: not a readable plan file "
                             f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'empty'})") \
                from None
        if method is not None and saved_method != method:
            raise ValueError(f"plan file {path!r} was made by emb={saved_method!r}, not emb={method!r}")
        return cls(saved_method, arrays, meta)
