"""State files of long runs that go on after a stop (a CIESS search, a stream): written and read as data.

A run writes its state after each finished unit of work (a search episode, a stream segment): beside the last
file, then moved over it, so a stop mid-write leaves the previous state whole. Reading uses torch's weights-only
loader with no allow-list (nothing in the file is called) after the archive's sizes are checked, and compares
the settings the file was written with against the run's before any data is loaded; each refusal is one line
naming the config key, the file and what is wrong.
"""

import json
import os
import pickle

import numpy as np
import torch

from recbole_lightemb.storage.checkpoint import CheckpointError, check_archive, first_line

VERSION = 1


def plain(value):
    """A JSON-like value with NumPy scalars and arrays as Python numbers and lists, as a state file holds it."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist()))


def settings_of(config, keys):
    """``{key: value}`` of ``keys`` in ``config``, as JSON values (what a state file records and compares)."""
    return json.loads(json.dumps({key: config[key] for key in keys}, default=str))


def parts_state(owner, names):
    """The ``state_dict()`` of each named part of ``owner`` (networks, optimisers), by name."""
    return {name: getattr(owner, name).state_dict() for name in names}


def load_parts(owner, names, state):
    """Load :func:`parts_state`'s values back into ``owner`` (shapes checked by torch's ``load_state_dict``)."""
    for name in names:
        getattr(owner, name).load_state_dict(state[name])


def save_run_state(path, kind, state, settings):
    """Write ``state`` (tensors, numbers, strings, lists, dicts) as a ``kind`` state written with ``settings``."""
    partial = f"{path}.partial"
    torch.save({"kind": kind, "version": VERSION, "settings": settings, **state}, partial)
    os.replace(partial, path)


def refusal(key, path, why):
    return ValueError(f"{key}={path!r}: {why}")


def load_run_state(path, kind, key, settings, suffix):
    """The ``kind`` state at ``path`` (named by config ``key``), its settings equal to ``settings``."""
    if not isinstance(path, str) or not os.path.isfile(path):
        raise refusal(key, path, f"expected the path of a state file ({suffix}) this plugin wrote")
    try:
        check_archive(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's weights-only loader refused a Python object: the file is not data
        raise refusal(key, path, "refused, it holds Python objects that are not data") from None
    except (CheckpointError, RuntimeError, OSError, EOFError, ValueError) as error:
        raise refusal(key, path, f"not a readable state file ({first_line(error, type(error).__name__)})") from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise refusal(key, path, f"not a {kind} state")
    if state.get("version") != VERSION:
        raise refusal(key, path, f"written in format {state.get('version')!r}; this plugin reads format {VERSION}")
    written = state.get("settings")
    if not isinstance(written, dict):
        raise refusal(key, path, "its settings are missing")
    for name, value in settings.items():
        if written.get(name, "<not set>") != value:
            raise refusal(key, path, f"written with {name}={written.get(name, '<not set>')!r}, this run has "
                                     f"{name}={value!r}; resume with the settings that wrote it")
    return state


def rng_state():
    """torch's (CPU and, where there is one, every GPU's) and NumPy's global random states: data loaders'
    shuffling, RecBole's negative sampling, dropout."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
