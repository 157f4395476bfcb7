"""Targeted fixes that let RecBole 1.2.1 run on today's NumPy, SciPy and PyTorch.

Applied once, when ``recbole_lightemb`` is imported, so a user's own
``from recbole.quick_start import run_recbole`` works afterwards too. Each fix checks
that the thing it repairs is really missing or broken, and leaves RecBole alone otherwise.
The README lists them; the pins that remain are in ``pyproject.toml`` because no import-time
fix can reach them: RecBole 1.2.1 requires ``ray<=2.6.3``, which is imported by
``recbole.quick_start`` and needs ``pkg_resources`` (``setuptools<82``) and NumPy 1
(``np.bool8`` in class bodies: ``numpy<2``); pandas 3's copy-on-write silently turns RecBole's
chained ``fillna(inplace=True)`` into a no-op (``pandas<3``).
"""

import copy
import functools

import numpy as np
import torch
import torch.distributed as dist
from scipy.sparse import dok_matrix


def _dok_update(self, data):
    """The bulk update RecBole's graph models call (``dok_matrix._update``, removed in SciPy 1.13)."""
    self.update(data)


def patch_scipy_dok():
    """Give ``dok_matrix`` back the private ``_update`` that LightGCN, NGCF, … use."""
    if not hasattr(dok_matrix, "_update"):
        dok_matrix._update = _dok_update


def recbole_checkpoint_globals():
    """The classes a RecBole checkpoint holds besides tensors: data only, no code runs on load."""
    import yaml
    from recbole.config import Config
    from recbole.utils import EvaluatorType, InputType, ModelType

    from recbole_lightemb.config import Config as LightConfig

    allowed = [Config, LightConfig, ModelType, InputType, EvaluatorType, yaml.FullLoader, np.dtype]
    allowed.append(np.core.multiarray.scalar)
    allowed += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return allowed


def _with_safe_globals(func):
    """Run ``func`` with ``torch.load`` in weights-only mode allowing RecBole's own data classes."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with torch.serialization.safe_globals(recbole_checkpoint_globals()):
            return func(*args, **kwargs)

    wrapper.__lightemb_safe_load__ = True
    return wrapper


def _save_checkpoint(self, epoch, verbose=True, **kwargs):
    """RecBole's checkpoint, written with the default pickle protocol (2).

    RecBole 1.2.1 writes protocol 4, which PyTorch's weights-only loader cannot read at all;
    with protocol 2 the checkpoint loads with ``weights_only=True`` plus an allow-list of
    RecBole's config classes, so no arbitrary pickle is ever executed.
    """
    from recbole.utils import set_color

    if not self.config["single_spec"] and self.config["local_rank"] != 0:
        return
    saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
    config = copy.copy(self.config)
    config.model_class = None  # a class reference is code, not data: keep the checkpoint data-only
    state = {
        "config": config,
        "epoch": epoch,
        "cur_step": self.cur_step,
        "best_valid_score": float(self.best_valid_score),
        "state_dict": self.model.state_dict(),
        "other_parameter": self.model.other_parameter(),
        "optimizer": self.optimizer.state_dict(),
    }
    torch.save(state, saved_model_file)
    if verbose:
        self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")


def _best_checkpoint_of_rank_zero(evaluate):
    """RecBole's ``evaluate``, made safe for its distributed runs when it loads the best model.

    Only rank 0 writes checkpoints, yet every rank loads "its" ``saved_model_file``: a name stamped
    with each rank's own clock (ranks that start a second apart name different files) and read
    without waiting for rank 0 to finish writing (a truncated zip). Every rank takes rank 0's name
    and waits at a barrier before loading.
    """

    @functools.wraps(evaluate)
    def wrapper(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and model_file is None and not self.config["single_spec"]:
            names = [self.saved_model_file]
            dist.broadcast_object_list(names, src=0)
            self.saved_model_file = names[0]
            dist.barrier()
        return evaluate(self, eval_data, load_best_model, model_file, show_progress)

    return wrapper


def patch_torch_load():
    """Make RecBole's trainer and ``load_data_and_model`` read its checkpoints safely on torch ≥ 2.6
    (and, in distributed runs, read the one checkpoint rank 0 wrote, once it is complete)."""
    import recbole.quick_start
    import recbole.quick_start.quick_start as qs
    from recbole.trainer import Trainer

    if getattr(Trainer.evaluate, "__lightemb_safe_load__", False):
        return
    Trainer._save_checkpoint = _save_checkpoint
    Trainer.resume_checkpoint = _with_safe_globals(Trainer.resume_checkpoint)
    Trainer.evaluate = _with_safe_globals(_best_checkpoint_of_rank_zero(Trainer.evaluate))
    safe_loader = _with_safe_globals(qs.load_data_and_model)
    qs.load_data_and_model = safe_loader
    recbole.quick_start.load_data_and_model = safe_loader


def _trainer_init(self, config, model):
    """RecBole's ``AbstractTrainer.__init__``, with ``device_ids`` only for GPU modules:
    DistributedDataParallel refuses ``device_ids`` for a CPU model (gloo runs)."""
    from torch.nn.parallel import DistributedDataParallel

    self.config = config
    self.model = model
    if not config["single_spec"]:
        self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [config["local_rank"]] if config["device"].type == "cuda" else None
        self.distributed_model = DistributedDataParallel(self.model, device_ids=device_ids)


def patch_cpu_distributed():
    """Let RecBole's distributed trainer run on CPU processes (gloo)."""
    from recbole.trainer.trainer import AbstractTrainer

    AbstractTrainer.__init__ = _trainer_init


def apply():
    """Apply every fix; safe to call more than once."""
    patch_scipy_dok()
    patch_torch_load()
    patch_cpu_distributed()
