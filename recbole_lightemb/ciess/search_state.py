"""A CIESS search that can stop and go on (``ciess_resume_search``): its state after each episode, as data.

At the authors' per-step training a search of BPR on ml-100k takes about 7 hours on a 2-core CPU, longer than
many sessions. After every episode the trainer writes ``<checkpoint stem>.search.pth`` (replacing the last
one): the pre-trained model, the search's initial model, both agents (networks, targets, optimisers, replay
buffers and their generators), the exploration generator, the global random states, the step records and the
candidate plans so far. ``ciess_resume_search: <that file>`` goes on from the next episode; once the run has
finished (plan saved, final model trained) the file is removed.

The file is read as data (:mod:`~recbole_lightemb.storage.run_state`) and must have been written with the same
settings (:func:`search_settings`), checked before any data is loaded.
Each episode starts from the pre-trained model, so nothing of a half-done episode is needed; what is not kept
is the data loader's position in its epoch, so a resumed search is seeded but not bit-identical to one never
stopped, and the plan records the episodes it resumed at.
"""

import os

import numpy as np
import torch

from recbole_lightemb.ciess.keys import budget_fraction
from recbole_lightemb.config import plugin_defaults
from recbole_lightemb.storage.resume import SAME_KEYS
from recbole_lightemb.storage.run_state import load_run_state, refusal, save_run_state, settings_of

KIND = "CIESS search"
SUFFIX = ".search.pth"
NOT_SHARED = ("ciess_resume_search", "ciess_plan", "ciess_budget")
"""``ciess_*`` keys a resumed search may differ in: the resume key itself, a reused plan (refused beside it)
and the budget's alias (the budget is compared as ``emb_budget``, whichever key set it)."""
RUN_KEYS = ("seed", "train_batch_size", "train_neg_sample_args", "valid_metric", "emb_bits", "emb_bits_policy")


def search_state_path(checkpoint_file):
    """Where a run whose checkpoint is ``checkpoint_file`` keeps its search state."""
    return os.path.splitext(str(checkpoint_file))[0] + SUFFIX


def search_settings(config):
    """The values a resumed search must share with the one that wrote the state: the model, data and tables
    (as a resumed training), the seed and sampling, the precision its steps were costed at, and every search key."""
    keys = [k for k in SAME_KEYS if k != "emb_budget"] + list(RUN_KEYS)
    keys += sorted(k for k in plugin_defaults() if k.startswith("ciess_") and k not in NOT_SHARED)
    return {**settings_of(config, keys), "emb_budget": budget_fraction(config)}


def save_search_state(path, state, config):
    save_run_state(path, KIND, state, search_settings(config))


def load_search_state(path, config):
    """The state at ``path``, checked against ``config``; one-line errors name the file and what is wrong."""
    state = load_run_state(path, KIND, "ciess_resume_search", search_settings(config), SUFFIX)
    done = state.get("episodes_done")
    if isinstance(done, bool) or not isinstance(done, int) or not 1 <= done <= config["ciess_episodes"]:
        raise refusal("ciess_resume_search", path,
                      f"episodes_done={done!r}: expected 1..ciess_episodes ({config['ciess_episodes']})")
    return state


def widths_to_data(widths):
    """``{role: int array}`` as tensors (what the file holds)."""
    return {role: torch.from_numpy(np.asarray(w, dtype=np.int64)) for role, w in widths.items()}


def widths_from_data(widths):
    return {role: w.numpy().astype(np.int64) for role, w in widths.items()}
