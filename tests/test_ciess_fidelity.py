"""CIESS paper mode against the authors' procedure, element by element (issue 32).

Each test computes what the authors' public code (yorkequ98/CIESS: ``CIESS.py``, ``RecSysEnv.py``,
``Buffer.py``) does on a small fixed input — written here from that code's behaviour — and checks
the plugin does the same. One probed paper-mode search and one fast-mode search on the tiny
dataset serve most tests: every step gets a width fixed by the test, so the budget, the rewards
and the final choice are known in advance.
"""

import os

import numpy as np
import pytest
import torch
from tiny_data import write_tiny_dataset

from recbole_lightemb import Config, run_recbole_lightemb
from recbole_lightemb.ciess import trainer as trainer_module
from recbole_lightemb.ciess.agent import TD3Agent
from recbole_lightemb.ciess.explore import explore
from recbole_lightemb.ciess.keys import FAST, departures
from recbole_lightemb.ciess.trainer import CIESSTrainer, _Batches, _endless
from recbole_lightemb.registry import get_method

BUDGET = 0.25
WIDTHS = [64, 15, 8, 12, 40, 4]
"""The width every user and item gets at search step k (2 episodes x 3 steps). BPR, d = 64: a row costs
4·w bytes plus a 1-byte width, so w ≤ 15 keeps (4w + 1)/256 ≤ 0.25 and 64, 40 are over the budget."""
SCALE, LR_MIN = 0.01, 0.02  # 20 batches a step, lr decay every 2, a floor the path reaches
SEARCH = {
    "emb": "ciess", "emb_budget": BUDGET, "ciess_pretrain_epochs": 1, "ciess_episodes": 2, "ciess_steps": 3,
    "ciess_search_scale": SCALE, "ciess_step_lr_min": LR_MIN, "ciess_batch_size": 64, "ciess_hidden": 16,
    "epochs": 1, "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
}


def tiny(folder):
    write_tiny_dataset(folder)
    return {"data_path": str(folder), "dataset": "tiny", "train_batch_size": 256, "eval_batch_size": 4096,
            "checkpoint_dir": str(folder / "saved"), "show_progress": False,
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "user_inter_num_interval": "[3,inf)",
            "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"}}


class Probe:
    """Records what the search does: noise, qualities, transitions, TD3 updates and every step's training."""

    def __init__(self, widths):
        self.widths, self.noise, self.qualities, self.transitions, self.updates, self.steps = widths, [], [], [], [], []

    def install(self, mp):
        probe = self
        original = {"explore": trainer_module.explore, "qualities": CIESSTrainer._qualities,
                    "epoch": CIESSTrainer._train_epoch, "search": CIESSTrainer.search,
                    "remember": TD3Agent.remember, "learn": TD3Agent.learn}

        def fixed_explore(proposed, score, rng, *args, noise=None, **kwargs):
            probe.noise.append(noise)
            if probe.widths is None:
                return original["explore"](proposed, score, rng, *args, noise=noise, **kwargs)
            return np.full(len(proposed), probe.widths[(len(probe.noise) - 1) // 2], dtype=np.int64)

        def qualities(self, *args):
            out = original["qualities"](self, *args)
            probe.qualities.append({r: q.copy() for r, q in out.items()})
            return out

        def train_epoch(self, data, *args, **kwargs):
            if not isinstance(data, _Batches):
                return original["epoch"](self, data, *args, **kwargs)
            step = {"lr": [], "batch": [], "fresh_optimizer": not self.optimizer.state,
                    "start": self.model.user_embedding.table.detach().clone()}
            probe.steps.append(step)

            class Recorded(_Batches):
                def __iter__(inner):
                    for batch in data:
                        step["lr"].append(self.optimizer.param_groups[0]["lr"])
                        step["batch"].append(len(batch))
                        yield batch
                    step["end"] = self.model.user_embedding.table.detach().clone()

            return original["epoch"](self, Recorded(data.source, data.n), *args, **kwargs)

        def search(self, train_data, *args, **kwargs):
            probe.trainer, probe.train_rows = self, len(train_data._dataset)
            probe.counts = train_data._dataset.inter_matrix(form="csr")
            return original["search"](self, train_data, *args, **kwargs)

        def remember(self, states, actions, rewards, next_states, done):
            probe.transitions.append((states.copy(), actions.copy(), rewards.copy(), next_states.copy(), done))
            return original["remember"](self, states, actions, rewards, next_states, done)

        def learn(self, n_updates):
            probe.updates.append(n_updates)
            return original["learn"](self, n_updates)

        mp.setattr(trainer_module, "explore", fixed_explore)
        for cls, name, fn in ((CIESSTrainer, "_qualities", qualities), (CIESSTrainer, "_train_epoch", train_epoch),
                              (CIESSTrainer, "search", search), (TD3Agent, "remember", remember),
                              (TD3Agent, "learn", learn)):
            mp.setattr(cls, name, fn)


def probed_run(folder, settings, widths):
    probe = Probe(widths)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        probe.install(mp)
        probe.result = run_recbole_lightemb(model="BPR", config_dict={**tiny(folder), **SEARCH, **settings})
    probe.folder = folder
    return probe


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    return probed_run(tmp_path_factory.mktemp("paper"), {}, WIDTHS)


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    return probed_run(tmp_path_factory.mktemp("fast"), {"ciess_mode": "fast", "ciess_search_scale": 1.0}, None)


def roles_of(probe):
    """The transitions of each step as ``{role: (s, a, r, s2, done)}``; the agents remember items, then users."""
    return [dict(zip(("item", "user"), probe.transitions[k:k + 2])) for k in range(0, len(probe.transitions), 2)]


# -- exploration noise ---------------------------------------------------------------------------------------

def test_exploration_noise_is_one_scalar_per_step_shared_by_users_and_items(paper):
    """CIESS.py: ``noise = np.random.normal(0, 6)`` once per loop, passed to the user and the item actions."""
    seed = paper.trainer.config["seed"]
    expected = np.random.default_rng(seed).normal(0.0, 6.0, size=len(WIDTHS))  # the search's own generator
    noise = paper.noise
    assert len(noise) == 2 * len(WIDTHS) and all(np.ndim(n) == 0 for n in noise)
    assert np.allclose(noise[0::2], expected) and np.allclose(noise[1::2], expected)


def test_scalar_noise_moves_every_entity_by_the_same_amount():
    start = np.array([3.0, 10.0, 40.0, 63.0])
    keep_start = lambda c: -np.arange(len(c))[:, None] * np.ones(c.shape)  # the critic prefers the walk's start
    out = explore(start, keep_start, np.random.default_rng(0), 1, 64, noise=2.4)
    assert list(out) == [5, 12, 42, 64]  # round(s + 2.4), clipped to 64


def test_fast_mode_draws_noise_per_entity(fast):
    assert fast.noise and all(n is None for n in fast.noise)


# -- reward and state ----------------------------------------------------------------------------------------

def test_reward_is_quality_minus_lambda_times_the_squared_width_share(paper):
    """RecSysEnv.compute_reward: ``r_e = q_e − λ·((s_e − s_min)/s_max)²``, λ = 0.01, s_min = 1, s_max = 64."""
    for k, step in enumerate(roles_of(paper)):
        quality = paper.qualities[k + 1]  # call 0 measures the peak after pre-training
        for role, (_, actions, rewards, _, _) in step.items():
            expected = quality[role] - 0.01 * ((WIDTHS[k] - 1) / 64) ** 2
            assert np.allclose(rewards, expected)
            assert np.allclose(actions, 2 * (WIDTHS[k] - 1) / 63 - 1)


def test_state_is_minmax_frequency_width_and_quality_zero_at_episode_start(paper):
    """RecSysEnv.get_state: (f − f_min)/(f_max − f_min)·2 − 1 over the training counts, (s − s_min)/(s_max − s_min)·2
    − 1, and quality 2·q/max(q_peak, 1e-5) − 1 clipped; a new episode's environment starts with quality 0."""
    matrix = paper.counts
    counts = {"user": np.asarray(matrix.sum(1)).ravel(), "item": np.asarray(matrix.sum(0)).ravel()}
    peak = paper.qualities[0]
    steps = roles_of(paper)
    for k, step in enumerate(steps):
        for role, (states, _, _, next_states, done) in step.items():
            c = counts[role].astype(float)
            seen = c[c > 0]
            assert np.allclose(states[:, 0], (c - seen.min()) / (seen.max() - seen.min()) * 2 - 1)
            if k % 3 == 0:  # an episode's first step: full widths, quality 0
                assert np.allclose(states[:, 1], 1.0) and np.allclose(states[:, 2], 0.0)
            else:
                assert np.allclose(states, steps[k - 1][role][3])
            ratio = np.clip(paper.qualities[k + 1][role] / np.maximum(peak[role], 1e-5) * 2 - 1, -1, 1)
            assert np.allclose(next_states[:, 2], ratio)
            assert np.allclose(next_states[:, 1], 2 * (WIDTHS[k] - 1) / 63 - 1)
            assert done == (k % 3 == 2)


def test_fast_mode_state_uses_log_frequency_and_starts_at_the_peak(fast):
    states = roles_of(fast)[0]["user"][0]
    counts = np.log1p(np.asarray(fast.counts.sum(1)).ravel())
    assert np.allclose(states[:, 0], (counts - counts.min()) / (counts.max() - counts.min()) * 2 - 1)
    assert np.allclose(states[:, 2], 1.0)


# -- the training of a search step ---------------------------------------------------------------------------

def test_each_step_trains_a_fresh_model_on_the_authors_schedule(paper):
    """RecSysEnv.step: a new model and Adam(lr 0.03) per step; ``train_n_batches``: lr ← max(floor, 0.9·lr) after
    every k-th batch. At scale 0.01: 2000 → 20 batches, k 200 → 2; batches of 10 000 × rows / 500 104 samples."""
    n, every = round(2000 * SCALE), round(200 * SCALE)
    batch = round(10_000 * paper.train_rows / 500_104)
    assert len(paper.steps) == len(WIDTHS)
    for k, step in enumerate(paper.steps):
        assert step["lr"] == pytest.approx([max(LR_MIN, 0.03 * 0.9 ** (i // every)) for i in range(n)])
        assert step["fresh_optimizer"] and max(step["batch"]) == batch
        if k:  # a new random init: neither the last step's trained model nor a previous start
            assert not torch.equal(step["start"], paper.steps[k - 1]["end"])
            assert not any(torch.equal(step["start"], other["start"]) for other in paper.steps[:k])
    meta = paper.result["plan"]["step"]
    assert (meta["batches"], meta["batch_size"], meta["fresh_model"]) == (n, batch, True)
    assert meta["passes"] == pytest.approx(n * batch / paper.train_rows)


def test_fast_mode_steps_go_on_from_the_previous_one(fast):
    config = fast.trainer.config
    for k, step in enumerate(fast.steps):
        assert len(step["lr"]) == 10 and set(step["lr"]) == {config["learning_rate"]}
        assert max(step["batch"]) == config["train_batch_size"]
        if k % 3:  # within an episode each step starts where the last one ended
            assert torch.equal(step["start"], fast.steps[k - 1]["end"])


def test_pretraining_runs_until_validation_stops_improving(tiny_config, monkeypatch):
    """CIESS.pretrain_recsys: rounds of batches (lr decay carried across rounds) until the mean quality has not
    improved for 2 rounds (MAX_PATIENCE); the best round's model is kept."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model

    from recbole_lightemb import swap_embeddings

    config = Config(model="BPR", config_dict={**tiny_config, **SEARCH, "ciess_pretrain_epochs": None,
                                              "ciess_pretrain_batches": 4, "ciess_step_lr_every": 2})
    get_method("ciess")(config).check_config()
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = get_model("BPR")(config, train._dataset)
    swap_embeddings(model, train._dataset, config)
    trainer = CIESSTrainer(config, model)
    scores, tables, lrs = iter([0.1, 0.2, 0.15, 0.25, 0.2, 0.22, 0.9]), [], []

    def scripted_quality(t, *args):
        tables.append(t.model.user_embedding.table.detach().clone())
        return np.full(3, next(scores))

    monkeypatch.setattr(trainer_module, "user_quality", scripted_quality)
    original = CIESSTrainer._train_epoch

    def recording(self, data, *args, **kwargs):
        lrs.append(self.optimizer.param_groups[0]["lr"])  # the lr each round starts at
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(CIESSTrainer, "_train_epoch", recording)
    rounds = trainer._pretrain(train, _endless(trainer.step_loader(train)), valid, False)
    assert rounds == 6  # better at rounds 1, 2 and 4; 5 and 6 are not: stop (the 0.9 never comes)
    assert torch.equal(trainer.model.user_embedding.table, tables[3])
    assert lrs == pytest.approx([max(LR_MIN, 0.03 * 0.9 ** (2 * r)) for r in range(6)])  # 4 batches: 2 decays a round


# -- TD3 ------------------------------------------------------------------------------------------------------

def test_one_td3_update_per_step(paper, fast):
    """CIESS.train_rl: ``buffer.learn`` once per side per step (the fast mode: 5)."""
    assert paper.updates == [1] * (2 * len(WIDTHS))
    assert set(fast.updates) == {5}


@pytest.mark.parametrize("authors", [True, False])
def test_td3_update_clips_gradients_and_smooths_targets_with_one_scalar(authors, monkeypatch):
    """Buffer.update: ``clip_grad_norm_(…, 0.01)`` on critic and actor; ``torch.normal(0, 2.0, size=(1,))`` added
    to every target action; the actor (and its target) every 2nd update, the critics' target after each."""
    clips, shapes = [], []
    clip, randn = torch.nn.utils.clip_grad_norm_, torch.randn
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda p, max_norm: clips.append(max_norm) or clip(p, max_norm))
    monkeypatch.setattr(torch, "randn", lambda shape, **kw: shapes.append(tuple(shape)) or randn(shape, **kw))
    agent = TD3Agent(seed=0, hidden=8, batch_size=32, grad_clip=0.01 if authors else None,
                     scalar_target_noise=authors, authors=authors)
    rng = np.random.default_rng(0)
    agent.remember(rng.uniform(-1, 1, (50, 3)), rng.uniform(-1, 1, 50), rng.random(50), rng.uniform(-1, 1, (50, 3)),
                   done=False)
    target = [p.clone() for p in agent.critics_target.parameters()]
    agent.learn(1)
    moved = any(not torch.equal(a, b) for a, b in zip(target, agent.critics_target.parameters()))
    assert moved == authors  # the authors' critic target follows after every update, not only the actor's
    agent.learn(1)
    assert agent.updates == 2
    assert clips == ([0.01, 0.01, 0.01] if authors else [])  # critic, critic, actor
    assert shapes == ([(1,), (1,)] if authors else [(32, 1), (32, 1)])


# -- the result ----------------------------------------------------------------------------------------------

def test_the_plan_is_the_best_steps_widths_as_found_top3_retrained(paper):
    """main: the steps under the target, by mean user quality, best first; the top 3 retrained and the best kept.
    Widths as found: no fill, cap or re-ranking, and never a step over the budget."""
    history = paper.result["plan"]["history"]
    quality = [float(q["user"].mean()) for q in paper.qualities[1:]]
    assert [h["quality"] for h in history] == pytest.approx(quality)
    eligible = [k for k, w in enumerate(WIDTHS) if (4 * w + 1) / 256 <= BUDGET]
    assert eligible == [1, 2, 3, 5]
    top = sorted(eligible, key=lambda k: -quality[k])[:3]
    retrained = paper.result["plan"]["retrained"]
    assert [(r["episode"], r["step"]) for r in retrained] == [divmod(k, 3) for k in top]
    kept = max(range(3), key=lambda i: (retrained[i]["best_valid_score"], -i))
    assert paper.result["plan"]["retrain_kept"] == kept
    assert paper.result["best_valid_score"] == pytest.approx(retrained[kept]["best_valid_score"])
    from recbole_lightemb import Plan

    plan = Plan.load(paper.result["plan"]["file"], method="ciess")
    for role in ("user", "item"):
        assert set(np.unique(plan[f"{role}_widths"])) == {WIDTHS[top[kept]]}  # as found
    report = paper.result["compression"]
    assert report["stored_bytes"] <= BUDGET * report["full_bytes"]
    saved = os.listdir(paper.folder / "saved")
    assert not [f for f in saved if ".top" in f]  # only the kept candidate's checkpoint stays
    assert os.path.basename(paper.result["plan"]["file"]).removesuffix(".plan.npz") + ".pth" in saved


def test_the_plan_records_the_mode_and_the_search_scale(paper, fast):
    assert (paper.result["plan"]["mode"], paper.result["plan"]["search_scale"]) == ("paper", SCALE)
    assert paper.result["plan"]["departures"] == {  # what SEARCH sets, the search scale aside
        "ciess_batch_size": 64, "ciess_episodes": 2, "ciess_hidden": 16, "ciess_pretrain_epochs": 1,
        "ciess_step_lr_min": LR_MIN, "ciess_steps": 3}
    assert (fast.result["plan"]["mode"], fast.result["plan"]["search_scale"]) == ("fast", 1.0)
    assert "retrained" not in fast.result["plan"]


# -- the mode keys -------------------------------------------------------------------------------------------

def test_fast_mode_sets_the_plugins_values_for_unset_keys_only(tiny_config):
    config = Config(model="BPR", config_dict={**tiny_config, "emb": "ciess", "emb_budget": 0.2, "ciess_mode": "fast",
                                              "ciess_lambda": 0.5})
    get_method("ciess")(config).check_config()
    expected = {**FAST, "ciess_lambda": 0.5, "ciess_step_batch_size": config["train_batch_size"]}
    assert {key: config[key] for key in expected} == expected
    assert departures(config)["ciess_lambda"] == 0.5 and departures(config)["ciess_warm_start"] is True
    paper = Config(model="BPR", config_dict={**tiny_config, "emb": "ciess", "emb_budget": 0.2})
    get_method("ciess")(paper).check_config()
    assert departures(paper) == {}
    assert (paper["ciess_episodes"], paper["ciess_steps"], paper["ciess_lambda"]) == (30, 11, 0.01)


@pytest.mark.parametrize("bad, match", [
    ({"ciess_mode": "slow"}, "ciess_mode='slow': allowed paper, fast"),
    ({"ciess_search_scale": 0}, "ciess_search_scale=0"),
    ({"ciess_search_scale": -0.25}, "ciess_search_scale=-0.25"),
    ({"ciess_search_scale": float("inf")}, "ciess_search_scale=inf"),
    ({"ciess_search_scale": float("nan")}, "ciess_search_scale=nan"),
    ({"ciess_retrain_top": 0}, "ciess_retrain_top=0"),
    ({"ciess_step_lr_decay": 1.5}, "ciess_step_lr_decay=1.5"),
    ({"ciess_noise_per_entity": "often"}, "ciess_noise_per_entity"),
])
def test_bad_mode_keys_are_refused_before_the_data_loads(bad, match, tiny_config, monkeypatch):
    import recbole_lightemb.runs as runs

    monkeypatch.setattr(runs, "create_dataset", lambda config: pytest.fail("the data was loaded"))
    with pytest.raises(ValueError, match=match.replace("[", r"\[")) as error:
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **SEARCH, **bad})
    assert "\n" not in str(error.value)
