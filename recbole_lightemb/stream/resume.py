"""A stream that goes on after its last finished segment (``stream_resume``): its state after each segment, as data.

A stream trains one model per segment to convergence; SCALL's paper-mode search adds hundreds of short trainings
per segment, hours on a CPU. After each segment the runner writes ``<model>-<run id>-stream.state.pth`` beside the
segments' checkpoints (replacing the last one): the rows of the finished segments, what the next segment's warm
start copies from the last model (:func:`~recbole_lightemb.stream.runner.warm_snapshot`), the planner's state
(SCALL: its agent with replay and generators, the last fitness and summaries), the last segment's loaders'
generators, the global random states and what the result takes from the last segment. ``stream_resume: <that
file>`` goes on from the next segment under the same run id, so the segments' checkpoints and plans keep one
name; a finished stream removes the file.

The file is read as data (:mod:`~recbole_lightemb.storage.run_state`) and must have been written with the same
settings (:func:`stream_settings`: the model, data, seed and sampling, and every plugin key that shapes the
tables or the training), checked before any data is loaded. Segments are cut the same way on every run; the
last segment's loaders get their shuffling generators back (SCALL's next search trains on it) and the global
random states are restored before the next segment's loaders are built, so a resumed stream trains its later
segments exactly as the unstopped one does (tested: identical rows).
"""

import os

from recbole_lightemb.config import plugin_defaults
from recbole_lightemb.storage.run_state import load_run_state, refusal, save_run_state, settings_of

KIND = "stream"
SUFFIX = "-stream.state.pth"
PATH_KEYS = ("stream_resume", "resume_checkpoint", "ciess_resume_search", "emb_plan", "baco_plan", "ciess_plan",
             "freq_plan", "quant_plan", "scall_plan", "result_file", "trust_checkpoint")
"""Plugin keys a resumed stream may differ in: where files are read or written, not what is trained."""
RECBOLE_KEYS = ("model", "dataset", "seed", "embedding_size", "learning_rate", "learner", "weight_decay",
                "train_batch_size", "train_neg_sample_args", "epochs", "eval_step", "valid_metric")


def stream_state_path(checkpoint_dir, model, run_id):
    """Where a stream run ``run_id`` of ``model`` keeps its state."""
    return os.path.join(checkpoint_dir, f"{model}-{run_id}{SUFFIX}")


def stream_settings(config):
    """What a resumed stream must share with the one that wrote the state."""
    keys = [k for k in RECBOLE_KEYS if k in config] + sorted(k for k in plugin_defaults() if k not in PATH_KEYS)
    return settings_of(config, keys)


def save_stream_state(path, state, config):
    save_run_state(path, KIND, state, stream_settings(config))


def load_stream_state(path, config):
    """The state at ``path`` checked against ``config``, before any data is loaded."""
    state = load_run_state(path, KIND, "stream_resume", stream_settings(config), SUFFIX)
    done, run_id = state.get("segments_done"), state.get("run_id")
    if isinstance(done, bool) or not isinstance(done, int) or done < 1:
        raise refusal("stream_resume", path, f"segments_done={done!r}: expected a positive integer")
    if not isinstance(run_id, str) or os.sep in run_id or not run_id.strip():
        raise refusal("stream_resume", path, f"run_id={run_id!r}: expected the run's time stamp")
    shapes = {"rows": list, "totals": dict, "last": dict, "previous": dict, "planner": dict, "loaders": dict,
              "global_rng": dict}
    for key, kind in shapes.items():
        if not isinstance(state.get(key), kind):
            raise refusal("stream_resume", path, f"its {key} is missing or not a {kind.__name__}")
    if len(state["rows"]) != done or not all(isinstance(state["previous"].get(k), dict) for k in ("tables", "params")):
        raise refusal("stream_resume", path, f"{len(state['rows'])} segment rows for segments_done={done}, or no "
                                             "warm-start snapshot")
    return state
