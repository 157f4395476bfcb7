"""Targeted fixes that let RecBole 1.2.1 run on today's NumPy, SciPy, pandas and PyTorch.

Applied once, when ``recbole_lightemb`` is imported, so a user's own
``from recbole.quick_start import run_recbole`` works afterwards too. Each fix checks
that the thing it repairs is really missing or broken, and leaves RecBole alone otherwise.
The README lists them. ray (RecBole pins ``ray<=2.6.3``, which needs NumPy 1 and
``pkg_resources``) is never imported unless RecBole's ray-based tuning is used, so NumPy 2 works.
"""

import functools
import importlib
import os
import sys
import types
import warnings

import numpy as np
import pandas as pd
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


_NUMPY_ALIASES = {"bool": "bool_", "int": "int_", "float": "float64", "complex": "complex128",
                  "object": "object_", "str": "str_", "long": "int_", "unicode": "str_"}
"""The aliases RecBole's code still uses (``np.float``, ``np.long``, …), each named by a type that both
NumPy 1 and NumPy 2 have: RecBole's own list reads ``np.float_``, ``np.complex_`` and ``np.unicode_``,
which NumPy 2 removed."""


def _compatibility_settings(self):
    """RecBole's ``Config.compatibility_settings``, through names that exist in NumPy 1 and 2."""
    for alias, name in _NUMPY_ALIASES.items():
        setattr(np, alias, getattr(np, name))


def patch_numpy_aliases():
    """Let RecBole's ``Config`` restore its NumPy aliases on NumPy 2 too (NumPy 1 keeps RecBole's own)."""
    from recbole.config import Config

    if not hasattr(np, "float_"):
        Config.compatibility_settings = _compatibility_settings


class _RayTuneOnFirstUse(types.ModuleType):
    """Stands for ``ray.tune`` in ``recbole.quick_start``: ray is imported when RecBole's ray-based
    tuning first touches it, never on import (ray 2.6 breaks on NumPy 2 and takes seconds to load)."""

    def __getattr__(self, name):
        if name.startswith("__"):  # repr, pickling and introspection must not import ray
            raise AttributeError(name)
        try:
            tune = importlib.import_module("ray.tune")
        except Exception as error:  # noqa: BLE001  (ray 2.6 fails in several ways on today's stack)
            raise ImportError(f"RecBole's ray-based tuning needs ray.tune, which failed to import "
                              f"({type(error).__name__}: {error}); ray<=2.6.3 (RecBole's pin) needs "
                              "numpy<2 and setuptools<82") from error
        return getattr(tune, name)


def import_quick_start_without_ray():
    """Import ``recbole.quick_start`` with its module-level ``from ray import tune`` bound to a stand-in
    that imports ray on first use; ``sys.modules`` keeps no trace of the stand-in afterwards."""
    if "recbole.quick_start.quick_start" in sys.modules:
        return
    stand_in = None
    if "ray" not in sys.modules:
        stand_in = types.ModuleType("ray", "stand-in while recbole.quick_start is imported")
        stand_in.tune = _RayTuneOnFirstUse("ray.tune")
        sys.modules["ray"] = stand_in
    try:
        importlib.import_module("recbole.quick_start.quick_start")
    finally:
        if stand_in is not None and sys.modules.get("ray") is stand_in:
            del sys.modules["ray"]


def _other_parameter_as_data(model):
    """RecBole's ``other_parameter()`` without the model's own submodules (DIN and DIEN list their
    embedding layer there): those weights are in the state dict already, and a pickled module is code."""
    other = model.other_parameter()
    if other is None:
        return None
    modules = {id(m) for m in model.modules()}
    return {key: value for key, value in other.items() if id(value) not in modules}


def _save_checkpoint(self, epoch, verbose=True, **kwargs):
    """RecBole's checkpoint with its config written as plain values (:mod:`recbole_lightemb.storage.checkpoint`):
    the file holds tensors, numbers, strings, lists and dicts only, and loads with no allow-list."""
    from recbole.utils import set_color

    from recbole_lightemb.storage.checkpoint import config_to_data

    if not self.config["single_spec"] and self.config["local_rank"] != 0:
        return
    saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
    state = {
        "config": config_to_data(self.config),
        "epoch": epoch,
        "cur_step": self.cur_step,
        "best_valid_score": float(self.best_valid_score),
        "state_dict": self.model.state_dict(),
        "other_parameter": _other_parameter_as_data(self.model),
        "optimizer": self.optimizer.state_dict(),
    }
    partial = f"{saved_model_file}.partial"  # whole or not at all: a run killed mid-write keeps its last best
    torch.save(state, partial)
    os.replace(partial, saved_model_file)
    if verbose:
        self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")


def _load_into_model(trainer, checkpoint_file):
    """Read ``checkpoint_file`` as data only and put its weights into the trainer's model."""
    from recbole_lightemb.storage.checkpoint import load_checkpoint
    from recbole_lightemb.storage.rebuild import restore_other_parameter

    checkpoint = load_checkpoint(checkpoint_file, map_location=trainer.device,
                                 trust=bool(trainer.config["trust_checkpoint"]))
    trainer.model.load_state_dict(checkpoint["state_dict"])
    restore_other_parameter(trainer.model, checkpoint.get("other_parameter"), str(checkpoint_file))
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
    import_quick_start_without_ray()
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


def _once(init):
    """``init`` run on its first call only."""

    @functools.wraps(init)
    def wrapper(*args, **kwargs):
        if not wrapper.done:
            wrapper.done = True
            init(*args, **kwargs)

    wrapper.done = False
    wrapper.__lightemb_once__ = True
    return wrapper


def patch_colorama_once():
    """RecBole's ``init_logger`` calls ``colorama.init(autoreset=True)`` on every run, and each call wraps
    ``sys.stdout``/``sys.stderr`` once more: a process that runs a few hundred models (a comparison, the
    coverage table, a notebook) dies writing to stderr with a ``RecursionError``. The streams are wrapped once."""
    import recbole.utils.logger as recbole_logger

    if not getattr(recbole_logger.init, "__lightemb_once__", False):
        recbole_logger.init = _once(recbole_logger.init)


def patch_cpu_distributed():
    """Let RecBole's distributed trainer run on CPU processes (gloo)."""
    from recbole.trainer.trainer import AbstractTrainer

    AbstractTrainer.__init__ = _trainer_init


KNOWN_WARNINGS = (
    # (message regex, category, module regex): raised inside RecBole or its dependencies, nothing a user can act on
    (r"pkg_resources is deprecated", UserWarning, r"ray\."),  # ray 2.6, if RecBole's ray-based tuning is used
    (r"`np\.bool8` is a deprecated alias", DeprecationWarning, r"ray\."),
    (r"A value is trying to be set on a copy of a DataFrame", FutureWarning, r"recbole\."),  # fillna(inplace)
    (r"using <built-in function len> in Series\.agg", FutureWarning, r"recbole\."),  # token_seq fields
    (r"A value is being set on a copy of a DataFrame or Series through chained", Warning, r"recbole\."),  # pandas 3
    (r"The inplace keyword in DataFrame", Warning, r"recbole\."),  # pandas 3.1: drop/reset_index(inplace=True)
    (r"The given NumPy array is not writable", UserWarning, r"recbole\."),  # pandas 3's read-only columns as tensors
    (r"torch\.sparse\.SparseTensor\(indices, values,", UserWarning, r"recbole\."),  # LightGCN, NGCF, …
    (r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", FutureWarning, r"recbole\."),
    (r"distutils Version classes are deprecated", DeprecationWarning, r"thop\."),  # RecBole's FLOPs counter
    # NumPy 2, when RecBole's Interaction.sort calls np.argsort on a torch tensor (torch's old __array_wrap__)
    (r"__array_wrap__ must accept context and return_scalar", DeprecationWarning, r"numpy\."),
)


def quiet_known_warnings():
    """Silence the warnings of :data:`KNOWN_WARNINGS`, each by message, category and origin, so a run
    prints only warnings its user can act on."""
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def _plain_numbers(evaluate):
    """RecBole's ``Evaluator.evaluate`` with its NumPy scalars as Python numbers: under NumPy 2 every result
    line would read ``OrderedDict([('recall@10', np.float64(0.1913)), …])``; RecBole 1.2.1 printed plain numbers."""

    @functools.wraps(evaluate)
    def wrapper(self, dataobject):
        result = evaluate(self, dataobject)
        return type(result)((k, v.item() if isinstance(v, np.generic) else v) for k, v in result.items())

    wrapper.__lightemb_plain__ = True
    return wrapper


def patch_plain_results():
    """Every metric RecBole's trainers compute (and log, and return) is a plain float."""
    from recbole.evaluator import Evaluator

    if not getattr(Evaluator.evaluate, "__lightemb_plain__", False):
        Evaluator.evaluate = _plain_numbers(Evaluator.evaluate)


# pandas 3: copy-on-write makes RecBole's chained ``df[field].fillna(..., inplace=True)`` fill nothing, and
# ``Series.agg(len)`` is now the column's length, not each row's.

class _PandasReadingEmptySequences(types.ModuleType):
    """``pandas`` as RecBole's dataset module sees it: ``read_csv`` gives the empty cells of sequence columns
    (``name:token_seq``, ``name:float_seq``) as ``""``, which RecBole's chained ``fillna`` no longer does."""

    def __getattr__(self, name):
        return getattr(pd, name)

    @staticmethod
    def read_csv(*args, **kwargs):
        frame = pd.read_csv(*args, **kwargs)
        for column in frame.columns:
            if str(column).endswith("_seq"):
                frame[column] = frame[column].fillna("")
        return frame


def _fill_nan(self):
    """RecBole's ``Dataset._fill_nan`` by assignment: a missing token becomes 0 (padding), a missing float the
    column's mean, a missing sequence an empty one."""
    from recbole.utils import FeatureType

    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(feat[field].mean())
            else:
                dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                feat[field] = feat[field].apply(lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x)


def _remap(self, remap_list):
    """RecBole's ``Dataset._remap`` (tokens to ids with ``pd.factorize``, id 0 left for padding), with each
    sequence split back at its own row's length."""
    from recbole.utils import FeatureType

    if not remap_list:
        return
    tokens, split_point = self._concat_remaped_tokens(remap_list)
    codes, uniques = pd.factorize(tokens)
    id_token = np.array(["[PAD]", *uniques])
    token_id = {token: i for i, token in enumerate(id_token)}
    for (feat, field, ftype), ids in zip(remap_list, np.split(codes + 1, split_point)):
        if field not in self.field2id_token:
            self.field2id_token[field], self.field2token_id[field] = id_token, token_id
        if ftype == FeatureType.TOKEN:
            feat[field] = ids
        else:
            feat[field] = np.split(ids, np.cumsum(feat[field].map(len).to_numpy())[:-1])  # each row's length


def patch_pandas_copy_on_write():
    """Under pandas 3, RecBole's dataset fills missing values and splits sequence fields as under pandas 2."""
    if int(pd.__version__.split(".")[0]) < 3:
        return
    import recbole.data.dataset.dataset as dataset_module
    from recbole.data.dataset import Dataset

    if isinstance(dataset_module.pd, _PandasReadingEmptySequences):
        return
    dataset_module.pd = _PandasReadingEmptySequences("pandas")
    Dataset._fill_nan = _fill_nan
    Dataset._remap = _remap


def _exhaustive_search(new_ids, domain, trials, seed, nbMaxSucessiveFailures=1000):
    """RecBole's exhaustive search (draw each new trial's point until it is one not tried yet; none left: ``[]``),
    drawing from the ``numpy.random.Generator`` hyperopt >= 0.2.7 needs, where RecBole's passes a ``RandomState``."""
    from hyperopt import pyll
    from hyperopt.base import miscs_update_idxs_vals

    def point(vals):
        return frozenset((name, value[0] if len(value) else None) for name, value in vals.items())

    tried = {point(trial["misc"]["vals"]) for trial in trials.trials}
    rng = np.random.default_rng(seed)
    docs = []
    for new_id in new_ids:
        for _ in range(nbMaxSucessiveFailures + 1):
            idxs, vals = pyll.rec_eval(domain.s_idxs_vals, memo={domain.s_new_ids: [new_id], domain.s_rng: rng})
            if point(vals) not in tried:
                break
        else:
            return []
        tried.add(point(vals))
        misc = {"tid": new_id, "cmd": domain.cmd, "workdir": domain.workdir}
        miscs_update_idxs_vals([misc], idxs, vals)
        docs.extend(trials.new_trial_docs([new_id], [None], [domain.new_result()], [misc]))
    return docs


def patch_exhaustive_search():
    """RecBole's ``HyperTuning(algo="exhaustive")`` (its ``run_hyper.py`` default) works with hyperopt >= 0.2.7."""
    from importlib import metadata

    import recbole.trainer.hyper_tuning as hyper_tuning

    try:
        version = tuple(int(part) for part in metadata.version("hyperopt").split(".")[:3] if part.isdigit())
    except metadata.PackageNotFoundError:
        return
    if version >= (0, 2, 7):
        hyper_tuning.exhaustive_search = _exhaustive_search


ANOMALY_MODULE = "recbole.model.sequential_recommender.sine"
"""RecBole's SINE module calls ``torch.autograd.set_detect_anomaly(True)`` when it is imported, and the
sequential package's ``__init__`` imports it: RecBole's own ``get_model`` does for every sequential,
knowledge-aware and external-library model, the plugin's model check for every model. From then on every
training step in the process records a Python stack trace per operation and checks the backward pass for
NaNs — the same numbers, slower."""


def import_sine_without_anomaly_mode():
    """Import SINE's module now, keeping autograd's anomaly mode as it was, so no later import switches it on."""
    if ANOMALY_MODULE in sys.modules:
        return
    was, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        importlib.import_module(ANOMALY_MODULE)
    finally:
        torch.autograd.set_detect_anomaly(was, check_nan=check_nan)


def apply():
    """Apply every fix; safe to call more than once."""
    import_sine_without_anomaly_mode()
    quiet_known_warnings()
    patch_numpy_aliases()
    patch_scipy_dok()
    patch_plain_results()
    patch_pandas_copy_on_write()
    patch_exhaustive_search()
    patch_colorama_once()
    patch_checkpoint_loading()
    patch_cpu_distributed()
