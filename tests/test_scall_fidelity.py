"""SCALL paper mode against the authors' procedure, element by element, on small inputs written out by hand.

Each expected value is computed here from the authors' code as it reads (``Engine.py``, ``Action.py``,
``Config.py``, ``State.py``, ``Buffer.py``, ``ActorCritic.py``, ``dataset/ImplicitCF.py``), not taken
from the plugin, so a drift in the plugin fails the test.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import recbole_lightemb  # noqa: F401
from recbole_lightemb.config import plugin_defaults
from recbole_lightemb.scall.agent import SACAgent
from recbole_lightemb.scall.planner import ScallPlanner, reward_of, settled
from recbole_lightemb.scall.settings import MODE_VALUES, check_scall_config, scall_settings
from recbole_lightemb.scall.state import AuthorsState, authors_profile
from recbole_lightemb.scall.widths import (action_widths, alpha_from_action, fit_to_budget, loop_to_budget,
                                           raw_side_widths, sampled_shape, side_widths)
from recbole_lightemb.stream.segments import SegmentSplit, segment_bounds, split_segments


def config(**extra):
    """Every ``scall_*`` key at its default (paper mode), a small agent, and ``extra``."""
    values = {key: value for key, value in plugin_defaults().items() if key.startswith("scall_")}
    values.update({"embedding_size": 16, "seed": 0, "emb_budget": None, "stream": True, "scall_mean_width": 4,
                   "scall_hidden": 32, "scall_pool_groups": 8})
    values.update(extra)
    return values


# --- the reward: fresh fitness / the previous segment's first block, rescaled linearly (Engine.step) ---

@pytest.mark.parametrize("fitness,first_block,low,high", [
    (0.095, 0.1, 0.9, 1.1), (0.05, 0.1, 0.9, 1.1), (0.13, 0.1, 0.9, 1.1), (0.095, 0.1, 0.7, 1.2)])
def test_reward_is_the_linear_rescale_of_the_ratio_unbounded(fitness, first_block, low, high):
    ratio = fitness / first_block
    expected = 10 * ((ratio - low) / (high - low))  # Engine.step, no squashing
    settings = scall_settings(config(scall_reward_range=[low, high]))
    assert reward_of(ratio, settings) == pytest.approx(expected)
    if fitness == 0.05:
        assert reward_of(ratio, settings) == pytest.approx(-20.0)  # far below -1: nothing saturates
    fast = scall_settings(config(scall_mode="fast"))
    assert reward_of(ratio, fast) == pytest.approx(np.tanh(10 * (ratio - 1)))


def test_fitness_is_the_mean_of_recall_and_ndcg_at_20():
    result = {"recall@20": 0.2, "ndcg@20": 0.1, "mrr@20": 0.9}
    assert ScallPlanner(None, config()).fitness(result) == pytest.approx(0.15)  # Evaluator.process_ranking_metrics
    assert ScallPlanner(None, config(scall_mode="fast", valid_metric="MRR@20")).fitness(result) == 0.9
    with pytest.raises(ValueError, match="scall_fitness='recall_ndcg'.*metrics=\\['Recall', 'MRR'\\]"):
        check_scall_config(config(metrics=["Recall", "MRR"]))


# --- α: linear 0.1 + 29.9·a (Action.get_sizes with Config's MIN/MAX_ALPHA) ---

@pytest.mark.parametrize("a", [0.0, 0.25, 0.5, 1.0])
def test_alpha_is_mapped_linearly_onto_the_familys_range(a):
    settings = scall_settings(config())
    assert settings["scall_alpha_map"] == "linear" and settings["scall_alpha_range"] == [0.1, 30.0]
    assert alpha_from_action(a, settings["scall_alpha_range"], "linear") == pytest.approx(a * (30 - 0.1) + 0.1)
    assert alpha_from_action(0.5, [0.1, 30], "geometric") == pytest.approx(0.1 * 300 ** 0.5)  # fast mode's
    assert scall_settings(config(scall_distribution="pareto"))["scall_alpha_range"] == [30.0, 100.0]


# --- widths: the mean of 100 sorted normalised draws, clipped and rescaled, never over budget ---

def test_shape_is_the_mean_of_100_sorted_normalised_power_law_draws():
    n, a = 30, 0.7
    draws = np.random.default_rng(5)
    by_hand = np.mean([np.sort(v)[::-1] / v.sum() for v in (draws.power(a, n) for _ in range(100))], axis=0)
    assert np.allclose(sampled_shape(n, "power", a, np.random.default_rng(5)), by_hand)


def authors_loop(p, budget, s_min, s_max):
    """``Action.get_sizes`` with ``correct=True``, before its ``np.round``."""
    sizes = np.maximum(s_min, p * budget)
    while sizes.max() > s_max or sizes.min() < s_min:
        sizes = np.clip(sizes, s_min, s_max)
        sizes = sizes / sizes.sum() * budget
    return sizes


def test_final_widths_follow_the_authors_clip_and_rescale_loop_rounded_never_over_budget():
    n, budget, s_min, s_max = 40, 200, 1, 16
    p = sampled_shape(n, "power", 0.3, np.random.default_rng(1))
    theirs = authors_loop(p, budget, s_min, s_max)
    assert np.allclose(loop_to_budget(p, budget, s_min, s_max), theirs)
    assert theirs.max() < s_max == fit_to_budget(p, budget, s_min, s_max).max()  # fast mode's limit differs
    widths = side_widths(n, budget, "power", 0.3, s_min, s_max, p, rescale="loop")
    assert widths.sum() == budget and np.all(np.abs(widths - theirs) < 1) and np.all(np.diff(widths) <= 0)
    # α = 0.1: the floor at s_min lifts the tail within bounds, so their loop never rescales and overshoots
    n, budget = 300, 2400
    p = sampled_shape(n, "power", 0.1, np.random.default_rng(0))
    assert authors_loop(p, budget, 1, 256).sum() > 1.05 * budget
    assert side_widths(n, budget, "power", 0.1, 1, 256, p, rescale="loop").sum() <= budget


def test_search_widths_are_the_authors_unrescaled_ones():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    # Action.get_sizes with correct=False: round(max(MIN, p * ρ·budget)), capped only by the table's width
    assert raw_side_widths(p, 0.25 * 80, 1, 8).tolist() == [8, 6, 3, 1]
    seen = np.array([False, True, True, True, True])
    planned = action_widths([0.25, 0.5, 0.5], np.arange(5), np.arange(5), seen, seen, 80, "power", [0.1, 30],
                            1, 8, "linear", np.random.default_rng(0), correct=False)
    shape = sampled_shape(4, "power", 15.05, np.random.default_rng(0))
    assert planned.user_widths[1:][::-1].tolist() == raw_side_widths(shape, 20.0, 1, 8).tolist()


# --- frequency: the current segment's training rows only (ImplicitCF.user_freqs) ---

def test_frequency_counts_the_current_segments_training_rows_only():
    # segment 0: user 1 rates 6 times; segment 1: user 1 is absent, user 2 rates 5 times (and user 3 once, tested)
    users = np.array([1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3])
    items = np.array([1, 2, 3, 4, 5, 1, 2, 1, 3, 4, 5, 1])
    times = np.arange(users.size, dtype=float)
    order, bounds = segment_bounds(users, items, times, "stream_segments", 2)
    second = list(split_segments(users, items, order, bounds, 4, 6, train_ratio=0.99, reservoir=0.0))[1]
    assert second.user_segment_freq.tolist() == [0, 0, 5, 0]  # user 1 is seen but counts 0
    assert second.user_freq.tolist() == [0, 6, 5, 0]          # the history the fast mode counts
    planner = ScallPlanner(None, config())
    segment = SimpleNamespace(index=1, split=second, users_seen=2, items_seen=5)
    widths = planner._widths([0.5, 0.0, 0.5], segment).user_widths
    assert widths[2] > widths[1]  # the user active now is the widest, whoever was active before
    fast = ScallPlanner(None, config(scall_mode="fast"))
    history_widths = fast._widths([0.5, 0.0, 0.5], segment).user_widths
    assert history_widths[1] >= history_widths[2]  # fast mode: the user active before stays the widest


# --- state (State.py, STATE = 0) ---

def test_profile_pools_ceil_windows_and_zeroes_the_empty_ones():
    # [5, 3, 3, 0] min-max -> [1, .6, .6, 0], windows of ceil(4/3) = 2: [1, .6], [.6, 0], []
    assert authors_profile(np.array([3, 0, 5, 3]), 3).tolist() == pytest.approx([0.8, 0.3, 0.0])
    assert authors_profile(np.array([2, 2]), 3).tolist() == [1.0, 1.0, 0.0]  # all equal: ones


def test_state_holds_the_authors_fields_and_updates_on_their_events():
    state = AuthorsState(dim=2, groups=3, s_min=1, s_max=16)
    user_freq, item_freq = np.array([0, 3, 0, 5, 3]), np.array([0, 2, 2])
    seen_u, seen_i = np.array([False, True, True, True, True]), np.array([False, True, True])
    state.new_segment(user_freq, item_freq, seen_u, seen_i, budget=60)
    state.after_training((np.array([0.1, 0.2]), np.array([0.3, 0.4])))
    share = 4 / 6
    assert state.vector().tolist() == pytest.approx(
        [0.8, 0.3, 0.0, 1.0, 1.0, 0.0, 0.5, share, 0.1, 0.2, 0.3, 0.4, 0.0, 0.0])  # reward 0.5 before any step
    state.after_step(0.25, 0.4, 0.1, 0.97, (np.zeros(2), np.ones(2)))
    # size spread: ρ (max p - min p) · budget / (s_max - s_min), the reward unscaled
    assert state.vector()[6:].tolist() == pytest.approx([0.97, share, 0, 0, 1, 1, 0.25 * 0.4 * 60 / 15,
                                                         0.75 * 0.1 * 60 / 15])
    state.new_segment(user_freq, item_freq, seen_u, seen_i, budget=60)  # init_dataset: ρ := the user share
    assert state.vector()[-2:].tolist() == pytest.approx([share * 0.4 * 4, (1 - share) * 0.1 * 4])


# --- the agent (Buffer.py, ActorCritic.py) ---

def test_agent_updates_as_the_authors_buffer_and_networks_do():
    agent = SACAgent(6, seed=0, hidden=16, batch_size=None, nets="authors")
    actor, critic = agent.actor_opt.param_groups[0], agent.critic_opt.param_groups[0]
    assert (actor["lr"], actor["weight_decay"], critic["lr"], critic["weight_decay"]) == (2e-4, 1e-4, 3e-4, 1e-4)
    assert all(torch.all(m.bias == 0) for m in agent.actor.modules() if isinstance(m, torch.nn.Linear))
    assert agent.actor.log_std_min == -20 and agent.actor_clip == 1.0
    sizes = []
    agent.replay.sample = lambda n, replace=True: sizes.append((n, replace)) or [torch.zeros(n, 6), torch.zeros(n, 3),
                                                                                 torch.zeros(n), torch.zeros(n, 6)]
    for k in range(14):
        agent.replay.items.append(None)
        agent.learn()
    # one transition per update while the buffer holds at most 12, then 8, without replacement
    assert sizes == [(1, False)] * 12 + [(8, False)] * 2


def test_settling_is_the_authors_consecutive_rule_after_at_least_11_steps():
    paper, fast = scall_settings(config()), scall_settings(config(scall_mode="fast"))
    creeping = list(np.linspace(0.2, 0.5, 7)) + [0.5 + 0.009 * k for k in range(5)]  # steps of 0.009, span 0.036
    assert settled(creeping, paper) and not settled(creeping, fast)
    assert not settled(creeping[:10], paper)  # Engine: step > 10


# --- a search step: a fresh model on the segment just trained, at lr 0.03 (Engine.update_policy, step) ---

class FakeModel(torch.nn.Module):
    def __init__(self, users=6, items=5, dim=16):
        super().__init__()
        from recbole_lightemb.modules import VariableWidthEmbedding

        self.user = VariableWidthEmbedding(users, dim, np.r_[0, np.full(users - 1, 4)])
        self.user.role = "user"
        self.item = VariableWidthEmbedding(items, dim, np.r_[0, np.full(items - 1, 4)])
        self.item.role = "item"


def fake_segment(index, seed):
    rng = np.random.default_rng(seed)
    user_freq, item_freq = np.r_[0, rng.integers(1, 9, 5)], np.r_[0, rng.integers(1, 9, 4)]
    split = SegmentSplit(segment=index, train=None, valid=None, test=None, history=None, reservoir=None,
                         seen_users=user_freq > 0, seen_items=item_freq > 0, user_freq=user_freq, item_freq=item_freq,
                         user_segment_freq=user_freq, item_segment_freq=item_freq)
    return SimpleNamespace(index=index, split=split, users_seen=5, items_seen=4)


class FakeSearch:
    """Warm tries on the planned segment score ``first_block``; fresh ones ``fresh_score`` and are logged."""

    def __init__(self, first_block, fresh_score):
        self.first_block, self.fresh_score, self.fresh_on, self.warm = first_block, fresh_score, [], 0
        self.tried = FakeModel()

    def __call__(self, users, items, row_bits=None):
        self.warm += 1
        return self.first_block

    def fresh(self, users, items, segment, row_bits=None):
        self.fresh_on.append(segment.index)
        return self.fresh_score


def test_the_search_rewards_fresh_tries_on_the_previous_segment_against_its_first_block():
    planner = ScallPlanner(None, config(scall_max_search_steps=60))  # a bound for the test only
    specs = [SimpleNamespace(role="user"), SimpleNamespace(role="item")]
    zero = FakeSearch(first_block=0.1, fresh_score=None)
    first = planner.plan(fake_segment(0, 0), specs, zero)
    assert zero.warm == 1 and first.meta["first_block"] == 0.1  # segment 0's first block, its widths uniform
    planner.observe(0.3, FakeModel())  # converged far above its first block: the fast mode's denominator
    search = FakeSearch(first_block=0.2, fresh_score=0.095)
    plan = planner.plan(fake_segment(1, 1), specs, search)
    steps = plan.meta["search_steps"]
    assert 11 <= steps < 60 and search.fresh_on == [0] * steps and plan.meta["search_segment"] == 0
    assert plan.meta["denominator"] == 0.1 and plan.meta["rewards"] == pytest.approx([2.5] * steps)
    assert search.warm == 1 and plan.meta["first_block"] == 0.2 == planner.first_block  # the next denominator
    assert int(plan["user_widths"].sum() + plan["item_widths"].sum()) <= plan.meta["budget_floats"]


def test_a_stream_search_trains_fresh_models_on_the_previous_segment_at_lr_003(tmp_path, monkeypatch):
    from test_stream import tiny_config, write_tiny

    from recbole_lightemb import run_recbole_lightemb
    from recbole_lightemb.stream import runner

    tries, original = [], runner.WidthSearch._try

    def logged(self, model, segment):
        tries.append({"fresh": model is not self.model, "planned": self.segment.index, "on": segment.index,
                      "lr": self.lr, "batches": self.steps(segment),
                      "warm_equal": all(torch.equal(p, self.start[n]) for n, p in model.named_parameters())})
        return original(self, model, segment)

    monkeypatch.setattr(runner.WidthSearch, "_try", logged)
    data_path = write_tiny(tmp_path)
    result_file = tmp_path / "result.json"
    extra = {"scall_mean_width": 4, "scall_search_batches": 3, "scall_min_search_steps": 2, "scall_max_search_steps": 2,
             "scall_settle_window": 2, "scall_hidden": 32}
    run_recbole_lightemb("BPR", "tiny", config_dict=tiny_config(data_path, tmp_path, emb="scall", stream=True,
                                                                result_file=str(result_file), **extra))
    assert all(t["lr"] == 0.03 and t["batches"] == 3 for t in tries)
    for t in (t for t in tries if t["fresh"]):
        assert t["on"] == t["planned"] - 1 and not t["warm_equal"]  # from scratch, on the segment just trained
    warm = [t for t in tries if not t["fresh"]]
    assert [t["planned"] for t in warm] == [0, 1, 2] and all(t["on"] == t["planned"] and t["warm_equal"] for t in warm)
    assert sum(t["fresh"] for t in tries) == 2 * 2
    written = json.loads(result_file.read_text())
    assert written["mode"] == "paper" and written["segments"][2]["search"]["denominator"] == \
        written["segments"][1]["search"]["first_block"]


# --- the modes ---

def test_fast_mode_sets_every_element_to_the_plugins_earlier_value_and_keys_override_a_mode():
    paper, fast = scall_settings(config()), scall_settings(config(scall_mode="fast"))
    for key, (paper_value, fast_value) in MODE_VALUES.items():
        if key != "scall_alpha_range":
            assert paper[key] == paper_value and fast[key] == fast_value
    assert fast["scall_alpha_range"] == [0.1, 30] and paper["mode"] == "paper" and fast["mode"] == "fast"
    assert scall_settings(config(scall_reward="tanh"))["scall_reward"] == "tanh"
    check_scall_config(config(scall_mode="fast"))
    with pytest.raises(ValueError, match="scall_mode='slow': allowed paper, fast"):
        check_scall_config(config(scall_mode="slow"))
