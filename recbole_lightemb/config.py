"""RecBole's ``Config`` with the plugin's ``properties/*.yaml`` layered under the user's settings."""

import difflib
import functools
import math
import os
import sys
from logging import getLogger

import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_lightemb.protocol import check_protocol

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties")
"""The YAML defaults, RecBole-style, at the top of the (editable) checkout."""

PLUGIN_PREFIXES = ("emb_", "baco_", "ciess_", "scall_", "stream_", "freq_", "quant_")
"""Keys starting with these belong to the plugin: one it does not know is a typo, not a RecBole key."""

TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1"), ("false", "no", "0")


def model_width(config):
    """The id tables' width as the model's config gives it, before the tables are found: ``embedding_size``,
    or ``hidden_size`` for models that have no ``embedding_size`` (SASRec, BERT4Rec, …); None if neither."""
    for key in ("embedding_size", "hidden_size"):
        value = config[key] if key in config else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


@functools.lru_cache(maxsize=1)
def plugin_defaults():
    """Every plugin key with its default, from all ``properties/*.yaml``."""
    keys = {}
    for name in sorted(os.listdir(PROPERTIES_DIR)):
        if name.endswith(".yaml"):
            with open(os.path.join(PROPERTIES_DIR, name)) as f:
                keys.update(yaml.safe_load(f) or {})
    return keys


@functools.lru_cache(maxsize=1)
def recbole_model_names():
    """RecBole's model class names (the tree-based ones by name: they need optional packages to import)."""
    import importlib

    from recbole.model.abstract_recommender import AbstractRecommender

    names = {"lightgbm", "xgboost"}
    for package in ("general", "context_aware", "sequential", "knowledge_aware"):
        module = importlib.import_module(f"recbole.model.{package}_recommender")
        names |= {name for name, obj in vars(module).items()
                  if isinstance(obj, type) and issubclass(obj, AbstractRecommender)}
    return sorted(names)


def _is_plugin_key(name):
    return name in plugin_defaults() or name.startswith(PLUGIN_PREFIXES)


class Config(RecBoleConfig):
    """Adds ``properties/overall.yaml`` and ``properties/<emb>.yaml`` as defaults.

    They sit below everything the user gives (file, dict, command line), as RecBole's own
    model and dataset YAMLs do, so ``--emb_budget=0.1`` overrides the method's default.
    """

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for name in ("overall.yaml", "stream.yaml"):
            self._update_internal_config_dict(os.path.join(PROPERTIES_DIR, name))
        emb = self.external_config_dict.get("emb", self.internal_config_dict.get("emb"))
        method_file = os.path.join(PROPERTIES_DIR, f"{emb}.yaml")
        if isinstance(emb, str) and os.path.isfile(method_file):
            self._update_internal_config_dict(method_file)

    def _get_model_and_dataset(self, model, dataset):
        name = model if model is not None else self.external_config_dict.get("model")
        if isinstance(name, str) and name not in recbole_model_names():
            close = difflib.get_close_matches(name, recbole_model_names(), n=3, cutoff=0.5)
            raise ValueError(f"model={name!r}: not a RecBole model" + (f"; closest: {', '.join(close)}" if close else ""))
        return super()._get_model_and_dataset(model, dataset)

    def _load_cmd_line(self):
        """RecBole reads ``--key=value`` only; a plugin key written ``--key value`` would be silently dropped.
        RecBole also drops a value that holds ``=`` (``--result_file=runs/a[b=1].json``): it is read here, as
        everything after the first ``=``."""
        argv = sys.argv[1:]
        for i, arg in enumerate(argv):
            name = arg[2:] if arg.startswith("--") and "=" not in arg else None
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
            if name and value is not None and _is_plugin_key(name):
                raise ValueError(f"--{name} {value}: RecBole reads command-line keys only as --key=value, so this "
                                 f"would be ignored; write --{name}={value}")
        with_equals = [arg for arg in argv if arg.startswith("--") and arg.count("=") > 1]
        if "ipykernel_launcher" in sys.argv[0] or not with_equals:
            return super()._load_cmd_line()
        saved = list(sys.argv)
        sys.argv[:] = [a for a in saved if a not in with_equals]
        try:
            cmd = super()._load_cmd_line()
        finally:
            sys.argv[:] = saved
        for arg in with_equals:
            name, text = arg[2:].split("=", 1)
            value = self._convert_config_dict({name: text})[name]  # as RecBole reads values: a path stays a string
            if cmd.get(name, value) != value:
                raise ValueError(f"--{name}: given twice with different values ({cmd[name]!r} and {value!r})")
            cmd[name] = value
        return cmd

    def _set_default_parameters(self):
        self._no_negatives_for_ce_loss()
        super()._set_default_parameters()
        self._check_plugin_keys()
        check_protocol(self.final_config_dict)
        self._check_dataset_present()

    def _no_negatives_for_ce_loss(self):
        """Sequential models with the CE loss (SASRec, GRU4Rec, …) rank against all items: RecBole refuses
        its own default of sampled negatives for them. Unless the user set negatives, drop them, and say so."""
        config = self.final_config_dict
        if (getattr(self.model_class, "type", None) == ModelType.SEQUENTIAL and config.get("loss_type") == "CE"
                and "train_neg_sample_args" not in self.external_config_dict
                and config.get("train_neg_sample_args") is not None):
            config["train_neg_sample_args"] = None
            getLogger().info(f"model={self.model}: loss_type CE ranks against all items, so "
                             "train_neg_sample_args is set to None (RecBole requires it)")

    def _check_plugin_keys(self):
        """Unknown plugin-prefixed keys are typos (named with the closest known key), a paper method's mode
        outside its choices is refused whatever ``emb`` is (a ``--compare`` or tuning grid hands every arm the
        same keys, and each arm reads its own method's); boolean keys read
        ``yes``/``no``/``1``/``0`` as the command line's ``str2bool`` does, anything else is an error."""
        known = plugin_defaults()
        for key, value in self.external_config_dict.items():
            if key.startswith(PLUGIN_PREFIXES) and key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                raise ValueError(f"{key}={value!r}: not a recbole-lightemb key"
                                 + (f"; did you mean {close[0]}?" if close else ""))
        self._check_modes()
        for key, default in known.items():
            value = self.final_config_dict.get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{key}={value!r}: expected a finite number")
            if isinstance(default, bool) and type(value) is int and value in (0, 1):
                self.final_config_dict[key] = bool(value)
            elif isinstance(default, bool) and isinstance(value, str):
                if value.lower() not in TRUE_WORDS + FALSE_WORDS:
                    raise ValueError(f"{key}={value!r}: expected True or False (or yes/no, 1/0)")
                self.final_config_dict[key] = value.lower() in TRUE_WORDS

    def _check_modes(self):
        from recbole_lightemb.baco.coclustering import WEIGHT_MODES  # the methods import this module
        from recbole_lightemb.ciess.keys import MODES as CIESS_MODES
        from recbole_lightemb.scall.settings import MODES as SCALL_MODES

        for key, allowed in (("baco_mode", WEIGHT_MODES), ("ciess_mode", CIESS_MODES), ("scall_mode", SCALL_MODES)):
            if key in self.external_config_dict and self.external_config_dict[key] not in allowed:
                raise ValueError(f"{key}={self.external_config_dict[key]!r}: allowed {', '.join(allowed)}")

    def _check_dataset_present(self):
        """Fail before RecBole would try to download a dataset: this plugin never downloads."""
        path = self.final_config_dict["data_path"]
        name = self.dataset
        benchmark = self.final_config_dict.get("benchmark_filename") or []
        wanted = [f"{name}.{part}.inter" for part in benchmark] or [f"{name}.inter"]
        missing = [f for f in wanted if not os.path.isfile(os.path.join(path, f))]
        if missing:
            raise FileNotFoundError(
                f"dataset={name!r}: {', '.join(missing)} not found in data_path={path!r}. "
                "recbole-lightemb never downloads data: put RecBole atomic files there, "
                "or set data_path (ml-100k ships with RecBole and needs nothing)."
            )

    def _init_device(self):
        """RecBole starts multi-process runs with NCCL only; without a GPU use gloo on the CPU."""
        config = self.final_config_dict
        if "local_rank" not in config or torch.cuda.is_available():
            super()._init_device()
            config["use_gpu"] = config["device"].type == "cuda"  # the config dump says what the run uses
            return
        config["gpu_id"] = ""
        torch.distributed.init_process_group(
            backend="gloo", rank=config["local_rank"] + config["offset"], world_size=config["world_size"],
            init_method=f"tcp://{config['ip']}:{config['port']}",
        )
        config["device"] = torch.device("cpu")
        config["single_spec"] = False
        if config["local_rank"] != 0:  # as RecBole does: one rank talks
            config.update(state="error", show_progress=False, verbose=False)
