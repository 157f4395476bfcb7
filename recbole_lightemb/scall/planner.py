"""SCALL's planner for a stream: per segment, search the action with SAC, then plan the widths.

Segment 0 gets uniform widths. Paper mode follows the authors' ``Engine.py``: before segment ``t``
trains, the agent searches on segment ``t-1``, the one just trained. A step draws an action, gives
its widths (unrescaled, ``Action.py``) to a fresh model trained ``scall_search_batches`` batches at
lr 0.03, and rewards its validation fitness over segment ``t-1``'s fitness after the first
``scall_search_batches`` of its own training (``conv_fitness``), rescaled linearly; the agent
learns 3× per step until the policy's ρ settles. The policy's mean action on segment ``t``'s state
then gives ``t``'s widths, clipped and rescaled to the budget, and ``t``'s own first block is
measured for the next search. Fast mode (the plugin's earlier variant) searches on segment ``t``
itself with warm-started tries, against the previous segment's converged fitness, through a tanh.
Each element is a key of its own (:mod:`recbole_lightemb.scall.settings`). With ``scall_action``
set, every later segment takes that one action's widths and nothing is searched.
"""

import time
from logging import getLogger

import numpy as np
import torch
from recbole.utils import set_color

from recbole_lightemb.config import model_width
from recbole_lightemb.modules import LightEmbedding
from recbole_lightemb.modules.precision import FLOAT_BITS, config_bits, config_policy, row_class_bytes, values_within
from recbole_lightemb.scall.agent import SACAgent
from recbole_lightemb.scall.settings import scall_settings
from recbole_lightemb.scall.state import AuthorsState, build_state, state_size
from recbole_lightemb.scall.widths import action_widths, alpha_from_action, ranked_bits
from recbole_lightemb.stream.planners import StreamPlanner, widths_plan

MB_FLOATS = 2 ** 20 // 4
"""float32 values in one MB (2^20 bytes)."""


def pair_budget(config, n_seen, dim=None):
    """Floats for one user table plus one item table, for ``n_seen`` users+items seen so far; ``dim`` is
    the tables' width (default: the model's config, see :func:`~recbole_lightemb.config.model_width`)."""
    if config["scall_mean_width"] is not None:
        return int(np.floor(config["scall_mean_width"] * n_seen))
    if config["scall_budget_mb"] is not None:
        return int(np.floor(config["scall_budget_mb"] * MB_FLOATS))
    return int(np.floor(config["emb_budget"] * (dim or model_width(config)) * n_seen))


def uniform_widths(seen_users, seen_items, budget, s_min, s_max, precision=None):
    """Segment 0: every seen entity ``budget // seen`` values (capped at ``s_max``); with bits by frequency
    (``precision``, :func:`row_precision`) one unit of width costs the seen rows' summed costs instead."""
    n_seen = int(seen_users.sum() + seen_items.sum())
    cost = n_seen if precision is None else sum(float(weights.sum()) for _, weights in precision)
    width = min(int(budget // max(cost, 1)), s_max)
    if width < s_min:
        raise ValueError(f"a budget of {budget} values (floats, or at emb_bits below 32 the low-bit values its bytes hold) cannot give {n_seen} seen entities the minimum width "
                         f"scall_min_width={s_min}: raise the budget or lower scall_min_width")
    return seen_users * width, seen_items * width


def row_precision(freqs, seen_users, seen_items, bits, policy):
    """Under ``emb_bits_policy: frequency``, per side every row's bits and each rank's cost in ``bits``-bit values
    (:func:`~recbole_lightemb.scall.widths.ranked_bits`, ranked by ``freqs``); None under ``fixed``."""
    if policy == "fixed":
        return None
    return tuple(ranked_bits(freq, seen, bits) for freq, seen in zip(freqs, (seen_users, seen_items)))


def values_budget(floats, seen_users, seen_items, bits, precision, s_max):
    """What the widths of a user and an item table may cost: ``floats``, or at ``emb_bits`` below 32 (or with bits
    by frequency, ``precision``) the ``bits``-bit values its bytes hold beside each low-bit row's scale and a byte
    of slack, and each table's 2-bit row classes (:func:`~recbole_lightemb.modules.precision.row_class_bytes`,
    grouped by width in up to ``s_max`` arrays when master-free). Float32 rows need neither scale nor slack."""
    if precision is None:
        return values_within(floats, int(seen_users.sum() + seen_items.sum()), bits)
    low_bit = sum(int((cost * bits < FLOAT_BITS).sum()) for _, cost in precision)
    classes = row_class_bytes(seen_users.size, s_max) + row_class_bytes(seen_items.size, s_max)
    return values_within(floats, low_bit, bits, classes)


def model_summary(model):
    """Mean user and item embedding over stored rows, and the widths, read off the tables."""
    summary = {}
    for module in model.modules():
        if isinstance(module, LightEmbedding) and getattr(module, "role", None) not in (None, *summary):
            table = module.full_table().detach().cpu()
            widths = getattr(module, "widths", None)
            widths = widths() if callable(widths) else widths  # grouped tables (master-free rows) compute theirs
            stored = widths.cpu() > 0 if widths is not None else table.abs().sum(1) > 0
            mean = table[stored].mean(0) if stored.any() else table.new_zeros(table.shape[1])
            summary[module.role] = (mean.double().numpy(),
                                    widths.cpu().numpy() if widths is not None else stored.numpy() * table.shape[1])
    return summary


def reward_of(ratio, settings):
    """A step's reward from ``ratio`` = its fitness / the baseline's: ``scale · (ratio - lo) / (hi - lo)``
    (``linear``, ``Engine.step``, unbounded) or ``tanh(scale · (ratio - 1))`` (``tanh``); 0 without a ratio."""
    if ratio is None:
        return 0.0
    scale = settings["scall_reward_scale"]
    if settings["scall_reward"] == "linear":
        low, high = settings["scall_reward_range"]
        return float(scale * (ratio - low) / (high - low))
    return float(np.tanh(scale * (ratio - 1.0)))


def settled(rhos, settings):
    """Whether the search stops: at least ``scall_min_search_steps`` and the last ``scall_settle_window``
    ρ within ``scall_settle_tol``, step to step (``consecutive``) or over the window (``span``)."""
    window, tol = settings["scall_settle_window"], settings["scall_settle_tol"]
    recent = rhos[-window:]
    if len(rhos) < settings["scall_min_search_steps"] or len(recent) < window:
        return False
    if settings["scall_settle"] == "consecutive":
        return bool(np.all(np.abs(np.diff(recent)) <= tol))
    return max(recent) - min(recent) <= tol


class ScallPlanner(StreamPlanner):
    widths_based = True

    def __init__(self, method, config):
        super().__init__(method, config)
        self.settings = s = scall_settings(config)
        self.bits, self.policy = config_bits(config), config_policy(config)
        self.mode = s["mode"]
        self.logger = getLogger()
        self.agent = None
        self.rng = np.random.default_rng(config["seed"]) if s["scall_shape"] == "sampled" else None
        self.prev_fitness = None  # the last segment's converged validation fitness
        self.first_block = None   # the last segment's fitness after its first block of training
        self.previous = None      # the last segment planned
        self.last_reward = 0.0    # the plugin state's reward
        self.summary = None       # the last trained model's (mean embedding, widths) per side
        self.state = None
        if s["scall_state"] == "authors":
            dim = model_width(config)
            self.state = AuthorsState(dim, s["scall_pool_groups"], s["scall_min_width"], s["scall_max_width"] or dim)

    @property
    def search_options(self):
        """How the runner's search handle trains and scores a try."""
        s = self.settings
        return {"batches": s["scall_search_batches"], "epochs": s["scall_search_epochs"], "lr": s["scall_search_lr"],
                "fitness": self.fitness}

    def fitness(self, result):
        """A validation result's fitness: the mean of Recall@20 and NDCG@20 (``Evaluator.process_ranking_metrics``)
        or RecBole's ``valid_metric``."""
        if self.settings["scall_fitness"] == "recall_ndcg":
            return float((result["recall@20"] + result["ndcg@20"]) / 2)
        return float(result[self.config["valid_metric"].lower()])

    @property
    def bounds(self):
        return self.settings["scall_min_width"], self.settings["scall_max_width"] or model_width(self.config)

    def budget_floats(self, segment, tables_per_side):
        return pair_budget(self.config, segment.users_seen + segment.items_seen) * tables_per_side

    def values_budget(self, segment, precision):
        """What the widths of a user and an item table may cost at ``segment`` with its :meth:`row_precision`
        (:func:`values_budget`)."""
        split = segment.split
        return values_budget(pair_budget(self.config, segment.users_seen + segment.items_seen), split.seen_users,
                             split.seen_items, self.bits, precision, self.bounds[1])

    def row_precision(self, segment):
        """Bits by frequency at ``segment`` (:func:`row_precision`), ranked as the widths are; None for one
        ``emb_bits``."""
        split = segment.split
        return row_precision(self.frequencies(split), split.seen_users, split.seen_items, self.bits, self.policy)

    def row_bits(self, segment):
        """``(user bits, item bits)`` of every row at ``segment``, or None (one ``emb_bits`` for all)."""
        precision = self.row_precision(segment)
        return None if precision is None else tuple(rows for rows, _ in precision)

    def frequencies(self, split):
        """What ranks entities and fills the state: this segment's training interactions or the whole history."""
        if self.settings["scall_frequency"] == "segment":
            return split.user_segment_freq, split.item_segment_freq
        return split.user_freq, split.item_freq

    def _widths(self, action, segment, correct=True):
        split, s = segment.split, self.settings
        precision = self.row_precision(segment)
        budget = self.values_budget(segment, precision)
        weights = (None, None) if precision is None else tuple(cost for _, cost in precision)
        return action_widths(action, *self.frequencies(split), split.seen_users, split.seen_items, budget,
                             s["scall_distribution"], s["scall_alpha_range"], *self.bounds, s["scall_alpha_map"],
                             self.rng, correct, s["scall_rescale"], weights)

    def _uniform(self, segment):
        split = segment.split
        precision = self.row_precision(segment)
        return uniform_widths(split.seen_users, split.seen_items, self.values_budget(segment, precision),
                              *self.bounds, precision)

    def _new_segment(self, segment):
        if self.state is not None:
            split = segment.split
            self.state.new_segment(*self.frequencies(split), split.seen_users, split.seen_items,
                                   self.values_budget(segment, self.row_precision(segment)))

    def _summary(self, role, summary=None):
        """(mean embedding, widths) of a side; zeros for a model without a table on that side."""
        dim = model_width(self.config)
        return (summary or self.summary).get(role, (np.zeros(dim), np.zeros(1, dtype=np.int64)))

    def _plugin_state(self, segment, user_widths, item_widths):
        split = segment.split
        user_mean, item_mean = (self._summary(role)[0] for role in ("user", "item"))
        return build_state(*self.frequencies(split), split.seen_users, split.seen_items, self.last_reward,
                           user_mean, item_mean, user_widths, item_widths, self.settings["scall_pool_groups"])

    def _agent(self):
        if self.agent is None:
            s = self.settings
            self.agent = SACAgent(
                state_size(s["scall_pool_groups"], model_width(self.config)), seed=self.config["seed"],
                hidden=s["scall_hidden"], entropy=s["scall_entropy"], tau=s["scall_tau"], gamma=s["scall_gamma"],
                actor_lr=s["scall_actor_lr"], critic_lr=s["scall_critic_lr"], weight_decay=s["scall_weight_decay"],
                actor_clip=s["scall_actor_clip"], nets=s["scall_nets"],
                batch_size=None if s["scall_batch_size"] == "authors" else s["scall_batch_size"])
        return self.agent

    def plan(self, segment, specs, search=None):
        meta = {"segment": segment.index, "mode": self.mode,
                "budget_floats": pair_budget(self.config, segment.users_seen + segment.items_seen)}
        if self.prev_fitness is None or self.summary is None:
            self._new_segment(segment)
            users, items = self._uniform(segment)
            return self._finish(segment, search, users, items, meta, search_steps=0, search_s=0.0, action=None)
        if self.settings["scall_action"] is not None:  # the shape alone, without the agent: no search
            action = [float(a) for a in self.settings["scall_action"]]
            self._new_segment(segment)
            planned = self._widths(action, segment)
            self.logger.info(set_color("scall", "pink") + f" segment {segment.index}: the fixed action "
                             f"{np.round(action, 3).tolist()}, no search")
            return self._finish(segment, search, planned.user_widths, planned.item_widths, meta, chosen="fixed",
                                search_steps=0, search_s=0.0, action=action, previous_fitness=self.prev_fitness)
        return self._search(segment, search, meta)

    def _search(self, segment, search, meta):
        s, start = self.settings, time.perf_counter()
        on = self.previous if s["scall_search_segment"] == "previous" else segment
        fresh = s["scall_search_init"] == "fresh"

        row_bits = self.row_bits(on)

        def attempt(users, items):
            return search.fresh(users, items, on, row_bits) if fresh else search(users, items, row_bits)

        if on is segment:
            self._new_segment(segment)
        agent = self._agent()
        if self.state is not None:
            state = self.state.vector()
        else:
            state = self._plugin_state(segment, self._summary("user")[1], self._summary("item")[1])
        candidates = []  # (fitness, name, action, user widths, item widths) of every try
        uniform_fitness = None
        if s["scall_reward_baseline"] == "uniform":
            users, items = self._uniform(on)
            uniform_fitness = attempt(users, items)
            candidates.append((uniform_fitness, "uniform", None, users, items))
        denominator = {"first_block": self.first_block, "previous": self.prev_fitness,
                       "uniform": uniform_fitness}[s["scall_reward_baseline"]]
        rhos, rewards, ratios, fitnesses = [], [], [], []
        step = 0
        while s["scall_max_search_steps"] is None or step < s["scall_max_search_steps"]:
            action = agent.act(state)
            if s["scall_settle"] == "consecutive":  # the policy's mean where this step is drawn
                rhos.append(float(agent.act(state, deterministic=True)[0]))
            tried = self._widths(action, on, correct=s["scall_search_correct"])
            fitness = attempt(tried.user_widths, tried.item_widths)
            ratio = fitness / denominator if denominator else None
            reward = reward_of(ratio, s)
            if self.state is not None:
                summary = model_summary(search.tried)
                self.state.after_step(np.clip(action[0], 1e-5, 1 - 1e-5), tried.user_p_range, tried.item_p_range,
                                      self.state.reward if ratio is None else ratio,
                                      tuple(self._summary(role, summary)[0] for role in ("user", "item")))
                next_state = self.state.vector()
            else:
                self.last_reward = reward
                next_state = self._plugin_state(on, tried.user_widths, tried.item_widths)
            agent.replay.add(state, action, reward, next_state)
            for _ in range(s["scall_updates_per_step"]):
                agent.learn()
            state = next_state
            if s["scall_settle"] == "span":  # the policy's mean after this step's updates
                rhos.append(float(agent.act(state, deterministic=True)[0]))
            fitnesses.append(fitness)
            ratios.append(ratio)
            rewards.append(reward)
            candidates.append((fitness, f"step {step}", action, tried.user_widths, tried.item_widths))
            self.logger.debug(f"scall search step {step}: action={np.round(action, 3)} fitness={fitness:.4f} "
                              f"reward={reward:.3f}")
            step += 1
            if step % 50 == 0:
                self.logger.warning(f"scall search, segment {segment.index}: {step} steps and ρ has not settled")
            if settled(rhos, s):
                break
        if on is not segment:
            self._new_segment(segment)
        if self.state is not None:
            state = self.state.vector()
        if s["scall_choice"] == "best":  # the first of the best: uniform wins a tie
            best = max(range(len(candidates)), key=lambda k: (candidates[k][0], -k))
            _, chosen, action, users, items = candidates[best]
            if on is not segment or (action is not None and not s["scall_search_correct"]):  # the best try's shape
                # on this segment's entities, rescaled to the budget (a try's unrescaled widths may exceed it)
                users, items = self._uniform(segment) if action is None else self._planned(action, segment)
        else:
            chosen, action = "policy", agent.act(state, deterministic=True)
            users, items = self._planned(action, segment)
        search_s = time.perf_counter() - start
        shape = "uniform widths" if action is None else (
            f"ρ={action[0]:.3f} α_U={alpha_from_action(action[1], s['scall_alpha_range'], s['scall_alpha_map']):.2f} "
            f"α_I={alpha_from_action(action[2], s['scall_alpha_range'], s['scall_alpha_map']):.2f}")
        self.logger.info(
            set_color("scall search", "pink") + f" segment {segment.index} (on segment {on.index}, {self.mode} "
            f"mode): {step} steps in {search_s:.1f}s ({search_s / max(step, 1):.2f}s/step), chose {chosen}: {shape}")
        return self._finish(segment, search, users, items, meta, chosen=chosen, search_steps=step, search_s=search_s,
                            action=None if action is None else [float(a) for a in action], search_segment=on.index,
                            rho_history=rhos, rewards=rewards, ratios=ratios, fitness=fitnesses,
                            denominator=denominator, baseline_fitness=uniform_fitness,
                            previous_fitness=self.prev_fitness)

    def _planned(self, action, segment):
        planned = self._widths(action, segment)
        return planned.user_widths, planned.item_widths

    def _finish(self, segment, search, users, items, meta, **more):
        """The plan; in ``first_block`` mode, first the segment's fitness after the first block of its own
        training with these widths (warm start, ``scall_search_lr``), the next search's denominator."""
        row_bits = self.row_bits(segment)
        if (self.settings["scall_reward_baseline"] == "first_block" and self.settings["scall_action"] is None
                and search is not None):
            self.first_block = more["first_block"] = search(users, items, row_bits)
        self.previous = segment
        user_floats, item_floats = int(users.sum()), int(items.sum())
        return widths_plan("scall", users, items, bits=self.bits, row_bits=row_bits, **meta, **more,
                           user_share=user_floats / max(user_floats + item_floats, 1),
                           widest={"user": int(users.max(initial=0)), "item": int(items.max(initial=0))})

    def saved_state(self):
        summary = None if self.summary is None else {
            role: [torch.as_tensor(np.asarray(mean, dtype=np.float64)), torch.as_tensor(np.asarray(widths))]
            for role, (mean, widths) in self.summary.items()}
        return {"agent": None if self.agent is None else self.agent.state(),
                "rng": None if self.rng is None else self.rng.bit_generator.state,
                "prev_fitness": self.prev_fitness, "first_block": self.first_block, "last_reward": self.last_reward,
                "summary": summary, "authors_state": None if self.state is None else self.state.data()}

    def restore(self, state, previous):
        if state["agent"] is not None:
            self._agent().load(state["agent"])
        if (state["rng"] is None) != (self.rng is None) or (state["authors_state"] is None) != (self.state is None):
            raise ValueError("written by a planner of another shape or state")
        if self.rng is not None:
            self.rng.bit_generator.state = state["rng"]
        if self.state is not None:
            self.state.load(state["authors_state"])
        self.prev_fitness, self.first_block = state["prev_fitness"], state["first_block"]
        self.last_reward, self.previous = float(state["last_reward"]), previous
        self.summary = None if state["summary"] is None else {
            role: (mean.numpy(), widths.numpy()) for role, (mean, widths) in state["summary"].items()}

    def observe(self, fitness, model, result=None):
        self.prev_fitness = float(fitness if result is None else self.fitness(result))
        self.summary = model_summary(model)
        if self.state is not None:
            self.state.after_training(tuple(self._summary(role)[0] for role in ("user", "item")))
