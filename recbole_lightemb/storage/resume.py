"""Continue a stopped run from its checkpoint (``resume_checkpoint: path/to/Model-….pth``).

A run longer than the machine's session (LightGCN on Beauty, converged, on a CPU) would otherwise lose
every epoch when it is stopped. RecBole keeps the best epoch's weights, optimiser state, epoch and
early-stopping counter in its checkpoint; the run goes on from there with the plan saved beside it, so
the tables are the same ones. What is not in a checkpoint is the random state of the samplers, so a
resumed run is not bit-identical to one never stopped; the result says where it resumed.

Beside the checkpoint a run also keeps its evaluation curve (``<stem>.curve.json``, rewritten at every
evaluation), so a run resumed in a later session still reports quality after 50, 100, … epochs: the points
up to the epoch it resumed from come from that file (read as JSON data), the rest from the resumed training.
"""

import json
import math
import os

from recbole_lightemb.storage.checkpoint import load_checkpoint
from recbole_lightemb.plan import plan_path, reused_plan

SAME_KEYS = ("model", "dataset", "emb", "emb_budget", "emb_width", "embedding_size", "learning_rate")
"""What a resumed run must share with the run that wrote the checkpoint: the tables it holds (a plan under
another budget would still fit and be trained under the wrong label) and the optimiser state it restores."""


def check_resume(config, method):
    """Validate ``resume_checkpoint`` before any data is loaded; return the checkpoint's epoch, or None.

    The checkpoint must have been written with the same :data:`SAME_KEYS` and leave epochs to train; without
    ``emb_plan`` (or the method's own plan key) the plan beside the checkpoint is used, and it must be there.
    """
    path = config["resume_checkpoint"]
    if path is None:
        return None
    if not isinstance(path, str) or not os.path.isfile(path):
        raise ValueError(f"resume_checkpoint={path!r}: expected the path of a checkpoint (.pth) this plugin wrote")
    if config["stream"]:
        raise ValueError(f"resume_checkpoint={path!r}: a stream trains one model per segment; a stopped stream "
                         "goes on from its state file (stream_resume: <model>-<run id>-stream.state.pth)")
    if not config["single_spec"]:
        raise ValueError(f"resume_checkpoint={path!r}: not supported in distributed training (nproc > 1)")
    if method.trainer is not None:  # CIESS: its trainer restarts the final training from the search's init
        raise ValueError(f"resume_checkpoint={path!r}: emb={config['emb']} trains through its own trainer "
                         "(a search, then packed tables), whose final training restarts from the search's init; a "
                         "stopped search goes on from its state file (ciess_resume_search: <stem>.search.pth)")
    saved = load_checkpoint(path, map_location="cpu", trust=bool(config["trust_checkpoint"]))
    written = saved["config"]
    for key in SAME_KEYS:
        was = written[key] if written is not None else None
        if was != config[key]:
            raise ValueError(f"resume_checkpoint={path!r}: written with {key}={was!r}, this run has "
                             f"{key}={config[key]!r}; resume with the settings that wrote it")
    if saved["epoch"] + 1 >= config["epochs"]:
        raise ValueError(f"resume_checkpoint={path!r}: its best epoch is {saved['epoch']}, and epochs="
                         f"{config['epochs']} leaves none to train after it; raise epochs")
    if not reused_plan(config, method.name):
        plan = plan_path(path)
        if not os.path.isfile(plan):
            raise ValueError(f"resume_checkpoint={path!r}: no plan beside it ({plan}); pass the run's plan "
                             "as emb_plan")
        config["emb_plan"] = plan
    return int(saved["epoch"])


CURVE_SUFFIX = ".curve.json"


def curve_path(checkpoint_file):
    """Where a run's evaluation curve lives: beside its checkpoint, same stem."""
    return os.path.splitext(str(checkpoint_file))[0] + CURVE_SUFFIX


def save_curve(checkpoint_file, curve):
    """Write ``curve`` (``ConvergenceLog.curve()``) beside ``checkpoint_file``, whole or not at all."""
    path = curve_path(checkpoint_file)
    with open(f"{path}.partial", "w") as f:
        json.dump(curve, f)
    os.replace(f"{path}.partial", path)


def earlier_curve(checkpoint_file, resumed_epoch):
    """The points of the curve beside ``checkpoint_file`` up to the epoch it was written at (``resumed_epoch``,
    0-based), or ``[]`` where it has none (a checkpoint from before curves were kept); a file that is not such a
    curve is a ``ValueError`` naming it."""
    path = curve_path(checkpoint_file)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        try:
            curve = json.load(f)
        except ValueError as error:
            raise ValueError(f"curve {path!r}: not JSON ({error}); delete it to resume without the earlier curve") from None
    if not isinstance(curve, list) or not all(_is_point(point) for point in curve):
        raise ValueError(f"curve {path!r}: expected a list of {{'epochs': int, 'valid': number, 'test': {{name: "
                         "number}}}}; delete it to resume without the earlier curve")
    return [point for point in curve if point["epochs"] <= resumed_epoch + 1]


def _is_point(point):
    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    return (isinstance(point, dict) and set(point) <= {"epochs", "valid", "test"}
            and isinstance(point.get("epochs"), int) and point["epochs"] > 0 and number(point.get("valid"))
            and (isinstance(point.get("test", {}), dict)
                 and all(isinstance(k, str) and number(v) for k, v in point.get("test", {}).items())))
