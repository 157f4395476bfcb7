"""Continue a stopped run from its checkpoint (``resume_checkpoint: path/to/Model-….pth``).

A run longer than the machine's session (LightGCN on Beauty, converged, on a CPU) would otherwise lose
every epoch when it is stopped. RecBole keeps the best epoch's weights, optimiser state, epoch and
early-stopping counter in its checkpoint; the run goes on from there with the plan saved beside it, so
the tables are the same ones. What is not in a checkpoint is the random state of the samplers, so a
resumed run is not bit-identical to one never stopped; the result says where it resumed.
"""

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
        raise ValueError(f"resume_checkpoint={path!r}: a stream trains one model per segment; resuming one "
                         "segment is not supported (set stream: False, or leave resume_checkpoint out)")
    if not config["single_spec"]:
        raise ValueError(f"resume_checkpoint={path!r}: not supported in distributed training (nproc > 1)")
    if method.trainer is not None:  # CIESS: its trainer restarts the final training from the search's init
        raise ValueError(f"resume_checkpoint={path!r}: emb={config['emb']} trains through its own trainer "
                         "(a search, then packed tables), which cannot resume yet; run it again from the start")
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
