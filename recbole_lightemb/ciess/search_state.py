"""A CIESS search that can stop and go on (``ciess_resume_search``): its state after each episode, as data.

At the authors' per-step training a search of BPR on ml-100k takes about 7 hours on a 2-core CPU, longer than
many sessions. After every episode the trainer writes ``<checkpoint stem>.search.pth`` (replacing the last
one): the pre-trained model, the search's initial model, both agents (networks, targets, optimisers, replay
buffers and their generators), the exploration generator, the global random states, the step records and the
candidate plans so far. ``ciess_resume_search: <that file>`` goes on from the next episode; once the run has
finished (plan saved, final model trained) the file is removed.

The file is read with torch's weights-only loader and no allow-list: data only, nothing in it is called. It
must have been written with the same settings (:func:`search_settings`), checked before any data is loaded.
Each episode starts from the pre-trained model, so nothing of a half-done episode is needed; what is not kept
is the data loader's position in its epoch, so a resumed search is seeded but not bit-identical to one never
stopped, and the plan records the episodes it resumed at.
"""

import json
import os
import pickle

import numpy as np
import torch

from recbole_lightemb.ciess.keys import budget_fraction
from recbole_lightemb.config import plugin_defaults
from recbole_lightemb.storage.checkpoint import CheckpointError, check_archive
from recbole_lightemb.storage.resume import SAME_KEYS

KIND = "recbole_lightemb.ciess_search"
VERSION = 1
SUFFIX = ".search.pth"
NOT_SHARED = ("ciess_resume_search", "ciess_plan", "ciess_budget")
"""``ciess_*`` keys a resumed search may differ in: the resume key itself, a reused plan (refused beside it)
and the budget's alias (the budget is compared as ``emb_budget``, whichever key set it)."""
RUN_KEYS = ("seed", "train_batch_size", "train_neg_sample_args", "valid_metric")


def search_state_path(checkpoint_file):
    """Where a run whose checkpoint is ``checkpoint_file`` keeps its search state."""
    return os.path.splitext(str(checkpoint_file))[0] + SUFFIX


def search_settings(config):
    """The values a resumed search must share with the one that wrote the state: the model, data and tables
    (as a resumed training), the seed and sampling, and every search key, as JSON values."""
    keys = [k for k in SAME_KEYS if k != "emb_budget"] + list(RUN_KEYS)
    keys += sorted(k for k in plugin_defaults() if k.startswith("ciess_") and k not in NOT_SHARED)
    values = {key: config[key] for key in keys}
    values["emb_budget"] = budget_fraction(config)
    return json.loads(json.dumps(values, default=str))


def save_search_state(path, state, config):
    """Write ``state`` (tensors, numbers, strings, lists, dicts) with its settings; a stop mid-write leaves the
    previous episode's file whole (written beside it, then moved over it)."""
    partial = f"{path}.partial"
    torch.save({"kind": KIND, "version": VERSION, "settings": search_settings(config), **state}, partial)
    os.replace(partial, path)


def _refuse(path, why):
    return ValueError(f"ciess_resume_search={path!r}: {why}")


def load_search_state(path, config):
    """The state at ``path``, checked against ``config``; one-line errors name the file and what is wrong."""
    if not isinstance(path, str) or not os.path.isfile(path):
        raise _refuse(path, f"expected the path of a CIESS search state ({SUFFIX}) this plugin wrote")
    try:
        check_archive(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's weights-only loader refused a Python object: the file is not data
        raise _refuse(path, "refused, it holds Python objects that are not data") from None
    except (CheckpointError, RuntimeError, OSError, EOFError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _refuse(path, f"not a readable search state ({first})") from None
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise _refuse(path, "not a CIESS search state")
    if state.get("version") != VERSION:
        raise _refuse(path, f"written in format {state.get('version')!r}; this plugin reads format {VERSION}")
    written, now = state.get("settings"), search_settings(config)
    if not isinstance(written, dict):
        raise _refuse(path, "its settings are missing")
    for key, value in now.items():
        if written.get(key, "<not set>") != value:
            raise _refuse(path, f"written with {key}={written.get(key, '<not set>')!r}, this run has {key}={value!r}; "
                                "resume with the settings that wrote it")
    done = state.get("episodes_done")
    if isinstance(done, bool) or not isinstance(done, int) or not 1 <= done <= config["ciess_episodes"]:
        raise _refuse(path, f"episodes_done={done!r}: expected 1..ciess_episodes ({config['ciess_episodes']})")
    return state


def rng_state():
    """torch's and NumPy's global random states (the data loader's shuffling, RecBole's negative sampling)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                      gauss]}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


def plain(value):
    """A step record (or any JSON-like value) with NumPy scalars as Python numbers, as the file holds it."""
    return json.loads(json.dumps(value, default=lambda v: v.item()))


def widths_to_data(widths):
    """``{role: int array}`` as tensors (what the file holds)."""
    return {role: torch.from_numpy(np.asarray(w, dtype=np.int64)) for role, w in widths.items()}


def widths_from_data(widths):
    return {role: w.numpy().astype(np.int64) for role, w in widths.items()}
