"""RecBole's ``Config`` with the plugin's ``properties/*.yaml`` layered under the user's settings."""

import os

import torch
from recbole.config import Config as RecBoleConfig

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties")
"""The YAML defaults, RecBole-style, at the top of the (editable) checkout."""


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

    def _set_default_parameters(self):
        super()._set_default_parameters()
        self._check_dataset_present()

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
            return super()._init_device()
        config["gpu_id"] = ""
        torch.distributed.init_process_group(
            backend="gloo", rank=config["local_rank"] + config["offset"], world_size=config["world_size"],
            init_method=f"tcp://{config['ip']}:{config['port']}",
        )
        config["device"] = torch.device("cpu")
        config["single_spec"] = False
        if config["local_rank"] != 0:  # as RecBole does: one rank talks
            config.update(state="error", show_progress=False, verbose=False)
