"""SCALL's planner for a stream: per segment, search the action with SAC, then plan the widths.

Segment 0 gets uniform widths. At a later segment the agent proposes actions; each is turned
into widths, tried by the runner's ``search`` callable (a short warm-started training, returns
validation fitness), rewarded against a baseline (``scall_reward_baseline``: the previous segment's converged
fitness, or uniform widths trained the same way on this segment), and learnt from,
until the policy's ρ settles. The policy's mean action (or, with ``scall_choice: best``, the best try) then
gives the segment's widths. With ``scall_action`` set, every later segment takes that one action's widths
and nothing is searched: the width shape without the agent.
"""

import time
from logging import getLogger

import numpy as np
from recbole.utils import set_color

from recbole_lightemb.config import model_width, plugin_defaults
from recbole_lightemb.modules import LightEmbedding
from recbole_lightemb.scall.agent import SACAgent
from recbole_lightemb.scall.state import build_state, state_size
from recbole_lightemb.scall.widths import DISTRIBUTIONS, alpha_from_action, plan_widths
from recbole_lightemb.stream.planners import StreamPlanner, widths_plan

MB_FLOATS = 2 ** 20 // 4
"""float32 values in one MB (2^20 bytes)."""

CHOICES = ("policy", "best")
"""A segment's widths after the search: the policy's mean action (the paper), or the try that scored best in the
search (with ``scall_reward_baseline: uniform``, uniform widths are one of the tries: a segment keeps them unless
a searched shape beat them)."""

REWARD_BASELINES = ("previous", "uniform")
"""What a search step's fitness is measured against: the previous segment's converged fitness (the paper), or
uniform widths of the same budget after the same short training on this segment (the same validation data, so a
step's reward says whether its widths beat one width for all, not how hard this segment's validation is)."""

SEARCH_KEYS = ("scall_search_batches", "scall_search_epochs", "scall_min_search_steps", "scall_max_search_steps",
               "scall_settle_window", "scall_settle_tol", "scall_updates_per_step", "scall_reward_scale",
               "scall_reward_baseline", "scall_choice", "scall_hidden", "scall_entropy", "scall_tau", "scall_gamma",
               "scall_lr", "scall_batch_size", "scall_pool_groups")
"""The keys that only steer the search, which ``scall_action`` skips: set beside it, they would be ignored."""


def _number(config, key, low, high=None, integer=False, open_low=False):
    value = config[key]
    ok = isinstance(value, (int, np.integer) if integer else (int, float, np.integer, np.floating))
    ok = ok and not isinstance(value, bool)
    if ok:
        ok = (value > low if open_low else value >= low) and (high is None or value <= high)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"{'>' if open_low else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ValueError(f"{key}={value!r}: expected {kind} {bound}")
    return value


def check_scall_config(config):
    """Every ``scall_*`` key, checked before any data is loaded."""
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
    if config["scall_distribution"] not in DISTRIBUTIONS:
        raise ValueError(f"scall_distribution={config['scall_distribution']!r}: allowed {', '.join(DISTRIBUTIONS)}")
    alpha_range = config["scall_alpha_range"]
    if (not isinstance(alpha_range, (list, tuple)) or len(alpha_range) != 2
            or not all(isinstance(a, (int, float)) and a > 0 for a in alpha_range) or alpha_range[0] >= alpha_range[1]):
        raise ValueError(f"scall_alpha_range={alpha_range!r}: expected [low, high] with 0 < low < high, e.g. [0.1, 30]")
    s_min = _number(config, "scall_min_width", 1, dim, integer=True)
    if config["scall_max_width"] is not None:
        _number(config, "scall_max_width", s_min, dim, integer=True)
    for key in ("scall_search_batches", "scall_min_search_steps", "scall_max_search_steps", "scall_settle_window",
                "scall_updates_per_step", "scall_hidden", "scall_pool_groups", "scall_batch_size"):
        _number(config, key, 1, integer=True)
    if config["scall_max_search_steps"] < config["scall_min_search_steps"]:
        raise ValueError(f"scall_max_search_steps={config['scall_max_search_steps']} must be >= "
                         f"scall_min_search_steps={config['scall_min_search_steps']}")
    _number(config, "scall_search_epochs", 0, open_low=True)
    _number(config, "scall_settle_tol", 0)
    _number(config, "scall_entropy", 0)
    _number(config, "scall_tau", 0, 1, open_low=True)
    _number(config, "scall_gamma", 0, 1)
    _number(config, "scall_lr", 0, open_low=True)
    _number(config, "scall_reward_scale", 0, open_low=True)
    if config["scall_choice"] not in CHOICES:
        raise ValueError(f"scall_choice={config['scall_choice']!r}: allowed {', '.join(CHOICES)}")
    if config["scall_reward_baseline"] not in REWARD_BASELINES:
        raise ValueError(f"scall_reward_baseline={config['scall_reward_baseline']!r}: allowed "
                         f"{', '.join(REWARD_BASELINES)}")
    action = config["scall_action"]
    if action is not None:
        if (not isinstance(action, (list, tuple)) or len(action) != 3
                or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and 0 <= a <= 1 for a in action)):
            raise ValueError(f"scall_action={action!r}: expected ~ (search) or three action coordinates [ρ, α_U, α_I] "
                             "in [0, 1] (the α ones map onto scall_alpha_range), e.g. [0.5, 0.5, 0.5]")
        if not config["stream"]:
            raise ValueError(f"scall_action={action!r} needs stream: True (without a stream SCALL plans uniform "
                             "widths); unset it")
        defaults = plugin_defaults()
        for key in SEARCH_KEYS:
            if config[key] != defaults[key]:
                raise ValueError(f"{key}={config[key]!r} has no search to act on with scall_action={action!r}: "
                                 f"leave it at {defaults[key]!r} or unset scall_action")


def pair_budget(config, n_seen, dim=None):
    """Floats for one user table plus one item table, for ``n_seen`` users+items seen so far; ``dim`` is
    the tables' width (default: the model's config, see :func:`~recbole_lightemb.config.model_width`)."""
    if config["scall_mean_width"] is not None:
        return int(np.floor(config["scall_mean_width"] * n_seen))
    if config["scall_budget_mb"] is not None:
        return int(np.floor(config["scall_budget_mb"] * MB_FLOATS))
    return int(np.floor(config["emb_budget"] * (dim or model_width(config)) * n_seen))


def uniform_widths(seen_users, seen_items, budget, s_min, s_max):
    """Segment 0: every seen entity ``budget // seen`` floats (capped at ``s_max``)."""
    n_seen = int(seen_users.sum() + seen_items.sum())
    width = min(budget // max(n_seen, 1), s_max)
    if width < s_min:
        raise ValueError(f"a budget of {budget} floats cannot give {n_seen} seen entities the minimum width "
                         f"scall_min_width={s_min}: raise the budget or lower scall_min_width")
    return seen_users * width, seen_items * width


def model_summary(model):
    """Mean user and item embedding over stored rows, and the widths, read off the tables."""
    summary = {}
    for module in model.modules():
        if isinstance(module, LightEmbedding) and getattr(module, "role", None) not in (None, *summary):
            table = module.full_table().detach().cpu()
            widths = getattr(module, "widths", None)
            stored = widths.cpu() > 0 if widths is not None else table.abs().sum(1) > 0
            mean = table[stored].mean(0) if stored.any() else table.new_zeros(table.shape[1])
            summary[module.role] = (mean.double().numpy(),
                                    widths.cpu().numpy() if widths is not None else stored.numpy() * table.shape[1])
    return summary


class ScallPlanner(StreamPlanner):
    widths_based = True

    def __init__(self, method, config):
        super().__init__(method, config)
        self.logger = getLogger()
        self.agent = None
        self.prev_fitness = None
        self.last_reward = 0.0
        self.summary = None

    @property
    def bounds(self):
        return self.config["scall_min_width"], self.config["scall_max_width"] or model_width(self.config)

    def budget_floats(self, segment, tables_per_side):
        return pair_budget(self.config, segment.users_seen + segment.items_seen) * tables_per_side

    def _widths(self, action, segment, budget):
        split = segment.split
        return plan_widths(action, split.user_freq, split.item_freq, split.seen_users, split.seen_items, budget,
                           self.config["scall_distribution"], self.config["scall_alpha_range"], *self.bounds)

    def _summary(self, role):
        """(mean embedding, widths) of a side; zeros for a model without a table on that side."""
        dim = model_width(self.config)
        return self.summary.get(role, (np.zeros(dim), np.zeros(1, dtype=np.int64)))

    def _state(self, segment, user_widths, item_widths):
        split = segment.split
        user_mean, item_mean = (self._summary(role)[0] for role in ("user", "item"))
        return build_state(split.user_freq, split.item_freq, split.seen_users, split.seen_items, self.last_reward,
                           user_mean, item_mean, user_widths, item_widths, self.config["scall_pool_groups"])

    def _agent(self, state_dim):
        if self.agent is None:
            c = self.config
            self.agent = SACAgent(state_dim, seed=c["seed"], hidden=c["scall_hidden"], entropy=c["scall_entropy"],
                                  tau=c["scall_tau"], gamma=c["scall_gamma"], lr=c["scall_lr"],
                                  batch_size=c["scall_batch_size"])
        return self.agent

    def reward(self, fitness, baseline=None):
        """Fitness relative to ``baseline`` (default: the previous segment's converged fitness), squashed
        into (-1, 1): ``tanh(scale · (fitness / baseline - 1))``."""
        baseline = self.prev_fitness if baseline is None else baseline
        if not baseline:
            return 0.0
        return float(np.tanh(self.config["scall_reward_scale"] * (fitness / baseline - 1.0)))

    def plan(self, segment, specs, search=None):
        tables = max(sum(spec.role == "user" for spec in specs), 1)
        budget = self.budget_floats(segment, tables) // tables
        split = segment.split
        if self.prev_fitness is None or self.summary is None:
            users, items = uniform_widths(split.seen_users, split.seen_items, budget, *self.bounds)
            return widths_plan("scall", users, items, segment=segment.index, budget_floats=budget, search_steps=0,
                               search_s=0.0, action=None)
        if self.config["scall_action"] is not None:  # the shape alone, without the agent: no search
            action = [float(a) for a in self.config["scall_action"]]
            users, items = self._widths(action, segment, budget)
            self.logger.info(set_color("scall", "pink") + f" segment {segment.index}: the fixed action "
                             f"{np.round(action, 3).tolist()}, no search")
            return widths_plan("scall", users, items, segment=segment.index, budget_floats=budget, chosen="fixed",
                               search_steps=0, search_s=0.0, action=action, previous_fitness=self.prev_fitness)
        start = time.perf_counter()
        state = self._state(segment, self._summary("user")[1], self._summary("item")[1])
        agent = self._agent(state_size(self.config["scall_pool_groups"], model_width(self.config)))
        baseline, candidates = None, []  # (fitness, name, action, user widths, item widths) of every try
        if self.config["scall_reward_baseline"] == "uniform":
            users, items = uniform_widths(split.seen_users, split.seen_items, budget, *self.bounds)
            baseline = search(users, items)
            candidates.append((baseline, "uniform", None, users, items))
        rhos, rewards, fitnesses = [], [], []
        window, tol = self.config["scall_settle_window"], self.config["scall_settle_tol"]
        for step in range(self.config["scall_max_search_steps"]):
            action = agent.act(state)
            users, items = self._widths(action, segment, budget)
            fitness = search(users, items)
            fitnesses.append(fitness)
            candidates.append((fitness, f"step {step}", action, users, items))
            self.last_reward = self.reward(fitness, baseline)
            next_state = self._state(segment, users, items)
            agent.replay.add(state, action, self.last_reward, next_state)
            for _ in range(self.config["scall_updates_per_step"]):
                agent.learn()
            state = next_state
            rhos.append(float(agent.act(state, deterministic=True)[0]))
            rewards.append(self.last_reward)
            self.logger.debug(f"scall search step {step}: action={np.round(action, 3)} fitness={fitness:.4f} "
                              f"reward={self.last_reward:.3f}")
            recent = rhos[-window:]
            if len(rhos) >= self.config["scall_min_search_steps"] and len(recent) == window \
                    and max(recent) - min(recent) <= tol:
                break
        if self.config["scall_choice"] == "best":  # the first of the best: uniform wins a tie
            best = max(range(len(candidates)), key=lambda k: (candidates[k][0], -k))
            _, chosen, action, users, items = candidates[best]
        else:
            chosen, action = "policy", agent.act(state, deterministic=True)
            users, items = self._widths(action, segment, budget)
        search_s = time.perf_counter() - start
        alpha_range = self.config["scall_alpha_range"]
        shape = "uniform widths" if action is None else (
            f"ρ={action[0]:.3f} α_U={alpha_from_action(action[1], alpha_range):.2f} "
            f"α_I={alpha_from_action(action[2], alpha_range):.2f}")
        self.logger.info(
            set_color("scall search", "pink") + f" segment {segment.index}: {len(rhos)} steps in {search_s:.1f}s "
            f"({search_s / len(rhos):.2f}s/step), chose {chosen}: {shape}")
        return widths_plan("scall", users, items, segment=segment.index, budget_floats=budget, chosen=chosen,
                           search_steps=len(rhos), search_s=search_s,
                           action=None if action is None else [float(a) for a in action],
                           rho_history=rhos, rewards=rewards, fitness=fitnesses, baseline_fitness=baseline,
                           previous_fitness=self.prev_fitness)

    def observe(self, fitness, model):
        self.prev_fitness = float(fitness)
        self.summary = model_summary(model)
