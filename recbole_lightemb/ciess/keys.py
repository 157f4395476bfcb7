"""The config decisions the CIESS method and its trainer must read the same way: budget, saved plan, mode.

``ciess_mode: paper`` (the default) is the authors' procedure: ``properties/ciess.yaml`` holds its values.
``ciess_mode: fast`` is the plugin's own short variant (issue 14): it sets ``FAST`` for every key the user
left unset; a key the user sets wins in either mode, and the plan records what differs from the paper.
"""

from recbole_lightemb.budget import check_fraction
from recbole_lightemb.config import plugin_defaults
from recbole_lightemb.plan import reused_plan

MODES = ("paper", "fast")
FAST = {
    "ciess_pretrain_epochs": 3, "ciess_episodes": 3, "ciess_steps": 5, "ciess_step_batches": 10,
    "ciess_step_lr": None, "ciess_warm_start": True, "ciess_noise_per_entity": True, "ciess_fill_budget": True,
    "ciess_rank_by_frequency": True, "ciess_lambda": 1.0, "ciess_updates_per_step": 5, "ciess_grad_clip": None,
    "ciess_policy_noise": 0.2, "ciess_noise_clip": 0.5, "ciess_buffer_size": 1_000_000,
    "ciess_log_frequency": True, "ciess_start_at_peak": True, "ciess_retrain_top": 1,
}
"""The fast mode's values; its ``ciess_step_batch_size`` is RecBole's ``train_batch_size``."""
NOT_PROCEDURE = ("ciess_budget", "ciess_plan", "ciess_mode", "ciess_search_scale", "ciess_packed_training",
                 "ciess_resume_search")
"""Keys that do not change the search procedure (packed training is the same arithmetic, stored smaller)."""


def budget_fraction(config):
    """``emb_budget`` or its alias ``ciess_budget`` (``None`` when neither is set); both must agree."""
    common, alias = check_fraction(config, "emb_budget"), check_fraction(config, "ciess_budget")
    if common is not None and alias is not None and common != alias:
        raise ValueError(f"emb_budget={common!r} and ciess_budget={alias!r} disagree; set one of them")
    return common if common is not None else alias


def saved_plan_path(config):
    """A saved plan to reuse (``ciess_plan`` or ``emb_plan``): its presence skips the search."""
    return reused_plan(config, "ciess")


def resolve_mode(config):
    """Check ``ciess_mode``; in fast mode set the fast values of the keys the user left unset. Idempotent."""
    mode = config["ciess_mode"]
    if mode not in MODES:
        raise ValueError(f"ciess_mode={mode!r}: allowed {', '.join(MODES)}")
    if mode == "fast":
        given = getattr(config, "external_config_dict", {})
        for key, value in {**FAST, "ciess_step_batch_size": config["train_batch_size"]}.items():
            if key not in given:
                config[key] = value
    return mode


def departures(config):
    """``{key: value}`` of every procedure key whose value is not the paper's (``properties/ciess.yaml``)."""
    defaults = plugin_defaults()
    return {key: config[key] for key in sorted(defaults)
            if key.startswith("ciess_") and key not in NOT_PROCEDURE and config[key] != defaults[key]}
