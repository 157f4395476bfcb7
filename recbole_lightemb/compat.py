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

import functools
import warnings

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


def _save_checkpoint(self, epoch, verbose=True, **kwargs):
    """RecBole's checkpoint with its config written as plain values (:mod:`recbole_lightemb.checkpoint`):
    the file holds tensors, numbers, strings, lists and dicts only, and loads with no allow-list."""
    from recbole.utils import set_color

    from recbole_lightemb.checkpoint import config_to_data

    if not self.config["single_spec"] and self.config["local_rank"] != 0:
        return
    saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
    state = {
        "config": config_to_data(self.config),
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


def _load_into_model(trainer, checkpoint_file):
    """Read ``checkpoint_file`` as data only and put its weights into the trainer's model."""
    from recbole_lightemb.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_file, map_location=trainer.device,
                                 trust=bool(trainer.config["trust_checkpoint"]))
    trainer.model.load_state_dict(checkpoint["state_dict"])
    trainer.model.load_other_parameter(checkpoint.get("other_parameter"))
    return checkpoint


def _evaluate_loading_data_only(evaluate):
    """RecBole's ``evaluate``, with the best (or given) checkpoint read by the plugin's data-only loader."""

    @functools.wraps(evaluate)
    def wrapper(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            _load_into_model(self, checkpoint_file)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return evaluate(self, eval_data, False, None, show_progress)

    wrapper.__lightemb_safe_load__ = True
    return wrapper


def _resume_checkpoint(self, resume_file):
    """RecBole's ``resume_checkpoint``, reading the file with the data-only loader."""
    self.saved_model_file = str(resume_file)
    checkpoint = _load_into_model(self, resume_file)
    self.start_epoch = checkpoint["epoch"] + 1
    self.cur_step = checkpoint["cur_step"]
    self.best_valid_score = checkpoint["best_valid_score"]
    saved_model = checkpoint["config"]["model"] if checkpoint["config"] is not None else None
    if saved_model is not None and saved_model.lower() != self.config["model"].lower():
        self.logger.warning(f"checkpoint {resume_file!r} was written by model={saved_model!r}, not "
                            f"{self.config['model']!r}; its state_dict may not fit")
    self.optimizer.load_state_dict(checkpoint["optimizer"])
    self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")


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


def patch_checkpoint_loading():
    """Every RecBole load path the plugin reaches reads checkpoints as data only (and, in distributed
    runs, reads the one checkpoint rank 0 wrote, once it is complete); RecBole's own
    ``load_data_and_model`` becomes the plugin's, which also rebuilds compressed tables."""
    import recbole.quick_start
    import recbole.quick_start.quick_start as qs
    from recbole.trainer import Trainer

    from recbole_lightemb.quick_start import load_data_and_model

    if getattr(Trainer.evaluate, "__lightemb_safe_load__", False):
        return
    Trainer._save_checkpoint = _save_checkpoint
    Trainer.resume_checkpoint = _resume_checkpoint
    Trainer.evaluate = _best_checkpoint_of_rank_zero(_evaluate_loading_data_only(Trainer.evaluate))
    Trainer.evaluate.__lightemb_safe_load__ = True
    qs.load_data_and_model = load_data_and_model
    recbole.quick_start.load_data_and_model = load_data_and_model


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


KNOWN_WARNINGS = (
    # (message regex, category, module regex): raised inside RecBole or its dependencies, nothing a user can act on
    (r"pkg_resources is deprecated", UserWarning, r"ray\."),  # ray 2.6, imported by recbole.quick_start
    (r"`np\.bool8` is a deprecated alias", DeprecationWarning, r"ray\."),
    (r"A value is trying to be set on a copy of a DataFrame", FutureWarning, r"recbole\."),  # fillna(inplace)
    (r"torch\.sparse\.SparseTensor\(indices, values, shape", UserWarning, r"recbole\."),  # LightGCN, NGCF, …
    (r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", FutureWarning, r"recbole\."),
    (r"distutils Version classes are deprecated", DeprecationWarning, r"thop\."),  # RecBole's FLOPs counter
)


def quiet_known_warnings():
    """Silence the warnings of :data:`KNOWN_WARNINGS`, each by message, category and origin, so a run
    prints only warnings its user can act on."""
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def apply():
    """Apply every fix; safe to call more than once."""
    quiet_known_warnings()
    patch_scipy_dok()
    patch_checkpoint_loading()
    patch_cpu_distributed()
