"""``emb: ciess``: per-entity widths chosen by an actor-critic search (CIESS, SIGIR'23).

The tables start full-width (:class:`VariableWidthEmbedding`); :class:`CIESSTrainer` runs the
search inside ``fit``, applies the widths it found and trains the model again with them.
A saved plan (``ciess_plan`` or ``emb_plan``) skips the search; ``ciess_resume_search`` continues a
stopped one from its last finished episode.

Budget: ``emb_budget`` (the key every method shares), or ``ciess_budget`` as an alias: a
fraction of the full tables' bytes, width indices counted.

``ciess_mode: paper`` (the default) runs the authors' procedure; ``ciess_mode: fast`` the plugin's
own short variant (3 × 5 warm-started steps of 10 batches, per-entity noise, the plan filled and
re-ranked by frequency). Each difference is a key of ``properties/ciess.yaml``; the plan records
``mode``, ``search_scale`` and the keys that depart from the paper. ``ciess_projection`` (beyond
the paper, issue 14) trains the final widths as mixed-dimension groups with a learned ``w × d``
projection each, so a narrow entity meets every coordinate of a wide one, projections counted in
the budget.
"""

import numpy as np

from recbole_lightemb.ciess.keys import budget_fraction, resolve_mode, saved_plan_path
from recbole_lightemb.ciess.search_state import load_search_state
from recbole_lightemb.ciess.trainer import CIESSTrainer
from recbole_lightemb.ciess.widths import table_widths
from recbole_lightemb.config import model_width
from recbole_lightemb.methods.precision import (apply_bits, planned_precision, precision_meta, precision_of,
                                                training_counts)
from recbole_lightemb.modules.precision import row_bits
from recbole_lightemb.modules import VariableWidthEmbedding
from recbole_lightemb.modules.mixed import MixedDimEmbedding
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method

_INTS = {  # key: (smallest allowed value, None allowed)
    "ciess_pretrain_epochs": (0, True), "ciess_pretrain_batches": (1, False), "ciess_pretrain_patience": (1, False),
    "ciess_episodes": (1, False), "ciess_steps": (1, False), "ciess_step_batches": (1, True),
    "ciess_step_batch_size": (1, True), "ciess_step_lr_every": (1, True), "ciess_s_min": (1, False),
    "ciess_walk_steps": (0, False), "ciess_walk_radius": (1, False), "ciess_hidden": (1, False),
    "ciess_batch_size": (1, False), "ciess_buffer_size": (1, True), "ciess_updates_per_step": (0, False),
    "ciess_policy_delay": (1, False), "ciess_retrain_top": (1, False),
}
_FLOATS = {  # key: (low, high, low allowed, high allowed, None allowed)
    "ciess_search_scale": (0.0, np.inf, False, False, False), "ciess_lambda": (0.0, np.inf, True, False, False),
    "ciess_explore_sigma": (0.0, np.inf, True, False, False), "ciess_actor_lr": (0.0, np.inf, False, False, False),
    "ciess_critic_lr": (0.0, np.inf, False, False, False), "ciess_tau": (0.0, 1.0, False, True, False),
    "ciess_gamma": (0.0, 1.0, True, False, False), "ciess_policy_noise": (0.0, np.inf, True, False, True),
    "ciess_noise_clip": (0.0, np.inf, True, False, True), "ciess_grad_clip": (0.0, np.inf, False, False, True),
    "ciess_step_lr": (0.0, np.inf, False, False, True), "ciess_step_lr_decay": (0.0, 1.0, False, True, False),
    "ciess_step_lr_min": (0.0, np.inf, False, False, True),
}
_BOOLS = ("ciess_warm_start", "ciess_fill_budget", "ciess_rank_by_frequency", "ciess_packed_training",
          "ciess_projection", "ciess_noise_per_entity", "ciess_log_frequency", "ciess_start_at_peak")


@register_method("ciess")
class CIESS(EmbeddingMethod):
    """Widths ``s_e`` in ``ciess_s_min..D`` per user/item (``D`` = widest swapped table)."""

    trainer = CIESSTrainer
    precision = True  # the final groups of ``ciess_projection`` (checked in ``check_config``)

    def check_config(self):
        config = self.config
        resolve_mode(config)
        self._check_precision()
        if budget_fraction(config) is None and not saved_plan_path(config):
            raise ValueError("emb=ciess needs emb_budget (or its alias ciess_budget): a fraction of the full "
                             "embedding memory in (0, 1], e.g. --emb_budget=0.1")
        for key, (low, none_ok) in _INTS.items():
            value = config[key]
            if value is None and none_ok:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key}={value!r}: expected an integer >= {low}" + (" or ~" if none_ok else ""))
        for key, (low, high, low_ok, high_ok, none_ok) in _FLOATS.items():
            value = config[key]
            if value is None and none_ok:
                continue
            ok = (not isinstance(value, bool) and isinstance(value, (int, float))
                  and (low <= value if low_ok else low < value) and (value <= high if high_ok else value < high))
            if not ok:
                allowed = f"{'[' if low_ok else '('}{low}, {high}{']' if high_ok else ')'}"
                raise ValueError(f"{key}={value!r}: expected a number in {allowed}" + (" or ~" if none_ok else ""))
        dim = model_width(config)
        if isinstance(dim, int) and not isinstance(dim, bool) and config["ciess_s_min"] > dim:
            raise ValueError(f"ciess_s_min={config['ciess_s_min']!r}: must be at most embedding_size={dim}")
        for key in _BOOLS:
            if not isinstance(config[key], bool):
                raise ValueError(f"{key}={config[key]!r}: expected True or False")
        if config["ciess_projection"] and not config["ciess_packed_training"]:
            raise ValueError("ciess_packed_training=False: ciess_projection=True trains grouped (packed) tables; "
                             "allowed: ciess_packed_training=True, or ciess_projection=False")
        if config["ciess_projection"] and not config["single_spec"]:
            raise ValueError("ciess_projection=True: the grouped tables replace the masked ones after the search, "
                             "which a multi-process (DDP) run cannot do; allowed: False with more than one process")
        ks = config["ciess_quality_ks"]
        if not isinstance(ks, list) or not ks or not all(isinstance(k, int) and k >= 1 for k in ks):
            raise ValueError(f"ciess_quality_ks={ks!r}: expected a non-empty list of positive integers, e.g. [5, 10, 20]")
        from recbole.trainer import Trainer
        from recbole.utils import get_trainer

        own = get_trainer(config["MODEL_TYPE"], config["model"])
        if own is not Trainer:  # NCL's clustering, a KG model's graph loss, … would be skipped
            raise ValueError(f"emb=ciess trains through its own trainer, a RecBole Trainer; model={config['model']} "
                             f"needs RecBole's {own.__name__}; allowed: models that RecBole trains with Trainer")
        resumed = config["ciess_resume_search"]
        if resumed is not None:
            if saved_plan_path(config):
                raise ValueError(f"ciess_resume_search={resumed!r}: a reused plan ({saved_plan_path(config)!r}) skips "
                                 "the search; set one of ciess_resume_search and ciess_plan/emb_plan")
            load_search_state(resumed, config)  # the file and its settings, before any data is loaded
        mode = config["eval_args"]["mode"]
        valid_mode = mode.get("valid") if isinstance(mode, dict) else mode
        if not saved_plan_path(config) and valid_mode != "full":
            raise ValueError(f"eval_args.mode={mode!r}: emb=ciess ranks all items to measure per-user quality; "
                             "allowed: 'full' for validation")

    def _check_precision(self):
        """``emb_bits`` below 32 (or per-row bits by frequency): the final mixed-dimension groups
        (``ciess_projection``) store their rows in that many bits and the search's byte budget counts them so;
        the groups train with float32 masters or (``emb_master_free``) as stored; the search's masked tables are
        float32 either way."""
        bits, policy = precision_of(self.config)
        if bits == 32 and policy == "fixed":
            return
        if not self.config["ciess_projection"]:
            raise ValueError(f"emb_bits={bits!r}: emb=ciess stores low-bit rows in its grouped tables only; allowed: "
                             "ciess_projection=True with it, or emb_bits=32")

    def plan(self, dataset, tables):
        """Full widths to start with; the trainer's search replaces them in place."""
        ref_dim = max(spec.embedding_dim for spec in tables)
        arrays = {f"{spec.role}_widths": np.full(spec.num_embeddings, ref_dim, dtype=np.int16) for spec in tables}
        bits, policy = precision_of(self.config)
        if policy != "fixed":  # each entity's bits by its training interactions, for the search's costs and the groups
            counts = training_counts(dataset)
            arrays.update({f"{spec.role}_bits": row_bits(counts[spec.role][:spec.num_embeddings], bits, policy)
                           .astype(np.uint8) for spec in tables})
        return Plan(self.name, arrays, meta={"ref_dim": ref_dim, "budget": budget_fraction(self.config),
                                             "searched": False, "projection": self.config["ciess_projection"],
                                             "mode": self.config["ciess_mode"],
                                             "search_scale": float(self.config["ciess_search_scale"]),
                                             **precision_meta(bits, policy)})

    def build(self, spec, table, plan):
        plan.meta.setdefault("projection", False)  # plans saved before the option had none
        self.check_plan_setting(plan, "ciess_projection", "projection")
        key = f"{spec.role}_widths"
        if key not in plan.arrays or len(plan[key]) != spec.num_embeddings:
            have = len(plan[key]) if key in plan.arrays else None
            raise ValueError(f"ciess plan has {have} {spec.role} widths; table {spec.name} has "
                             f"{spec.num_embeddings} rows")
        widths = table_widths(plan[key], spec.embedding_dim, plan.meta["ref_dim"])
        bits, policy = planned_precision(self, plan)
        if plan.meta.get("projection") and plan.meta.get("searched"):  # final groups: nothing left to search
            module = MixedDimEmbedding(spec.num_embeddings, spec.embedding_dim, widths, padding_idx=spec.padding_idx,
                                       init_from=table.weight)
            module.ciess_plan = plan
            each = bits if policy == "fixed" else plan[f"{spec.role}_bits"]
            return apply_bits(self.config, spec, module, module.group_bits(widths, each))
        module = VariableWidthEmbedding(spec.num_embeddings, spec.embedding_dim, widths,
                                        padding_idx=spec.padding_idx, init_from=table.weight)
        module.ciess_plan = plan  # the trainer writes the searched widths back into this plan
        return module
