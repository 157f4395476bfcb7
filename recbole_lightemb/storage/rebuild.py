"""Rebuilding a model from a checkpoint: the file decides only *what* the model is, the caller *where* it runs.

A checkpoint's config is data a stranger may have written, and RecBole acts on config values: it joins
``dataset`` and ``model`` into the paths it reads, unpickles and logs to, reads the files ``data_path`` and
``*_path`` name, forks ``worker`` processes and sizes tables by ``embedding_size``. So the config is rebuilt
from an allow-list — the model's own hyper-parameters (its RecBole YAML), RecBole's documented model,
training, evaluation and dataset keys, and the plugin's keys — each checked against its default's type,
never evaluated; everything about where and how to run (:data:`LOCATION_KEYS`) comes from the caller with
RecBole's defaults. Models that read extra files while they are built are refused (:data:`BUILD_READS`),
and the model the config describes is sized on PyTorch's ``meta`` device (no memory) and checked against
the checkpoint's own tensors before anything real is allocated.
"""

import enum
import math
import re
from logging import getLogger

import torch
from recbole.utils import argument_list

from recbole_lightemb.storage.checkpoint import CheckpointError
from recbole_lightemb.config import Config

LOCATION_KEYS = frozenset({
    "gpu_id", "use_gpu", "device", "data_path", "checkpoint_dir", "config_file", "save_dataset",
    "dataset_save_path", "save_dataloaders", "dataloaders_save_path", "log_wandb", "wandb_project", "worker",
    "nproc", "world_size", "offset", "ip", "port", "local_rank", "single_spec", "state", "show_progress",
    "result_file", "resume_checkpoint", "ciess_resume_search", "stream_resume", "trust_checkpoint", "pre_model_path",
    "pretrain_path",
    "mf_pretrain_path", "mlp_pretrain_path", "warm_up", "teacher"})
"""Where and how to run: the caller's (arguments of ``load_data_and_model``), never the file's. Every
``*_plan`` key is the caller's too: a checkpoint's plan is the ``.plan.npz`` beside it."""

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
NAME_KEYS = ("dataset", "benchmark_filename", "additional_feat_suffix")
"""Values RecBole joins into file paths: plain names only (no separator, no ``..``, not absolute)."""

MAX_ITEMS, MAX_DEPTH, MAX_STRING, MAX_NUMBER = 100_000, 8, 1_000, 1e15
MIN_MODEL_BYTES = 1 << 30
"""A rebuilt model may hold ``max(1 GiB, 4 × the checkpoint's tensor bytes)`` unless the caller allows more."""


BUILD_READS = {
    "LDiffRec": (lambda c: (c["n_cate"] or 0) > 1, "np.load(<data_path>/item_emb.npy, allow_pickle=True) when n_cate > 1"),
    "KD_DAGFM": (lambda c: True, "eval() of its 'teacher' value and torch.load of 'warm_up'"),
    "ConvNCF": (lambda c: c["train_method"] == "after_pretrain", "torch.load(pre_model_path) when train_method is after_pretrain"),
    "NAIS": (lambda c: c["pretrain_path"] is not None, "torch.load(pretrain_path) when it is set"),
    "RaCT": (lambda c: c["train_stage"] in ("critic_pretrain", "finetune"), "torch.load(pre_model_path) after its first stage"),
    "NeuMF": (lambda c: bool(c["use_pretrain"]), "torch.load of mf_pretrain_path and mlp_pretrain_path when use_pretrain"),
    "S3Rec": (lambda c: c["train_stage"] == "finetune", "torch.load(pre_model_path) when train_stage is finetune"),
}
"""RecBole 1.2.1's models that read a file while they are built (found by grepping ``recbole/model`` for
``np.load``, ``torch.load``, ``eval(``, ``pickle`` and ``open(``; ``tests/test_security.py`` greps again), with
the setting that makes them read it. Rebuilt from a checkpoint, such a model is refused."""


class _ValuesOnly(Config):
    """The plugin's ``Config`` built from values as they are: the values given are not ``eval``-ed (RecBole
    evaluates strings of a ``config_dict``) and the command line of the process is not read."""

    def _load_variable_config_dict(self, config_dict):
        return dict(config_dict or {})

    def _load_cmd_line(self):
        return {}


def _values_only_config(model, dataset, values):
    config = _ValuesOnly(model=model, dataset=dataset, config_dict=values)
    config.__class__ = Config
    return config


def _registered(method):
    """``method`` is the name of a registered embedding method (so naming its YAML reads no other file)."""
    from recbole_lightemb.registry import available_methods

    return isinstance(method, str) and method in available_methods()


def check_names(model, dataset, path):
    """``model`` a RecBole model name, ``dataset`` a plain name: both are joined into paths RecBole reads,
    unpickles and logs to. Checked before any file is touched."""
    from recbole_lightemb.config import recbole_model_names

    if not isinstance(model, str) or model not in recbole_model_names():
        raise CheckpointError(f"checkpoint {path!r}: model={model!r} is not a RecBole model name")
    if not _plain(dataset):
        raise CheckpointError(f"checkpoint {path!r}: dataset={dataset!r}: expected a plain name (letters, digits, "
                              "'_', '-', '.'; no path separator, no '..', not absolute)")


def _plain(name):
    return isinstance(name, str) and PLAIN_NAME.fullmatch(name) is not None and ".." not in name


def _check_plain_data(key, value, path, depth=0, budget=None):
    """Plain JSON-like data of bounded size: the only shape an allowed value may have."""
    budget = budget if budget is not None else [MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise CheckpointError(f"checkpoint {path!r}: config value of {key} is too large or too deep "
                              f"(at most {MAX_ITEMS} items, depth {MAX_DEPTH})")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            raise CheckpointError(f"checkpoint {path!r}: {key}={value!r}: expected a finite number below {MAX_NUMBER:g}")
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise CheckpointError(f"checkpoint {path!r}: {key}: a string of {len(value)} characters "
                                  f"(at most {MAX_STRING})")
        return
    if isinstance(value, list):
        for item in value:
            _check_plain_data(key, item, path, depth + 1, budget)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            _check_plain_data(key, k, path, depth + 1, budget)
            _check_plain_data(key, item, path, depth + 1, budget)
        return
    raise CheckpointError(f"checkpoint {path!r}: {key}={value!r}: a {type(value).__name__} where only numbers, "
                          "strings, lists and dicts are allowed")


def _same_kind(value, default):
    """``value`` may stand where ``default`` stands: None anywhere, numbers for numbers, else the same type."""
    if value is None or default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    return isinstance(value, type(default)) or (isinstance(default, (list, tuple)) and isinstance(value, list))


def _allowed_keys(defaults):
    """The keys a checkpoint may set: its model's YAML, RecBole's YAMLs and documented keys, the plugin's."""
    documented = set()
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        documented |= set(getattr(argument_list, name))
    keys = (set(defaults.internal_config_dict) | documented) - LOCATION_KEYS - {"model", "dataset"}
    derived = {k for k, v in defaults.final_config_dict.items() if isinstance(v, (enum.Enum, torch.device))}
    return {k for k in keys - derived if not k.endswith("_plan")}


def config_from_checkpoint(stored, path, where=None):
    """The :class:`Config` to rebuild a checkpoint's model with: the allow-listed values of ``stored`` (the
    checkpoint's config), type-checked against RecBole's and the plugin's defaults and never evaluated, plus
    ``where`` (the caller's :data:`LOCATION_KEYS`, RecBole's defaults for the rest)."""
    where = dict(where or {})
    for key in where:
        if key not in LOCATION_KEYS:
            raise ValueError(f"{key}={where[key]!r}: load_data_and_model takes only where-to-run keys from the "
                             f"caller ({', '.join(sorted(LOCATION_KEYS))}); the rest comes from the checkpoint")
    final = stored.final_config_dict
    model, dataset = stored["model"], stored["dataset"]
    check_names(model, dataset, path)
    method = final.get("emb")  # a registered method's own YAML holds keys the checkpoint may set (quant_bits, …)
    defaults = _values_only_config(model, dataset, {**where, **({"emb": method} if _registered(method) else {})})
    allowed = _allowed_keys(defaults)
    values, ignored = {}, []
    for key, value in final.items():
        if key not in allowed:
            if key not in defaults.final_config_dict and key not in LOCATION_KEYS and not key.endswith("_plan"):
                ignored.append(key)
            continue
        _check_plain_data(key, value, path)
        default = defaults.final_config_dict.get(key, defaults.internal_config_dict.get(key))
        if not _same_kind(value, default):
            raise CheckpointError(f"checkpoint {path!r}: {key}={value!r}: expected a {type(default).__name__} "
                                  f"like RecBole's default {default!r}")
        if key in NAME_KEYS and value is not None:
            names = value if isinstance(value, list) else [value]
            bad = [n for n in names if not _plain(n)]
            if bad:
                raise CheckpointError(f"checkpoint {path!r}: {key}={value!r}: {bad[0]!r} is not a plain name "
                                      "(it is joined into a file path)")
        values[key] = value
    if isinstance(values.get("train_neg_sample_args"), dict) \
            and values["train_neg_sample_args"].get("distribution") == "none":
        values["train_neg_sample_args"] = None  # RecBole stores "no negatives" as a dict it refuses as input
    if ignored:
        getLogger().warning(f"checkpoint {path!r}: config keys no RecBole model or plugin key uses were not "
                            f"applied: {', '.join(sorted(ignored))}")
    config = _values_only_config(model, dataset, {**values, **where})
    reads = BUILD_READS.get(model)
    if reads is not None and reads[0](config):
        raise CheckpointError(f"checkpoint {path!r}: model {model} would read a file while it is built "
                              f"({reads[1]}); rebuild it from your own Config")
    for key in ("save_dataset", "save_dataloaders"):  # RecBole unpickles saved data it finds
        config[key] = False
    return config


def state_bytes(state_dict):
    return sum(t.numel() * t.element_size() for t in state_dict.values() if isinstance(t, torch.Tensor))


def check_model_size(config, model_class, dataset, state_dict, plan, path, max_model_bytes=None):
    """Size the model the config describes on the ``meta`` device (nothing allocated) before building it:
    the model RecBole builds must hold at most ``max_model_bytes`` (default: ``max(1 GiB, 4 × the
    checkpoint's tensors)``), and, swapped, the same tensors of the same shapes as the checkpoint.
    A model that cannot be built on ``meta`` is held to a ceiling on its integer settings instead."""
    from recbole_lightemb.swap import held_bytes, swap_embeddings

    limit = max_model_bytes or max(MIN_MODEL_BYTES, 4 * state_bytes(state_dict))
    try:
        with torch.device("meta"):
            meta = model_class(config, dataset)
    except Exception:  # noqa: BLE001  (models that read tensor values while built: DIN, LDiffRec)
        _check_int_ceiling(config.final_config_dict, path)
        return
    held = held_bytes([meta])
    if held > limit:
        raise CheckpointError(f"checkpoint {path!r}: its config builds a model of {held / 2**20:.0f} MiB, over the "
                              f"{limit / 2**20:.0f} MiB allowed (pass max_model_bytes to allow more)")
    if plan is not None:
        try:
            with torch.device("meta"):
                swap_embeddings(meta, dataset, config, plan=plan)
        except (RuntimeError, NotImplementedError):  # a table that reads values while built (shared token tables)
            _check_int_ceiling(plan.meta, path, ceiling=max(INT_CEILING, 8 * (dataset.user_num + dataset.item_num)),
                               recorded=True)
            return
        if held_bytes([meta]) > limit:
            raise CheckpointError(f"checkpoint {path!r}: its plan builds tables of {held_bytes([meta]) / 2**20:.0f} "
                                  f"MiB, over the {limit / 2**20:.0f} MiB allowed (pass max_model_bytes to allow more)")
    have = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if have != saved:
        diff = sorted(set(have.items()) ^ set(saved.items()))[0]
        raise CheckpointError(f"checkpoint {path!r}: its config and plan build tensors that differ from the ones "
                              f"it holds (first: {diff[0]} {diff[1]}); the file is inconsistent")


INT_CEILING = 1 << 16


def _check_int_ceiling(values, path, ceiling=INT_CEILING, recorded=False):
    """The fallback where sizing on ``meta`` fails: no integer among ``values`` (nested) above ``ceiling``; with
    ``recorded`` (a plan's meta) the byte counts it records of its run (``…bytes``, ``…_memory``: what its tables
    stored or held) are skipped, since no table is built from them."""
    if isinstance(values, dict):
        for key, value in values.items():
            if key != "seed" and not (recorded and str(key).endswith(("bytes", "_memory"))):
                _check_int_ceiling(value, path, ceiling, recorded)
    elif isinstance(values, (list, tuple)):
        for value in values:
            _check_int_ceiling(value, path, ceiling, recorded)
    elif isinstance(values, int) and not isinstance(values, bool) and values > ceiling:
        raise CheckpointError(f"checkpoint {path!r}: a size of {values} in its config or plan, above the {ceiling} "
                              "allowed where the model cannot be sized before it is built")


def restore_other_parameter(model, other, path):
    """RecBole's ``load_other_parameter`` (``setattr`` of whatever the file holds) limited to data: only
    names the model declares in ``other_parameter_name``, only tensors (or None), and a tensor only where
    the freshly built model holds None or a tensor of the same shape."""
    if other is None:
        return
    if not isinstance(other, dict):
        raise CheckpointError(f"checkpoint {path!r}: other_parameter is a {type(other).__name__}, expected a dict")
    declared = set(getattr(model, "other_parameter_name", None) or ())
    for key, value in other.items():
        if key not in declared:
            raise CheckpointError(f"checkpoint {path!r}: other_parameter {key!r} is not one of the model's "
                                  f"({', '.join(sorted(declared)) or 'none'})")
        current = getattr(model, key, None)
        if value is None:
            setattr(model, key, None)
            continue
        if not isinstance(value, torch.Tensor) or not (current is None or isinstance(current, torch.Tensor)):
            raise CheckpointError(f"checkpoint {path!r}: other_parameter {key!r} holds a "
                                  f"{type(value).__name__}; only tensors are restored")
        if isinstance(current, torch.Tensor) and current.shape != value.shape:
            raise CheckpointError(f"checkpoint {path!r}: other_parameter {key!r} has shape {tuple(value.shape)}, "
                                  f"the model's {tuple(current.shape)}")
        device = current.device if isinstance(current, torch.Tensor) else next(model.parameters()).device
        setattr(model, key, value.detach().to(device))


__all__ = ["LOCATION_KEYS", "BUILD_READS", "config_from_checkpoint", "check_model_size", "restore_other_parameter",
           "check_names", "state_bytes"]
