"""RecBole ``Trainer`` for ``emb: ciess``: search the widths, then train with them as usual.

``fit`` runs (a) pre-training at full widths, which sets each entity's peak quality;
(b) ``ciess_episodes × ciess_steps`` environment steps: the agents pick widths, the model
trains ``ciess_step_batches`` batches with them (warm-started from the previous step; each
episode restarts from the pre-trained model), per-entity quality is measured on the
validation data, rewards are stored and the agents learn; (c) the step with the best mean
user quality under the budget wins; (d) with none under it, the best step is shrunk (largest
widths first) until it fits; with ``ciess_fill_budget`` a plan left under the budget is scaled
up proportionally until it is spent (not in the paper: a short search often lands far below
the target); with ``ciess_rank_by_frequency`` the chosen widths are handed out again, widest to
the most frequent entity of each side (not in the paper: same widths, same bytes; a short search
leaves them dominated by exploration noise, and a width the model cannot use is wasted, since a
user-item score only reaches the first ``min(s_u, s_i)`` coordinates); (e) the model is
re-initialised, given the final widths and trained by RecBole's own ``fit`` to convergence, as
any plain model. The plan is re-saved beside the checkpoint.
"""

from time import time

import numpy as np
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_lightemb.ciess.agent import TD3Agent
from recbole_lightemb.ciess.explore import explore
from recbole_lightemb.ciess.keys import budget_fraction, saved_plan_path
from recbole_lightemb.ciess.quality import item_quality, user_quality
from recbole_lightemb.ciess.widths import (
    fit_to_budget, full_plan_bytes, grow_to_budget, mixed_plan_bytes, plan_bytes, rank_by_frequency, table_widths,
    to_mixed)
from recbole_lightemb.modules import VariableWidthEmbedding
from recbole_lightemb.modules.mixed import MixedDimEmbedding
from recbole_lightemb.plan import plan_path
from recbole_lightemb.swap import pack_variable_widths


class _Batches:
    """``n`` batches drawn from an endless pass over a loader, shaped like a loader for ``_train_epoch``."""

    shuffle = False

    def __init__(self, source, n):
        self.source, self.n = source, n

    def __len__(self):
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield next(self.source)


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


class CIESSTrainer(Trainer):
    """RecBole's trainer with the CIESS width search in front of the usual training."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.tables = [m for m in model.modules() if isinstance(m, VariableWidthEmbedding)]
        final = [m for m in model.modules() if isinstance(m, MixedDimEmbedding) and hasattr(m, "ciess_plan")]
        if not self.tables and not final:
            raise ValueError("emb=ciess: the model has no VariableWidthEmbedding tables; build it with "
                             "swap_embeddings(model, dataset, config) before the trainer")
        tables = self.tables or final
        self.plan = tables[0].ciess_plan
        self.projection = bool(self.plan.meta.get("projection"))
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

    # -- model state -------------------------------------------------------------------------

    def _snapshot(self):
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _restore(self, state):
        self.model.load_state_dict(state)
        self.optimizer = self._build_optimizer()

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
        ``n × d`` ones, and let the search's state go."""
        pack_variable_widths(self.model, projection=self.projection)
        self.tables, self.initial_state = [], None
        self.optimizer = self._build_optimizer()
        self._forget_propagation()

    def plan_bytes(self, widths):
        return plan_bytes(widths, self.dims, self.ref_dim)

    def final_bytes(self, widths):
        """Bytes of the final tables: prefix rows, or (``ciess_projection``) groups with their projections."""
        return mixed_plan_bytes(widths, self.dims, self.ref_dim) if self.projection else self.plan_bytes(widths)

    # -- fit -----------------------------------------------------------------------------------

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        widths = {r: self.plan[f"{r}_widths"] for r in self.roles}
        if saved_plan_path(self.config):
            if self.max_bytes is not None and self.final_bytes(widths) > self.max_bytes:
                raise ValueError(f"ciess plan {saved_plan_path(self.config)!r} needs {self.final_bytes(widths)} bytes, "
                                 f"over emb_budget ({self.max_bytes} bytes)")
        else:
            if valid_data is None:
                raise ValueError("emb=ciess searches widths on validation data; none was given")
            widths = self.search(train_data, valid_data, show_progress)
            if saved and self.config["local_rank"] == 0:
                path = self.plan.save(plan_path(self.saved_model_file))
                self.logger.info(set_color("Saving searched plan", "blue") + f": {path}")
        if self.tables:  # (e) the final model starts from the same init as the search (a reused plan with
            self._restore(self.initial_state)  # projections was built as its final groups already)
            self.apply_widths(widths)
            if self.config["ciess_packed_training"] and self.config["single_spec"]:
                self._pack_tables()
        self.start_epoch, self.cur_step = 0, 0
        self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
        self.best_valid_result = None
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    # -- search --------------------------------------------------------------------------------

    def _qualities(self, valid_data, interactions, show_progress):
        q_user = user_quality(self, valid_data, self.config["ciess_quality_ks"], show_progress)
        return {"user": q_user, "item": item_quality(q_user, interactions)}

    def _state(self, role, widths, quality, peak):
        ratio = np.divide(quality, peak, out=np.ones_like(quality), where=peak > 0)
        width = 2.0 * (widths - self.s_min) / max(self.ref_dim - self.s_min, 1) - 1.0
        return np.column_stack([self.frequency[role], width, np.clip(2.0 * ratio - 1.0, -1.0, 1.0)])

    def _to_width(self, actions):
        return self.s_min + (np.asarray(actions) + 1.0) / 2.0 * (self.ref_dim - self.s_min)

    def _to_action(self, widths):
        return 2.0 * (np.asarray(widths) - self.s_min) / max(self.ref_dim - self.s_min, 1) - 1.0

    def _agent(self, seed):
        c = self.config
        return TD3Agent(seed, hidden=c["ciess_hidden"], actor_lr=c["ciess_actor_lr"], critic_lr=c["ciess_critic_lr"],
                        tau=c["ciess_tau"], gamma=c["ciess_gamma"], policy_delay=c["ciess_policy_delay"],
                        policy_noise=c["ciess_policy_noise"], noise_clip=c["ciess_noise_clip"],
                        batch_size=c["ciess_batch_size"], buffer_size=c["ciess_buffer_size"])

    def _choose(self, agent, state, rng):
        c = self.config
        proposed = self._to_width(agent.act(state))

        def score(candidates):
            return np.stack([agent.value(state, self._to_action(w)) for w in candidates])

        return explore(proposed, score, rng, self.s_min, self.ref_dim, steps=c["ciess_walk_steps"],
                       radius=c["ciess_walk_radius"], sigma=c["ciess_explore_sigma"])

    def search(self, train_data, valid_data, show_progress=False):
        """The CIESS search; returns widths per role that fit the budget and fills ``self.plan``."""
        c = self.config
        start = time()
        interactions = train_data._dataset.inter_matrix(form="csr")
        counts = {"user": np.asarray(interactions.sum(1)).ravel(), "item": np.asarray(interactions.sum(0)).ravel()}
        self.frequency = {r: _scaled(np.log1p(counts[r])) for r in self.roles}
        full = {r: np.full(self.sizes[r], self.ref_dim, dtype=np.int64) for r in self.roles}
        full_bytes = full_plan_bytes(self.sizes, self.dims)
        self.eval_collector.data_collect(train_data)
        if c["train_neg_sample_args"].get("dynamic", False):
            train_data.get_model(self.model)

        self.apply_widths(full)
        for epoch in range(c["ciess_pretrain_epochs"]):
            loss = self._train_epoch(train_data, epoch, show_progress=show_progress)
            self.logger.info(set_color("CIESS pre-train", "pink") + f" epoch {epoch}: loss {np.sum(loss):.4f}")
        pretrained = self._snapshot()
        peak = self._qualities(valid_data, interactions, show_progress)
        self.logger.info(set_color("CIESS peak quality", "pink") + f": user {peak['user'].mean():.4f}")

        rng = np.random.default_rng(c["seed"])
        agents = {r: self._agent(c["seed"] + k) for k, r in enumerate(self.roles)}
        batches = _endless(train_data)
        history, best, best_any = [], None, None
        step_id = 0
        for episode in range(c["ciess_episodes"]):
            self._restore(pretrained)
            widths, quality = full, peak
            states = {r: self._state(r, widths[r], quality[r], peak[r]) for r in self.roles}
            for step in range(c["ciess_steps"]):
                widths = {r: self._choose(agents[r], states[r], rng) for r in self.roles}
                if not c["ciess_warm_start"]:
                    self._restore(self.initial_state)
                self.apply_widths(widths)
                self._train_epoch(_Batches(batches, c["ciess_step_batches"]), step_id, show_progress=show_progress)
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
                record["bytes"] = self.plan_bytes(widths)
                record["kept"] = record["bytes"] / full_bytes
                history.append(record)
                self._log_step(record, step_id)
                if best_any is None or record["quality"] > best_any[0]["quality"]:
                    best_any = (record, widths)
                if record["bytes"] <= self.max_bytes and (best is None or record["quality"] > best[0]["quality"]):
                    best = (record, widths)
                step_id += 1

        shrunk = best is None
        chosen, widths = best if best is not None else best_any
        widths = fit_to_budget(widths, self.dims, self.ref_dim, self.max_bytes, self.s_min)
        if c["ciess_fill_budget"]:
            widths = grow_to_budget(widths, self.dims, self.ref_dim, self.max_bytes)
        if c["ciess_rank_by_frequency"]:
            widths = rank_by_frequency(widths, counts)
        if self.projection:
            widths = to_mixed(widths, self.dims, self.ref_dim, self.max_bytes, self.s_min, grow=c["ciess_fill_budget"])
        stored = self.final_bytes(widths)
        self.plan.arrays.update({f"{r}_widths": widths[r].astype(np.int16) for r in self.roles})
        self.plan.meta.update({
            "searched": True, "budget": budget_fraction(c), "max_bytes": self.max_bytes, "stored_bytes": stored,
            "kept": stored / full_bytes, "chosen_step": {"episode": chosen["episode"], "step": chosen["step"]},
            "shrunk_to_budget": shrunk, "chosen_kept": chosen["kept"], "peak_quality": float(peak["user"].mean()),
            "search_s": time() - start, "history": history,
            "final_widths": {r: _spread(widths[r]) for r in self.roles},
        })
        self.logger.info(set_color("CIESS plan", "pink") + f": episode {chosen['episode']} step {chosen['step']}"
                         f"{' shrunk to the budget' if shrunk else ''}, kept {stored / full_bytes:.4f} "
                         f"of the full bytes (budget {budget_fraction(c)}), search {time() - start:.1f}s")
        return widths

    def _log_step(self, record, step_id):
        widths = ", ".join(f"{r} {record[f'{r}_mean_width']:.2f}" for r in self.roles)
        rewards = ", ".join(f"{r} {record[f'{r}_reward']:.4f}" for r in self.roles)
        self.logger.info(set_color("CIESS", "pink") + f" episode {record['episode']} step {record['step']}: "
                         f"mean width {widths}; kept {record['kept']:.4f}; reward {rewards}; "
                         f"quality {record['quality']:.4f}")
        if self.tensorboard is not None:
            for key in ("quality", "kept", *[f"{r}_mean_width" for r in self.roles],
                        *[f"{r}_reward" for r in self.roles]):
                self.tensorboard.add_scalar(f"CIESS/{key}", record[key], step_id)
