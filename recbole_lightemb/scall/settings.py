"""SCALL's keys: ``scall_mode`` picks the published procedure or the plugin's own, each key checked.

``scall_mode: paper`` (the default) is the authors' code element by element (``Engine.py``,
``Action.py``, ``State.py``, ``Buffer.py``, ``ActorCritic.py``, ``dataset/ImplicitCF.py``);
``scall_mode: fast`` is the plugin's own earlier variant, kept as it was. Each element is a key of
its own whose YAML default ``~`` means "as the mode says"; a value given overrides the mode.
"""

import numbers

import numpy as np

from recbole_lightemb.config import model_width, plugin_defaults
from recbole_lightemb.scall.widths import ALPHA_MAPS, AUTHORS_ALPHA_RANGES, DISTRIBUTIONS, RESCALES, SHAPES

MODES = ("paper", "fast")

MODE_VALUES = {  # key: (paper, fast); None: no cap / RecBole's learning_rate / the family's own range
    "scall_reward": ("linear", "tanh"),
    "scall_reward_baseline": ("first_block", "previous"),
    "scall_fitness": ("recall_ndcg", "valid_metric"),
    "scall_alpha_map": ("linear", "geometric"),
    "scall_alpha_range": (None, [0.1, 30]),
    "scall_frequency": ("segment", "history"),
    "scall_shape": ("sampled", "expected"),
    "scall_rescale": ("loop", "limit"),
    "scall_search_init": ("fresh", "warm"),
    "scall_search_segment": ("previous", "current"),
    "scall_search_lr": (0.03, None),
    "scall_search_epochs": (None, 3),
    "scall_search_correct": (False, True),
    "scall_min_search_steps": (11, 10),
    "scall_max_search_steps": (None, 30),
    "scall_settle": ("consecutive", "span"),
    "scall_state": ("authors", "plugin"),
    "scall_batch_size": ("authors", 64),
    "scall_actor_lr": (2e-4, 3e-4),
    "scall_critic_lr": (3e-4, 3e-4),
    "scall_weight_decay": (1e-4, 0.0),
    "scall_actor_clip": (1.0, 0.0),
    "scall_nets": ("authors", "plugin"),
}
"""Every element where the plugin's earlier variant departs from the authors' code."""

CHOICES = {
    "scall_reward": ("linear", "tanh"),
    "scall_reward_baseline": ("first_block", "previous", "uniform"),
    "scall_fitness": ("recall_ndcg", "valid_metric"),
    "scall_alpha_map": ALPHA_MAPS,
    "scall_frequency": ("segment", "history"),
    "scall_shape": SHAPES,
    "scall_rescale": RESCALES,
    "scall_search_init": ("fresh", "warm"),
    "scall_search_segment": ("previous", "current"),
    "scall_settle": ("consecutive", "span"),
    "scall_state": ("authors", "plugin"),
    "scall_nets": ("authors", "plugin"),
    "scall_choice": ("policy", "best"),
    "scall_distribution": DISTRIBUTIONS,
}
"""The allowed values of each key that names a choice.

``scall_reward_baseline``: ``first_block`` (the authors) is the search segment's fitness after the first
``scall_search_batches`` of its own segment training (warm start, ``scall_search_lr``); ``previous`` its
converged validation fitness; ``uniform`` uniform widths of the same budget tried the same way on the
search segment. ``scall_choice``: ``policy`` (the authors) is the policy's mean action after the search,
``best`` the try that scored best (uniform's included with the ``uniform`` baseline)."""

SEARCH_KEYS = ("scall_search_batches", "scall_search_epochs", "scall_search_lr", "scall_search_init",
               "scall_search_segment", "scall_search_correct", "scall_min_search_steps", "scall_max_search_steps",
               "scall_settle", "scall_settle_window", "scall_settle_tol", "scall_updates_per_step", "scall_reward",
               "scall_reward_scale", "scall_reward_range", "scall_reward_baseline", "scall_fitness", "scall_choice",
               "scall_state",
               "scall_hidden", "scall_entropy", "scall_tau", "scall_gamma", "scall_actor_lr", "scall_critic_lr",
               "scall_weight_decay", "scall_actor_clip", "scall_batch_size", "scall_nets", "scall_pool_groups")
"""The keys that only steer the search, which ``scall_action`` skips: set beside it, they would be ignored."""


def scall_settings(config):
    """Every ``scall_*`` value the planner reads, with the mode's value where the key is left at ``~``;
    ``mode`` holds the mode. Unchecked: call :func:`check_scall_config` first."""
    mode = config["scall_mode"]
    column = MODES.index(mode) if mode in MODES else 0
    settings = {key: config[key] for key in plugin_defaults() if key.startswith("scall_")}
    for key, values in MODE_VALUES.items():
        if settings[key] is None:
            settings[key] = values[column]
    if settings["scall_alpha_range"] is None:
        settings["scall_alpha_range"] = list(AUTHORS_ALPHA_RANGES.get(settings["scall_distribution"], (0.1, 30)))
    settings["mode"] = mode
    return settings


def _number(settings, key, low, high=None, integer=False, open_low=False, optional=False):
    value = settings[key]
    if optional and value is None:
        return None
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = (value > low if open_low else value >= low) and (high is None or value <= high)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"{'>' if open_low else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ValueError(f"{key}={value!r}: expected {kind} {bound}" + (" or ~" if optional else ""))
    return value


def _pair(settings, key, example, positive=True):
    value = settings[key]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(a, numbers.Real) and not isinstance(a, bool) and (a > 0 or not positive)
                       for a in value) or value[0] >= value[1]):
        raise ValueError(f"{key}={value!r}: expected [low, high] with {'0 < ' if positive else ''}low < high, "
                         f"e.g. {example}")


def check_scall_config(config):
    """Every ``scall_*`` key, checked before any data is loaded; returns the resolved settings."""
    if config["scall_mode"] not in MODES:
        raise ValueError(f"scall_mode={config['scall_mode']!r}: allowed {', '.join(MODES)}")
    settings = scall_settings(config)
    dim = model_width(config)
    if dim is None and config["stream"]:
        raise ValueError(f"emb=scall with stream=True reads the tables' width from embedding_size or hidden_size; "
                         f"model={config['model']} sets neither")
    budgets = {k: config[k] for k in ("scall_mean_width", "scall_budget_mb", "emb_budget") if config[k] is not None}
    if not budgets:
        raise ValueError("emb=scall needs a budget: scall_mean_width (floats per seen entity, e.g. 8), "
                         "scall_budget_mb (MB of float32) or emb_budget (fraction of d per seen entity)")
    if len(budgets) > 1:
        raise ValueError(f"emb=scall: give only one of scall_mean_width, scall_budget_mb, emb_budget; got {budgets}")
    if config["scall_mean_width"] is not None:
        _number(config, "scall_mean_width", 0, dim, open_low=True)
    elif config["scall_budget_mb"] is not None:
        _number(config, "scall_budget_mb", 0, open_low=True)
    else:
        _number(config, "emb_budget", 0, 1, open_low=True)
    for key, allowed in CHOICES.items():
        if settings[key] not in allowed:
            raise ValueError(f"{key}={settings[key]!r}: allowed {', '.join(allowed)}")
    _pair(settings, "scall_alpha_range", "[0.1, 30]")
    _pair(settings, "scall_reward_range", "[0.9, 1.1]")
    s_min = _number(settings, "scall_min_width", 1, dim, integer=True)
    _number(settings, "scall_max_width", s_min, dim, integer=True, optional=True)
    for key in ("scall_search_batches", "scall_min_search_steps", "scall_settle_window", "scall_updates_per_step",
                "scall_hidden", "scall_pool_groups"):
        _number(settings, key, 1, integer=True)
    if _number(settings, "scall_max_search_steps", 1, integer=True, optional=True) is not None \
            and settings["scall_max_search_steps"] < settings["scall_min_search_steps"]:
        raise ValueError(f"scall_max_search_steps={settings['scall_max_search_steps']} must be >= "
                         f"scall_min_search_steps={settings['scall_min_search_steps']}")
    if settings["scall_batch_size"] != "authors":
        _number(settings, "scall_batch_size", 1, integer=True)
    for key in ("scall_search_epochs", "scall_search_lr"):
        _number(settings, key, 0, open_low=True, optional=True)
    for key in ("scall_actor_lr", "scall_critic_lr", "scall_reward_scale"):
        _number(settings, key, 0, open_low=True)
    for key in ("scall_settle_tol", "scall_entropy", "scall_weight_decay", "scall_actor_clip"):
        _number(settings, key, 0)
    _number(settings, "scall_tau", 0, 1, open_low=True)
    _number(settings, "scall_gamma", 0, 1)
    if not isinstance(settings["scall_search_correct"], bool):
        raise ValueError(f"scall_search_correct={settings['scall_search_correct']!r}: expected True or False")
    metrics = [m.lower() for m in config["metrics"]] if "metrics" in config and config["metrics"] else None
    if settings["scall_fitness"] == "recall_ndcg" and metrics is not None and not {"recall", "ndcg"} <= set(metrics):
        raise ValueError(f"scall_fitness='recall_ndcg' is the mean of Recall@20 and NDCG@20: "
                         f"metrics={config['metrics']!r} must hold Recall and NDCG (or set scall_fitness: valid_metric)")
    if settings["scall_search_segment"] == "previous" and settings["scall_search_init"] != "fresh":
        raise ValueError("scall_search_segment='previous' tries widths on the previous segment, which has no warm "
                         f"start of its own: it needs scall_search_init: fresh (got {settings['scall_search_init']!r})")
    _check_action(config)
    return settings


def _check_action(config):
    action = config["scall_action"]
    if action is None:
        return
    if (not isinstance(action, (list, tuple)) or len(action) != 3
            or not all(isinstance(a, numbers.Real) and not isinstance(a, bool) and 0 <= a <= 1 for a in action)):
        raise ValueError(f"scall_action={action!r}: expected ~ (search) or three action coordinates [ρ, α_U, α_I] "
                         "in [0, 1] (the α ones map onto scall_alpha_range), e.g. [0.5, 0.5, 0.5]")
    if not config["stream"]:
        raise ValueError(f"scall_action={action!r} needs stream: True (without a stream SCALL plans uniform "
                         "widths); unset it")
    defaults = plugin_defaults()
    for key in SEARCH_KEYS:
        if not _same(config[key], defaults[key]):
            raise ValueError(f"{key}={config[key]!r} has no search to act on with scall_action={action!r}: "
                             f"leave it at {defaults[key]!r} or unset scall_action")


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(np.isclose(x, y) for x, y in zip(a, b))
    return a == b
