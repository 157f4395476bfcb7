"""RecBole ``Trainer`` for ``emb: ciess``: search the widths, then train with them as usual.

``fit`` runs (a) pre-training at full widths, which sets each entity's peak quality: the paper mode
trains rounds of ``ciess_pretrain_batches`` batches until the mean validation quality stops improving
(``ciess_pretrain_patience`` rounds, the best kept), the fast mode ``ciess_pretrain_epochs`` epochs;
(b) ``ciess_episodes × ciess_steps`` environment steps: the agents pick widths (one exploration noise
per step for every entity, or one per entity), the model trains with them — paper: a fresh model,
new random init and Adam, the authors' batches and lr decay (:mod:`~recbole_lightemb.ciess.schedule`);
fast: ``ciess_step_batches`` batches warm-started from the previous step, each episode from the
pre-trained model — per-entity quality is measured on the validation data, rewards are stored and
the agents learn; (c) the steps under the budget are ranked by mean user quality and the best
``ciess_retrain_top`` kept as found (with none under it, the best step is shrunk, largest widths
first, until it fits: the plugin's fallback; the budget holds either way); with ``ciess_fill_budget``
a plan left under the budget is scaled up until it is spent, with ``ciess_rank_by_frequency`` the
widths are handed out again, widest to the most frequent entity of each side (both the fast mode's,
not the paper's); (d) each kept plan is trained from the search's initial model by RecBole's own
``fit`` to convergence, and the one with the best validation score is kept (the authors retrain
their top 3; their ``retrain`` is imported but missing from the public code). The plan is saved
beside the checkpoint. After each episode the search's state is saved too, so a stopped search goes on
from there (``ciess_resume_search``, :mod:`~recbole_lightemb.ciess.search_state`).
"""

import copy
import os
from time import time
from types import SimpleNamespace

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import get_model, set_color

from recbole_lightemb.ciess.agent import TD3Agent
from recbole_lightemb.ciess.explore import explore
from recbole_lightemb.ciess.keys import budget_fraction, departures, resolve_mode, saved_plan_path
from recbole_lightemb.ciess.quality import item_quality, user_quality
from recbole_lightemb.ciess.search_state import (
    load_search_state, save_search_state, search_state_path, widths_from_data, widths_to_data)
from recbole_lightemb.ciess.schedule import (
    AUTHORS_BUFFER_STEPS, AUTHORS_TARGET_NOISE, LrSchedule, authors_batch_size, authors_step,
    scaled_count)
from recbole_lightemb.ciess.widths import (
    bits_of, fit_to_budget, full_plan_bytes, grow_to_budget, mixed_plan_bytes, plan_bytes, rank_by_frequency,
    table_widths, to_mixed)
from recbole_lightemb.methods.precision import apply_bits
from recbole_lightemb.modules import VariableWidthEmbedding
from recbole_lightemb.modules.mixed import MixedDimEmbedding
from recbole_lightemb.modules.quantized import FLOAT_BITS
from recbole_lightemb.plan import plan_path
from recbole_lightemb.report import training_memory
from recbole_lightemb.storage.checkpoint import first_line
from recbole_lightemb.storage.run_state import plain, rng_state, set_rng_state
from recbole_lightemb.swap import pack_variable_widths, replace_table, swap_embeddings

PEAK_FLOOR = 1e-5  # the authors floor the peak quality before dividing by it (CIESS.py)


class _Batches:
    """``n`` batches drawn from an endless pass over a loader, shaped like a loader for ``_train_epoch``;
    ``after_batch(i)`` runs once batch ``i`` is trained (before the next is drawn)."""

    shuffle = False

    def __init__(self, source, n, after_batch=None):
        self.source, self.n, self.after_batch = source, n, after_batch

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield next(self.source)
            if self.after_batch is not None:
                self.after_batch(i)


def _endless(loader):
    while True:
        yield from loader


def _spread(widths):
    """How far a plan's widths are from one width for all (a uniform table): min, deciles 1/5/9, max."""
    low, median, high = np.percentile(widths, [10, 50, 90])
    return {"min": int(widths.min()), "p10": float(low), "median": float(median), "p90": float(high),
            "max": int(widths.max())}


def _scaled(values):
    """Min-max to ``[-1, 1]`` (all equal: 0)."""
    low, high = values.min(), values.max()
    return np.zeros_like(values) if high == low else 2.0 * (values - low) / (high - low) - 1.0


def frequency_state(counts, log):
    """The state's frequency column: the authors' min-max of the training counts over the entities that
    have some (an entity with none falls below −1, as in ``RecSysEnv.get_state``); ``log``: the fast mode's
    min-max of ``log(1 + count)`` over every id."""
    counts = np.asarray(counts, dtype=np.float64)
    if log:
        return _scaled(np.log1p(counts))
    seen = counts[counts > 0]
    low, high = (seen.min(), seen.max()) if seen.size else (0.0, 0.0)
    return np.zeros_like(counts) if high == low else 2.0 * (counts - low) / (high - low) - 1.0


def quality_state(quality, peak, authors):
    """The state's quality column ``2·q/q_peak − 1`` clipped to ``[-1, 1]``: the authors floor ``q_peak`` at
    1e-5; the fast mode counts an entity with no peak as at its peak."""
    if authors:
        return np.clip(2.0 * quality / np.maximum(peak, PEAK_FLOOR) - 1.0, -1.0, 1.0)
    ratio = np.divide(quality, peak, out=np.ones_like(quality), where=peak > 0)
    return np.clip(2.0 * ratio - 1.0, -1.0, 1.0)


def _memory_record(value):
    """A search state's record of the most its search held: None, or a dict of numbers (else refused)."""
    if value is not None and not (isinstance(value, dict) and "training_bytes" in value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())):
        raise ValueError(f"its memory record is {type(value).__name__}, not a dict of numbers")
    return value


class _Recorder:
    """Holds a candidate's ``(epoch, valid score)`` calls until it is known whether it is kept."""

    def __init__(self):
        self.calls = []

    def __call__(self, epoch_idx, valid_score):
        self.calls.append((epoch_idx, valid_score))


class CIESSTrainer(Trainer):
    """RecBole's trainer with the CIESS width search in front of the usual training."""

    def __init__(self, config, model):
        self.mode = resolve_mode(config)
        super().__init__(config, model)
        self.authors = self.mode == "paper"  # the authors' TD3 bookkeeping and quality floor (no keys of their own)
        self.tables = [m for m in model.modules() if isinstance(m, VariableWidthEmbedding)]
        final = [m for m in model.modules() if isinstance(m, MixedDimEmbedding) and hasattr(m, "ciess_plan")]
        if not self.tables and not final:
            raise ValueError("emb=ciess: the model has no VariableWidthEmbedding tables; build it with "
                             "swap_embeddings(model, dataset, config) before the trainer")
        tables = self.tables or final
        self.plan = tables[0].ciess_plan
        self.projection = bool(self.plan.meta.get("projection"))
        self.bits = int(self.plan.meta.get("bits", FLOAT_BITS))  # emb_bits: the final groups' rows, and every cost
        if self.plan.meta.get("bits_policy", "fixed") != "fixed":  # one per entity, by its training interactions
            self.bits = {t.role: self.plan[f"{t.role}_bits"].astype(np.int64) for t in tables}
        self.ref_dim = self.plan.meta["ref_dim"]
        self.roles = sorted({t.role for t in tables})
        self.dims = {r: [t.embedding_dim for t in tables if t.role == r] for r in self.roles}
        self.sizes = {t.role: t.num_embeddings for t in tables}
        self.s_min = config["ciess_s_min"]
        if self.s_min > self.ref_dim:
            raise ValueError(f"ciess_s_min={self.s_min}: must be at most the embedding width {self.ref_dim}")
        budget = budget_fraction(config)
        self.max_bytes = None if budget is None else int(budget * full_plan_bytes(self.sizes, self.dims))
        self.initial_state = self._snapshot()
        self.search_state_file = None
        self.search_memory = None  # the most the search's tables held while training (``_note_memory``)

    # -- model state -------------------------------------------------------------------------

    def _snapshot(self):
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _restore(self, state):
        self.model.load_state_dict(state)
        self.optimizer = self._build_optimizer()

    def _fresh_model(self, dataset, step_id):
        """The model with a new random init, as the authors rebuild theirs at every step; seeded by
        ``seed`` and the step, and leaving torch's global RNG where it was."""
        seed = int(np.random.SeedSequence([self.config["seed"], step_id]).generate_state(1)[0])
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            torch.manual_seed(seed)
            model = get_model(self.config["model"])(self.config, dataset)
            swap_embeddings(model, dataset, self.config, init_seed=seed)  # emb_init: normal draws anew too
        self._restore(model.state_dict())

    def apply_widths(self, widths):
        """Set every table of each role to ``widths[role]`` (reference scale); drop cached propagations."""
        for table in self.tables:
            table.set_widths(table_widths(widths[table.role], table.embedding_dim, self.ref_dim))
        self._forget_propagation()

    def _forget_propagation(self):
        for module in self.model.modules():  # LightGCN/NGCF cache the propagated tables for full sort
            for name in ("restore_user_e", "restore_item_e"):
                if getattr(module, name, None) is not None:
                    setattr(module, name, None)

    def _pack_tables(self):
        """Once the widths are final, train packed tables (``Σ s_e`` floats and their optimiser state;
        with ``ciess_projection``, groups and their projections) instead of the search's masked
        ``n × d`` ones. Returns the packed tables, in ``self.tables``' order."""
        packed = pack_variable_widths(self.model, projection=self.projection)
        if isinstance(self.bits, dict) or self.bits != FLOAT_BITS:  # (checked by the method: projection groups)
            for table in packed:  # low-bit rows, with float32 masters or (emb_master_free) trained as stored
                widths = table.widths().cpu().numpy()
                apply_bits(self.config, SimpleNamespace(name=table.table_name), table,
                           table.group_bits(widths, bits_of(self.bits, table.role)))
        self.optimizer = self._build_optimizer()
        self._forget_propagation()
        return packed

    def _note_memory(self):
        """The search trains masked ``n × d`` tables with their optimiser state, far more than the final
        packed tables hold: keep the most it held (measured after a step), so the run's bytes held while
        training are the search's when larger."""
        held = training_memory(self.model, self.optimizer)
        if self.search_memory is None or held["training_bytes"] > self.search_memory["training_bytes"]:
            self.search_memory = held

    def _swap_tables(self, old, new):
        for a, b in zip(old, new):
            replace_table(self.model, a, b)
        self._forget_propagation()

    def plan_bytes(self, widths):
        return plan_bytes(widths, self.dims, self.ref_dim, self.bits)

    def final_bytes(self, widths):
        """Bytes of the final tables: prefix rows, or (``ciess_projection``) groups with their projections."""
        if self.projection:
            return mixed_plan_bytes(widths, self.dims, self.ref_dim, self.bits)
        return self.plan_bytes(widths)

    # -- fit -----------------------------------------------------------------------------------

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if saved_plan_path(self.config):
            widths = {r: self.plan[f"{r}_widths"] for r in self.roles}
            if self.max_bytes is not None and self.final_bytes(widths) > self.max_bytes:
                raise ValueError(f"ciess plan {saved_plan_path(self.config)!r} needs {self.final_bytes(widths)} bytes, "
                                 f"over emb_budget ({self.max_bytes} bytes)")
            candidates = [(None, widths)]
        else:
            if valid_data is None:
                raise ValueError("emb=ciess searches widths on validation data; none was given")
            candidates = self.search(train_data, valid_data, show_progress, saved)
        if len(candidates) > 1:
            result = self._retrain_top(candidates, train_data, valid_data, verbose, saved, show_progress, callback_fn)
        else:
            result = self._train_one(candidates[0], train_data, valid_data, verbose, saved, show_progress, callback_fn)
        if self.search_state_file and os.path.isfile(self.search_state_file):  # the plan holds the search's result
            os.remove(self.search_state_file)
        return result

    def _train_one(self, candidate, train_data, valid_data, verbose, saved, show_progress, callback_fn):
        """Train the one plan (searched, or reused) to convergence by RecBole's ``fit``."""
        record, widths = candidate
        if record is not None:
            self._set_plan(record, widths)
            self._save_plan(saved)
        if self.tables:  # (d) the final model starts from the same init as the search (a reused plan with
            self._prepare(widths)  # projections was built as its final groups already)
            self.tables, self.initial_state = [], None  # the search's state can go
        self._reset_fit_state()
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def _prepare(self, widths):
        """The search's initial model with ``widths``, packed when ``ciess_packed_training``; returns the
        packed tables (empty when they stay masked)."""
        self._restore(self.initial_state)
        self.apply_widths(widths)
        if self.config["ciess_packed_training"] and self.config["single_spec"]:
            return self._pack_tables()
        return []

    def _reset_fit_state(self):
        self.start_epoch, self.cur_step = 0, 0
        self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
        self.best_valid_result = None
        self.train_loss_dict = {}

    def _save_plan(self, saved):
        if saved and self.config["local_rank"] == 0:
            path = self.plan.save(plan_path(self.saved_model_file))
            self.logger.info(set_color("Saving searched plan", "blue") + f": {path}")

    def _retrain_top(self, candidates, train_data, valid_data, verbose, saved, show_progress, callback_fn):
        """Train every candidate plan to convergence from the search's initial model; keep the best by
        validation (ties: the one the search ranked higher). Each writes its own checkpoint; the kept one
        takes the run's checkpoint name."""
        final_file, runs, packed = self.saved_model_file, [], []
        for k, (record, widths) in enumerate(candidates):
            self._swap_tables(packed, self.tables)  # back to the masked tables the search trained
            packed = self._prepare(widths)
            self._reset_fit_state()
            self.saved_model_file = f"{os.path.splitext(final_file)[0]}.top{k}.pth"
            recorder = _Recorder()
            score, result = super().fit(train_data, valid_data, verbose, saved, show_progress, recorder)
            runs.append({"record": record, "widths": widths, "tables": packed, "optimizer": self.optimizer,
                         "state": self._snapshot(), "file": self.saved_model_file, "calls": recorder.calls,
                         "fit": (score, result), "trainer": (dict(self.train_loss_dict), self.cur_step)})
            self.logger.info(set_color("CIESS retrain", "pink") + f" {k + 1}/{len(candidates)} (episode "
                             f"{record['episode']} step {record['step']}, search quality {record['quality']:.4f}): "
                             f"best valid score {score:.4f}")
        sign = 1.0 if self.valid_metric_bigger else -1.0
        best = max(range(len(runs)), key=lambda k: (sign * runs[k]["fit"][0], -k))
        run = runs[best]
        self._swap_tables(packed, run["tables"] if packed else [])
        self.model.load_state_dict(run["state"])
        self.optimizer = run["optimizer"]
        self.best_valid_score, self.best_valid_result = run["fit"]
        self.train_loss_dict, self.cur_step = run["trainer"]
        self.saved_model_file = final_file
        if saved and self.config["local_rank"] == 0:
            for k, other in enumerate(runs):
                if k == best and os.path.isfile(other["file"]):
                    os.replace(other["file"], final_file)
                elif os.path.isfile(other["file"]):
                    os.remove(other["file"])
        for epoch_idx, valid_score in run["calls"] if callback_fn is not None else []:
            callback_fn(epoch_idx, valid_score)
        self._set_plan(run["record"], run["widths"])
        self.plan.meta["retrained"] = [{"episode": r["record"]["episode"], "step": r["record"]["step"],
                                        "quality": r["record"]["quality"], "kept": r["record"]["kept"],
                                        "best_valid_score": float(r["fit"][0])} for r in runs]
        self.plan.meta["retrain_kept"] = best
        self._save_plan(saved)
        self.tables, self.initial_state = [], None
        return run["fit"]

    # -- search --------------------------------------------------------------------------------

    def _qualities(self, valid_data, interactions, show_progress):
        q_user = user_quality(self, valid_data, self.config["ciess_quality_ks"], show_progress)
        return {"user": q_user, "item": item_quality(q_user, interactions)}

    def _state(self, role, widths, quality, peak, start=False):
        """An entity's state: frequency, width and quality, each scaled to ``[-1, 1]``; at an episode's
        start the quality is 0 (authors) or at its peak (``ciess_start_at_peak``)."""
        if start and not self.config["ciess_start_at_peak"]:
            q = np.zeros(len(widths))
        else:
            q = quality_state(quality, peak, self.authors)
        return np.column_stack([self.frequency[role], self._to_action(widths), q])

    def _to_width(self, actions):
        return self.s_min + (np.asarray(actions) + 1.0) / 2.0 * (self.ref_dim - self.s_min)

    def _to_action(self, widths):
        return 2.0 * (np.asarray(widths) - self.s_min) / max(self.ref_dim - self.s_min, 1) - 1.0

    def _agent(self, seed, role):
        c = self.config
        half_range = max(self.ref_dim - self.s_min, 1) / 2.0  # widths per unit of normalised action
        noise = AUTHORS_TARGET_NOISE[0] / half_range if c["ciess_policy_noise"] is None else c["ciess_policy_noise"]
        clip = AUTHORS_TARGET_NOISE[1] / half_range if c["ciess_noise_clip"] is None else c["ciess_noise_clip"]
        buffer = c["ciess_buffer_size"] or AUTHORS_BUFFER_STEPS * self.sizes[role]
        return TD3Agent(seed, hidden=c["ciess_hidden"], actor_lr=c["ciess_actor_lr"], critic_lr=c["ciess_critic_lr"],
                        tau=c["ciess_tau"], gamma=c["ciess_gamma"], policy_delay=c["ciess_policy_delay"],
                        policy_noise=noise, noise_clip=clip, batch_size=c["ciess_batch_size"], buffer_size=buffer,
                        grad_clip=c["ciess_grad_clip"], scalar_target_noise=not c["ciess_noise_per_entity"],
                        authors=self.authors)

    def _choose(self, agent, state, rng, noise):
        c = self.config
        proposed = self._to_width(agent.act(state))

        def score(candidates):
            return np.stack([agent.value(state, self._to_action(w)) for w in candidates])

        return explore(proposed, score, rng, self.s_min, self.ref_dim, steps=c["ciess_walk_steps"],
                       radius=c["ciess_walk_radius"], sigma=c["ciess_explore_sigma"], noise=noise)

    def step_loader(self, train_data):
        """The loader the search trains from: ``ciess_step_batch_size`` samples a batch (``~``: the authors'
        batch as the same share of the training rows); RecBole's own loader when that is its batch size."""
        size = self.config["ciess_step_batch_size"] or authors_batch_size(len(train_data._dataset))
        if size == self.config["train_batch_size"]:
            return train_data
        config = copy.copy(self.config)
        config.final_config_dict = {**self.config.final_config_dict, "train_batch_size": size}
        return type(train_data)(config, train_data._dataset, train_data._sampler, shuffle=True)

    def _lr_schedule(self, scale):
        """The authors' Adam and lr decay for a step (``scale``: the search scale; 1 for pre-training),
        installed as the optimizer; ``None`` (RecBole's optimizer as it is) when ``ciess_step_lr`` is ``~``."""
        c = self.config
        if c["ciess_step_lr"] is None:
            return None
        _, every, lr_min = authors_step(c["model"])
        schedule = LrSchedule(c["ciess_step_lr"], c["ciess_step_lr_decay"],
                              scaled_count(c["ciess_step_lr_every"] or every, scale),
                              lr_min if c["ciess_step_lr_min"] is None else c["ciess_step_lr_min"])
        self.optimizer = self._build_optimizer(learner="adam", learning_rate=schedule.lr)
        return schedule

    def _batches(self, source, n, schedule):
        def after_batch(index):
            for group in self.optimizer.param_groups:
                group["lr"] = schedule.after_batch(index)

        return _Batches(source, n, None if schedule is None else after_batch)

    def _pretrain(self, train_data, batches, valid_data, show_progress):
        """Full-width pre-training; returns the number of epochs or rounds it ran."""
        c = self.config
        if c["ciess_pretrain_epochs"] is not None:
            for epoch in range(c["ciess_pretrain_epochs"]):
                loss = self._train_epoch(train_data, epoch, show_progress=show_progress)
                self._note_memory()
                self.logger.info(set_color("CIESS pre-train", "pink") + f" epoch {epoch}: loss {np.sum(loss):.4f}")
            return c["ciess_pretrain_epochs"]
        schedule = self._lr_schedule(1.0)
        best, best_state, patience, rounds = -np.inf, None, c["ciess_pretrain_patience"], 0
        while patience > 0:
            self._train_epoch(self._batches(batches, c["ciess_pretrain_batches"], schedule), rounds,
                              show_progress=show_progress)
            self._note_memory()
            quality = float(user_quality(self, valid_data, c["ciess_quality_ks"], show_progress).mean())
            self.logger.info(set_color("CIESS pre-train", "pink") + f" round {rounds}: quality {quality:.4f}")
            rounds += 1
            if quality > best:
                best, best_state, patience = quality, self._snapshot(), c["ciess_pretrain_patience"]
            else:
                patience -= 1
        self._restore(best_state)
        return rounds

    def search(self, train_data, valid_data, show_progress=False, saved=True):
        """The CIESS search; returns the candidate plans ``[(step record, widths per role), …]``, best
        first, every one within the budget. Fills the search's part of ``self.plan.meta``. With ``saved``
        its state is written after every episode; ``ciess_resume_search`` goes on from such a state."""
        c = self.config
        start = time()
        interactions = train_data._dataset.inter_matrix(form="csr")
        counts = {"user": np.asarray(interactions.sum(1)).ravel(), "item": np.asarray(interactions.sum(0)).ravel()}
        self.frequency = {r: frequency_state(counts[r], c["ciess_log_frequency"]) for r in self.roles}
        full = {r: np.full(self.sizes[r], self.ref_dim, dtype=np.int64) for r in self.roles}
        full_bytes = full_plan_bytes(self.sizes, self.dims)
        self.eval_collector.data_collect(train_data)
        loader = self.step_loader(train_data)
        if c["train_neg_sample_args"].get("dynamic", False):
            for data in (train_data, loader):
                data.get_model(self.model)
        batches = _endless(loader)
        rng = np.random.default_rng(c["seed"])
        agents = {r: self._agent(c["seed"] + k, r) for k, r in enumerate(self.roles)}
        resumed = c["ciess_resume_search"]
        writes = saved and c["local_rank"] == 0  # one process writes (and at the end removes) the state
        self.search_state_file = (resumed or search_state_path(self.saved_model_file)) if writes else None
        if resumed:
            run = self._resume_search(resumed, agents, rng)
        else:
            self.apply_widths(full)
            pretrain_rounds = self._pretrain(train_data, batches, valid_data, show_progress)
            run = {"episodes_done": 0, "pretrained": self._snapshot(), "pretrain_rounds": pretrain_rounds,
                   "peak": self._qualities(valid_data, interactions, show_progress), "pretrain_s": time() - start,
                   "search_s": 0.0, "history": [], "eligible": [], "best_any": None, "resumed_at": []}
        peak, pretrained = run["peak"], run["pretrained"]
        self.logger.info(set_color("CIESS peak quality", "pink") + f": user {peak['user'].mean():.4f}")

        n_batches = scaled_count(c["ciess_step_batches"] or authors_step(c["model"])[0], c["ciess_search_scale"])
        history, top = run["history"], c["ciess_retrain_top"]
        for episode in range(run["episodes_done"], c["ciess_episodes"]):
            self._restore(pretrained)
            widths, quality = full, peak
            states = {r: self._state(r, widths[r], quality[r], peak[r], start=True) for r in self.roles}
            for step in range(c["ciess_steps"]):
                step_start, step_id = time(), episode * c["ciess_steps"] + step
                noise = None if c["ciess_noise_per_entity"] else rng.normal(0.0, c["ciess_explore_sigma"])
                widths = {r: self._choose(agents[r], states[r], rng, noise) for r in self.roles}
                if not c["ciess_warm_start"]:
                    self._fresh_model(train_data._dataset, step_id)
                self.apply_widths(widths)
                schedule = self._lr_schedule(c["ciess_search_scale"])
                self._train_epoch(self._batches(batches, n_batches, schedule), step_id, show_progress=show_progress)
                self._note_memory()
                quality = self._qualities(valid_data, interactions, show_progress)
                done = step == c["ciess_steps"] - 1
                record = {"episode": episode, "step": step, "quality": float(quality["user"].mean())}
                for r in self.roles:
                    penalty = ((widths[r] - self.s_min) / self.ref_dim) ** 2
                    reward = quality[r] - c["ciess_lambda"] * penalty
                    next_state = self._state(r, widths[r], quality[r], peak[r])
                    agents[r].remember(states[r], self._to_action(widths[r]), reward, next_state, done)
                    agents[r].learn(c["ciess_updates_per_step"])
                    states[r] = next_state
                    record[f"{r}_mean_width"] = float(widths[r].mean())
                    record[f"{r}_reward"] = float(reward.mean())
                record["bytes"] = int(self.plan_bytes(widths))
                record["kept"] = record["bytes"] / full_bytes
                record["step_s"] = time() - step_start
                history.append(record)
                self._log_step(record, step_id)
                if run["best_any"] is None or record["quality"] > run["best_any"][0]["quality"]:
                    run["best_any"] = (record, widths)
                if record["bytes"] <= self.max_bytes:  # a step over the budget is never a candidate
                    run["eligible"] = sorted(run["eligible"] + [(record, widths)], key=lambda p: -p[0]["quality"])[:top]
            run["episodes_done"] = episode + 1
            if self.search_state_file:
                self._save_search(run, agents, rng, run["search_s"] + time() - start)

        eligible = run["eligible"]
        shrunk = not eligible
        candidates = [self._finish(widths, counts) for _, widths in (eligible or [run["best_any"]])]
        train_rows = len(train_data._dataset)
        batch_size = c["ciess_step_batch_size"] or authors_batch_size(train_rows)
        self.plan.meta.update({
            "searched": True, "mode": self.mode, "search_scale": float(c["ciess_search_scale"]),
            "departures": departures(c), "budget": budget_fraction(c), "max_bytes": self.max_bytes,
            "shrunk_to_budget": shrunk, "peak_quality": float(peak["user"].mean()),
            "pretrain_rounds": run["pretrain_rounds"], "pretrain_s": run["pretrain_s"],
            "search_s": run["search_s"] + time() - start, "history": history, "resumed_at_episodes": run["resumed_at"],
            "search_training_memory": self.search_memory,
            "step": {"batches": n_batches, "batch_size": batch_size, "passes": n_batches * batch_size / train_rows,
                     "fresh_model": not c["ciess_warm_start"]},
        })
        return [(record, widths) for (record, _), widths in zip(eligible or [run["best_any"]], candidates)]

    def _save_search(self, run, agents, rng, search_s):
        """Write the search after ``run["episodes_done"]`` episodes, as data (:mod:`.search_state`)."""
        def pairs(found):
            return [{"record": plain(record), "widths": widths_to_data(widths)} for record, widths in found]

        best = run["best_any"]
        save_search_state(self.search_state_file, {
            "episodes_done": run["episodes_done"], "pretrained": run["pretrained"], "initial": self.initial_state,
            "peak": {r: torch.from_numpy(np.ascontiguousarray(q)) for r, q in run["peak"].items()},  # dtype kept
            "pretrain_rounds": int(run["pretrain_rounds"]), "pretrain_s": float(run["pretrain_s"]),
            "search_s": float(search_s), "history": plain(run["history"]), "eligible": pairs(run["eligible"]),
            "best_any": pairs([best])[0] if best is not None else None, "resumed_at": list(run["resumed_at"]),
            "agents": {r: agent.state() for r, agent in agents.items()}, "rng": rng.bit_generator.state,
            "memory": self.search_memory,
            "global_rng": rng_state(),
        }, self.config)
        self.logger.info(set_color("CIESS search state", "pink") + f" after episode {run['episodes_done']}: "
                         f"{self.search_state_file}")

    def _resume_search(self, path, agents, rng):
        """Restore the agents, generators and model states of the search state at ``path``; its progress."""
        state = load_search_state(path, self.config)

        def pairs(found):
            return [(item["record"], widths_from_data(item["widths"])) for item in found]

        try:
            for r, agent in agents.items():
                agent.load(state["agents"][r])
            rng.bit_generator.state = state["rng"]
            set_rng_state(state["global_rng"])
            self._restore(state["initial"])  # both model states must fit this model (checked by torch)
            self._restore(state["pretrained"])
            self.initial_state = state["initial"]
            run = {"episodes_done": state["episodes_done"], "pretrained": state["pretrained"],
                   "peak": {r: q.numpy() for r, q in state["peak"].items()},
                   "pretrain_rounds": state["pretrain_rounds"], "pretrain_s": state["pretrain_s"],
                   "search_s": state["search_s"], "history": state["history"], "eligible": pairs(state["eligible"]),
                   "best_any": pairs([state["best_any"]])[0] if state["best_any"] is not None else None,
                   "resumed_at": state["resumed_at"] + [state["episodes_done"]]}
            self.search_memory = _memory_record(state.get("memory"))  # a state written before it was kept has none
            found = [widths for _, widths in run["eligible"] + ([run["best_any"]] if run["best_any"] else [])]
            for r in self.roles:
                if any(len(values[r]) != self.sizes[r] for values in [run["peak"], *found]):
                    raise ValueError(f"its {r} arrays do not have this run's {self.sizes[r]} {r}s")
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
            raise ValueError(f"ciess_resume_search={path!r}: does not fit this run's model and agents "
                             f"({first_line(error, type(error).__name__)})") from None
        self.logger.info(set_color("CIESS search resumed", "pink") + f" after episode {run['episodes_done']} "
                         f"of {self.config['ciess_episodes']}: {path}")
        return run

    def _finish(self, widths, counts):
        """A chosen step's widths as trained: as found in the paper mode (``fit_to_budget`` only shrinks the
        fallback plan), filled, re-ranked or grouped where the options ask."""
        c = self.config
        widths = fit_to_budget(widths, self.dims, self.ref_dim, self.max_bytes, self.s_min, self.bits)
        if c["ciess_fill_budget"]:
            widths = grow_to_budget(widths, self.dims, self.ref_dim, self.max_bytes, bits=self.bits)
        if c["ciess_rank_by_frequency"]:
            widths = rank_by_frequency(widths, counts)
        if self.projection:
            widths = to_mixed(widths, self.dims, self.ref_dim, self.max_bytes, self.s_min, grow=c["ciess_fill_budget"],
                              bits=self.bits)
        return widths

    def _set_plan(self, chosen, widths):
        """Put the kept plan's widths and their cost into ``self.plan``."""
        full_bytes = full_plan_bytes(self.sizes, self.dims)
        stored = self.final_bytes(widths)
        self.plan.arrays.update({f"{r}_widths": widths[r].astype(np.int16) for r in self.roles})
        self.plan.meta.update({
            "stored_bytes": stored, "kept": stored / full_bytes,
            "chosen_step": {"episode": chosen["episode"], "step": chosen["step"]}, "chosen_kept": chosen["kept"],
            "final_widths": {r: _spread(widths[r]) for r in self.roles},
        })
        self.logger.info(set_color("CIESS plan", "pink") + f": episode {chosen['episode']} step {chosen['step']}"
                         f"{' shrunk to the budget' if self.plan.meta['shrunk_to_budget'] else ''}, kept "
                         f"{stored / full_bytes:.4f} of the full bytes (budget {budget_fraction(self.config)}), "
                         f"search {self.plan.meta['search_s']:.1f}s ({self.mode} mode)")

    def _log_step(self, record, step_id):
        widths = ", ".join(f"{r} {record[f'{r}_mean_width']:.2f}" for r in self.roles)
        rewards = ", ".join(f"{r} {record[f'{r}_reward']:.4f}" for r in self.roles)
        self.logger.info(set_color("CIESS", "pink") + f" episode {record['episode']} step {record['step']}: "
                         f"mean width {widths}; kept {record['kept']:.4f}; reward {rewards}; "
                         f"quality {record['quality']:.4f} ({record['step_s']:.1f}s)")
        if self.tensorboard is not None:
            for key in ("quality", "kept", *[f"{r}_mean_width" for r in self.roles],
                        *[f"{r}_reward" for r in self.roles]):
                self.tensorboard.add_scalar(f"CIESS/{key}", record[key], step_id)
