"""SCALL: widths under the budget, rank assignment, the fixed-length state, the agent, the planner."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import recbole_lightemb  # noqa: F401
from recbole_lightemb.scall.agent import SACAgent
from recbole_lightemb.config import plugin_defaults
from recbole_lightemb.scall.planner import ScallPlanner, pair_budget, row_precision, values_budget
from recbole_lightemb.scall.settings import SEARCH_KEYS, check_scall_config
from recbole_lightemb.scall.state import build_state, pooled_profile, state_size
from recbole_lightemb.scall.widths import (DISTRIBUTIONS, action_widths, order_statistic_shape, plan_widths,
                                           rank_assign, ranked_bits, raw_side_widths, side_widths, split_budget)
from recbole_lightemb.stream.segments import SegmentSplit


@settings(max_examples=300, deadline=None)
@given(
    n_users=st.integers(0, 3000), n_items=st.integers(1, 3000),
    mean_width=st.floats(0.5, 64), s_min=st.integers(1, 4), s_max=st.integers(4, 64),
    action=st.tuples(*[st.floats(0, 1)] * 3), distribution=st.sampled_from(DISTRIBUTIONS), seed=st.integers(0, 99),
)
def test_widths_never_exceed_the_budget(n_users, n_items, mean_width, s_min, s_max, action, distribution, seed):
    rng = np.random.default_rng(seed)
    seen_users = np.r_[False, rng.random(n_users + 5) < 0.8]
    seen_items = np.r_[False, rng.random(n_items + 5) < 0.8]
    n_seen = int(seen_users.sum() + seen_items.sum())
    budget = int(mean_width * n_seen)
    freq_u = rng.integers(0, 50, seen_users.size) * seen_users
    freq_i = rng.integers(0, 50, seen_items.size) * seen_items
    if budget < n_seen * s_min:
        with pytest.raises(ValueError, match="scall_min_width"):
            plan_widths(action, freq_u, freq_i, seen_users, seen_items, budget, distribution, (0.1, 30), s_min, s_max)
        return
    users, items = plan_widths(action, freq_u, freq_i, seen_users, seen_items, budget, distribution, (0.1, 30),
                               s_min, s_max)
    total = int(users.sum() + items.sum())
    assert total <= budget
    assert total == min(budget, n_seen * s_max)  # the leftover is handed out, not wasted
    for widths, seen in ((users, seen_users), (items, seen_items)):
        assert np.all(widths[~seen] == 0)
        assert np.all((widths[seen] >= s_min) & (widths[seen] <= s_max))


def test_bits_by_frequency_follow_the_ranking_the_widths_follow():
    """Head 20 % of the seen entities at the next bits up, torso 30 % at emb_bits, tail 50 % one down; a rank's
    cost is its bits over emb_bits; unseen rows (which store nothing) at emb_bits."""
    freq = np.array([0, 9, 3, 7, 0, 5, 1, 8, 2, 6, 4, 0])
    seen = freq > 0
    rows, weights = ranked_bits(freq, seen, 4)
    assert weights.tolist() == [2.0] * 2 + [1.0] * 3 + [0.5] * 4  # 9 seen: 2 head, 3 torso, 4 tail
    assert rows[[1, 7]].tolist() == [8, 8] and rows[[3, 9, 5]].tolist() == [4, 4, 4]
    assert rows[[10, 2, 8, 6]].tolist() == [2] * 4 and rows[~seen].tolist() == [4] * 3
    assert np.array_equal(rows, rank_assign(freq, seen, weights * 4) + 4 * ~seen)  # the widths' own ranking


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 2000), mean_width=st.floats(1, 64), a=st.floats(0.05, 30),
       distribution=st.sampled_from(DISTRIBUTIONS), rescale=st.sampled_from(["loop", "limit"]),
       bits=st.sampled_from([2, 4, 8]))
def test_widths_at_bits_by_frequency_cost_at_most_the_budget_and_spend_it(n, mean_width, a, distribution,
                                                                           rescale, bits):
    """Each width costs its row's bits: ``Σ (b_e / emb_bits) · s_e`` stays within the budget of emb_bits values
    and leaves less than the dearest row's unit unspent (unless every row is at its widest)."""
    _, weights = ranked_bits(np.arange(n, 0, -1), np.ones(n, bool), bits)
    budget = int(np.ceil(mean_width * weights.sum()))
    widths = side_widths(n, budget, distribution, a, 1, 64, rescale=rescale, weights=weights)
    cost = float(weights @ widths)
    assert cost <= budget and np.all(np.diff(widths) <= 0) and widths.min() >= 1
    assert budget - cost < weights.max() or widths.min() == 64


@pytest.mark.parametrize("distribution", ["power", "flat"])
def test_weights_of_one_are_scalls_own_sum_of_widths(distribution):
    """The fidelity tests pin the unweighted rescales to the authors' formulas; weights of one give the very same
    widths, the searches' unrescaled tries included (a flat shape's x.5 widths round the same way)."""
    rng = np.random.default_rng(3)
    freq_u, freq_i = rng.integers(0, 40, 300), rng.integers(0, 40, 200)
    seen_u, seen_i = freq_u > 0, freq_i > 0
    ones = (np.ones(seen_u.sum()), np.ones(seen_i.sum()))
    for rescale, correct, budget in (("loop", True, 2000), ("limit", True, 2000), ("loop", False, 2000),
                                     ("loop", False, 1243)):
        plain, weighted = (action_widths([0.6, 0.3, 0.7], freq_u, freq_i, seen_u, seen_i, budget, distribution,
                                         (0.1, 30), 1, 32, correct=correct, rescale=rescale, weights=w)
                           for w in ((None, None), ones))
        assert np.array_equal(plain.user_widths, weighted.user_widths)
        assert np.array_equal(plain.item_widths, weighted.item_widths)
    p = np.full(10, 0.1)  # 2.5 each: rounds to 2 both ways
    assert raw_side_widths(p, 25, 1, 8, np.ones(10)).tolist() == raw_side_widths(p, 25, 1, 8).tolist() == [2] * 10


def test_split_budget_weighs_each_side_by_its_rows_bits():
    """Ten users at 8 bits (cost 2 each) cannot take less than 20 of a 4-bit budget at width 1; a side's budget is
    whole values, so two sides of 3.5 each need 8, not 7, and 7 is refused naming the minimum width."""
    users, items = split_budget(100, 0.0, 10, 10, 1, 8, (np.full(10, 2.0), np.full(10, 0.5)))
    assert (users, items) == (60, 40)  # the items take at most 10 · 8 · 0.5 = 40
    _, costs = ranked_bits(np.array([0, 6, 5, 4]), np.array([False, True, True, True]), 4)
    assert costs.tolist() == [2.0, 1.0, 0.5]
    users, items = split_budget(8, 0.5, 3, 3, 1, 8, (costs, costs))
    assert min(users, items) >= 3.5
    with pytest.raises(ValueError, match="scall_min_width=1"):
        split_budget(7, 0.5, 3, 3, 1, 8, (costs, costs))


def test_a_budget_at_bits_by_frequency_sets_aside_a_scale_only_for_low_bit_rows():
    """At emb_bits 8 the head fifth is float32: no scale and no slack for it; every row's 2-bit class is paid."""
    seen_users, seen_items = np.r_[False, np.ones(50, bool)], np.r_[False, np.ones(30, bool)]
    freqs = (np.r_[0, np.arange(50, 0, -1)], np.r_[0, np.arange(30, 0, -1)])
    precision = row_precision(freqs, seen_users, seen_items, 8, "frequency")
    assert [int((rows[seen] == 32).sum()) for (rows, _), seen in zip(precision, (seen_users, seen_items))] == [10, 6]
    classes = (-(-51 // 4) + 15) + (-(-31 // 4) + 15)
    assert values_budget(1000, seen_users, seen_items, 8, precision, 16) == (4000 - 64 * 5 - classes) * 8 // 8
    assert values_budget(1000, seen_users, seen_items, 8, None, 16) == (4000 - 80 * 5) * 8 // 8


def test_packed_rows_of_width_zero_everywhere_read_as_zeros():
    from recbole_lightemb.modules.packed import PackedWidthEmbedding

    table = PackedWidthEmbedding(4, 8, np.zeros(4, dtype=int))
    assert table.values.numel() == 0 and not table(torch.tensor([[1, 3], [0, 2]])).any()
    assert table.full_table().shape == (4, 8)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), mean_width=st.floats(1, 32), a=st.floats(0.1, 30),
       distribution=st.sampled_from(DISTRIBUTIONS))
def test_side_widths_are_widest_first_and_exact(n, mean_width, a, distribution):
    budget = int(mean_width * n)
    widths = side_widths(n, budget, distribution, a, 1, 32)
    assert widths.sum() == min(budget, 32 * n)
    assert np.all(np.diff(widths) <= 0)


def test_order_statistic_shape_matches_monte_carlo():
    rng = np.random.default_rng(0)
    for a in (0.3, 1.0, 5.0):
        draws = np.sort(rng.power(a, (20000, 40)), axis=1)[:, ::-1].mean(0)
        assert np.allclose(order_statistic_shape(40, "power", a), draws / draws.sum(), atol=2e-3)
    draws = np.sort(rng.pareto(3.0, (40000, 40)), axis=1)[:, ::-1].mean(0)
    assert np.allclose(order_statistic_shape(40, "pareto", 3.0), draws / draws.sum(), atol=1e-3)
    # truncated normal of scale 1 on [0, 1]: Blom's approximation
    samples = np.abs(rng.normal(0, 1, 2_000_000))
    kept = np.sort(samples[samples <= 1][: 20000 * 40].reshape(20000, 40), axis=1)[:, ::-1].mean(0)
    assert np.allclose(order_statistic_shape(40, "truncnorm", 1.0), kept / kept.sum(), atol=2e-3)


def test_alpha_shapes_skew_and_rank_assignment_gives_the_most_active_the_widest_row():
    skewed = side_widths(100, 800, "power", 0.1, 1, 64)
    flat = side_widths(100, 800, "power", 30.0, 1, 64)
    assert skewed.max() - skewed.min() > flat.max() - flat.min()
    freq = np.array([0, 5, 50, 1, 50, 0, 7])
    seen = freq > 0
    widths = rank_assign(freq, seen, np.array([9, 8, 3, 2, 1]))
    assert widths.tolist() == [0, 2, 9, 1, 8, 0, 3]  # ties by id: entity 2 before entity 4


def test_split_budget_keeps_both_sides_feasible():
    assert split_budget(100, 0.5, 10, 10, 1, 8) == (50, 50)
    users, items = split_budget(100, 0.99, 10, 10, 1, 8)  # users cannot take more than 10·8
    assert users == 80 and items == 20
    users, items = split_budget(100, 0.0, 10, 10, 1, 8)
    assert users == 20 and items == 80


def test_state_has_fixed_length_and_pools_sorted_profiles():
    dim = 8
    for n in (3, 1000, 100_000):
        freq = np.arange(n + 1)
        seen = freq > 0
        state = build_state(freq, freq, seen, seen, 0.5, np.ones(dim), np.zeros(dim), seen * 4, seen * 2, 16)
        assert state.shape == (state_size(16, dim),)
    profile = pooled_profile(np.arange(1000), 10)
    assert profile[0] > profile[-1] and profile.min() >= 0 and profile.max() <= 1
    assert np.all(np.diff(profile) < 0)


def test_agent_acts_in_the_unit_cube_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    agent = SACAgent(10, seed=7, hidden=32, batch_size=8)
    state = np.linspace(-1, 1, 10).astype(np.float32)
    actions = [agent.act(state) for _ in range(20)]
    for i in range(12):
        agent.replay.add(state, actions[i], float(actions[i][0]), state)
    for _ in range(3):
        agent.learn()
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)
    assert all(a.shape == (3,) and np.all((a > 0) & (a < 1)) for a in actions)
    twin = SACAgent(10, seed=7, hidden=32, batch_size=8)
    assert np.allclose(twin.act(state), actions[0])


def test_recency_replay_favours_recent_transitions():
    agent = SACAgent(2, seed=0, hidden=8, batch_size=4000)
    for i in range(10):
        agent.replay.add(np.zeros(2), np.zeros(3), float(i), np.zeros(2))
    rewards = agent.replay.sample(4000)[2].numpy()
    counts = np.bincount(rewards.astype(int), minlength=10)
    assert counts[9] > 5 * counts[0]  # probability ∝ recency rank: 10 vs 1


def scall_config(**extra):
    """Every ``scall_*`` key at its default (paper mode), a small agent, and ``extra``."""
    config = {key: value for key, value in plugin_defaults().items() if key.startswith("scall_")}
    config.update({"embedding_size": 16, "seed": 0, "emb_budget": None, "stream": True, "scall_mean_width": 4,
                   "scall_search_batches": 10, "scall_hidden": 64, "scall_pool_groups": 8})
    config.update(extra)
    return config


def fast_config(**extra):
    """Fast mode, as the plugin's earlier variant ran (tries on this segment, warm-started)."""
    return scall_config(**{"scall_mode": "fast", "scall_max_search_steps": 40, "scall_batch_size": 16, **extra})


def fake_segment(index, n_users=50, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    user_freq = np.r_[0, rng.integers(1, 20, n_users)]
    item_freq = np.r_[0, rng.integers(1, 20, n_items)]
    split = SegmentSplit(segment=index, train=None, valid=None, test=None, history=None, reservoir=None,
                         seen_users=user_freq > 0, seen_items=item_freq > 0, user_freq=user_freq, item_freq=item_freq,
                         user_segment_freq=user_freq // 2, item_segment_freq=item_freq // 2)
    return SimpleNamespace(index=index, split=split, users_seen=n_users, items_seen=n_items)


class FakeModel(torch.nn.Module):
    """Only what ``observe`` reads: tables with a role and widths."""

    def __init__(self, dim):
        super().__init__()
        from recbole_lightemb.modules import VariableWidthEmbedding

        self.user = VariableWidthEmbedding(51, dim, np.r_[0, np.full(50, 4)])
        self.user.role = "user"
        self.item = VariableWidthEmbedding(31, dim, np.r_[0, np.full(30, 4)])
        self.item.role = "item"


def test_planner_searches_until_rho_settles_and_stays_in_budget():
    config = fast_config()
    planner = ScallPlanner(None, config)
    specs = [SimpleNamespace(role="user"), SimpleNamespace(role="item")]
    first = planner.plan(fake_segment(0), specs)
    assert first.meta["search_steps"] == 0
    assert len(set(first["user_widths"][1:]) | set(first["item_widths"][1:])) == 1  # segment 0: uniform
    planner.observe(0.1, FakeModel(16))
    tried = []

    def search(users, items, row_bits=None):
        tried.append(int(users.sum() + items.sum()))
        return 0.1 * (1 + 0.5 * users.sum() / (users.sum() + items.sum()))  # more floats to users is better

    segment = fake_segment(1)
    plan = planner.plan(segment, specs, search)
    budget = pair_budget(config, 80)
    assert 10 <= plan.meta["search_steps"] == len(tried) <= 40
    assert all(t <= budget for t in tried)
    assert int(plan["user_widths"].sum() + plan["item_widths"].sum()) <= budget
    rhos = plan.meta["rho_history"]
    if len(tried) < 40:  # stopped because ρ settled
        assert max(rhos[-5:]) - min(rhos[-5:]) <= 0.01


@pytest.mark.parametrize("baseline", ["previous", "uniform"])
def test_search_rewards_are_measured_against_the_chosen_baseline(baseline):
    planner = ScallPlanner(None, fast_config(scall_reward_baseline=baseline, scall_max_search_steps=12))
    specs = [SimpleNamespace(role="user"), SimpleNamespace(role="item")]
    planner.plan(fake_segment(0), specs)
    planner.observe(0.2, FakeModel(16))  # the previous segment converged at 0.2 on its own validation data
    tried = []

    def search(users, items, row_bits=None):  # this segment is harder: everything scores near 0.1, more to users is better
        tried.append((users[1:][users[1:] > 0], items[1:][items[1:] > 0]))
        return 0.1 * (1 + 0.5 * users.sum() / (users.sum() + items.sum()))

    plan = planner.plan(fake_segment(1), specs, search)
    fitness, rewards = plan.meta["fitness"], plan.meta["rewards"]
    if baseline == "uniform":
        widths = np.concatenate(tried[0])
        assert len(tried) == len(fitness) + 1 and widths.min() == widths.max()  # one uniform try first
        reference = plan.meta["baseline_fitness"]
        assert reference == pytest.approx(search(*(np.r_[0, w] for w in tried[0])))
    else:
        assert len(tried) == len(fitness) and plan.meta["baseline_fitness"] is None
        reference = 0.2
    assert plan.meta["previous_fitness"] == 0.2
    assert rewards == pytest.approx([np.tanh(10.0 * (f / reference - 1)) for f in fitness])
    if baseline == "previous":
        assert max(rewards) < -0.99  # a harder segment saturates every reward: no signal between actions
    else:
        assert max(rewards) - min(rewards) > 0.1


@pytest.mark.parametrize("uniform_score", [1.0, 0.0])
def test_the_best_choice_keeps_the_best_try_and_uniform_unless_beaten(uniform_score):
    config = fast_config(scall_reward_baseline="uniform", scall_choice="best", scall_max_search_steps=12)
    planner = ScallPlanner(None, config)
    specs = [SimpleNamespace(role="user"), SimpleNamespace(role="item")]
    planner.plan(fake_segment(0), specs)
    planner.observe(0.2, FakeModel(16))
    scores = []

    def search(users, items, row_bits=None):  # uniform scores uniform_score; a searched shape scores its user share
        share = users.sum() / (users.sum() + items.sum())
        scores.append((uniform_score if len(set(users[1:]) | set(items[1:])) == 1 else share, users, items))
        return scores[-1][0]

    plan = planner.plan(fake_segment(1), specs, search)
    best = max(range(len(scores)), key=lambda k: scores[k][0])
    assert np.array_equal(plan["user_widths"], scores[best][1]) and np.array_equal(plan["item_widths"], scores[best][2])
    if uniform_score == 1.0:  # above every user share
        assert plan.meta["chosen"] == "uniform" and plan.meta["action"] is None
    else:
        assert plan.meta["chosen"] == f"step {best - 1}" and len(plan.meta["action"]) == 3


def test_the_best_unrescaled_try_is_rescaled_to_the_budget_before_it_is_planned():
    """With ``scall_search_correct: False`` a try's widths are ``Action.py``'s unrescaled ones and may exceed the
    budget; the best one becomes the plan only rescaled, on the segment's own entities."""
    config = fast_config(scall_choice="best", scall_search_correct=False, scall_max_search_steps=6)
    planner = ScallPlanner(None, config)
    specs = [SimpleNamespace(role="user"), SimpleNamespace(role="item")]
    planner.plan(fake_segment(0), specs)
    planner.observe(0.2, FakeModel(16))
    tried = []

    def search(users, items, row_bits=None):  # the widest try scores best
        tried.append(int(users.sum() + items.sum()))
        return float(tried[-1])

    plan = planner.plan(fake_segment(1), specs, search)
    assert max(tried) > pair_budget(config, 80)  # some unrescaled try was over the budget
    assert int(plan["user_widths"].sum() + plan["item_widths"].sum()) <= pair_budget(config, 80)


def search_defaults():
    """The search keys at the plugin's defaults: with ``scall_action`` set, anything else would be ignored."""
    defaults = plugin_defaults()
    return {key: defaults[key] for key in SEARCH_KEYS}


def test_a_fixed_action_gives_its_shape_without_a_search():
    config = scall_config(**search_defaults(), scall_mode="fast", scall_action=[0.8, 0.9, 0.1])
    planner = ScallPlanner(None, config)
    specs = [SimpleNamespace(role="user"), SimpleNamespace(role="item")]
    planner.plan(fake_segment(0), specs)
    planner.observe(0.2, FakeModel(16))

    def search(users, items, row_bits=None):
        raise AssertionError("a fixed action must not search")

    segment = fake_segment(1)
    plan = planner.plan(segment, specs, search)
    split = segment.split
    users, items = plan_widths([0.8, 0.9, 0.1], split.user_freq, split.item_freq, split.seen_users, split.seen_items,
                               pair_budget(config, 80), "power", [0.1, 30], 1, 16)
    assert np.array_equal(plan["user_widths"], users) and np.array_equal(plan["item_widths"], items)
    assert plan.meta["chosen"] == "fixed" and plan.meta["search_steps"] == 0
    assert len(set(users[1:])) > 1  # a shaped plan, not segment 0's uniform widths
    assert int(users.sum() + items.sum()) <= pair_budget(config, 80)


def test_plans_save_and_reload(tmp_path):
    planner = ScallPlanner(None, scall_config())
    plan = planner.plan(fake_segment(0), [SimpleNamespace(role="user"), SimpleNamespace(role="item")])
    path = plan.save(str(tmp_path / "seg0.plan.npz"))
    from recbole_lightemb import Plan

    loaded = Plan.load(path, method="scall")
    assert np.array_equal(loaded["user_widths"], plan["user_widths"])
    assert loaded.meta["budget_floats"] == plan.meta["budget_floats"]


@pytest.mark.parametrize("updates,match", [
    ({"scall_mean_width": None}, "needs a budget"),
    ({"scall_budget_mb": 2.0}, "only one of"),
    ({"scall_mean_width": 0}, "scall_mean_width=0"),
    ({"scall_mean_width": 99}, "scall_mean_width=99.*<= 16"),
    ({"scall_distribution": "zipf"}, "scall_distribution='zipf'.*power"),
    ({"scall_alpha_range": [3, 1]}, "scall_alpha_range"),
    ({"scall_min_width": 0}, "scall_min_width=0"),
    ({"scall_max_search_steps": 3}, "scall_max_search_steps=3"),
    ({"scall_search_batches": 0}, "scall_search_batches=0"),
    ({"scall_reward_baseline": "best"}, "scall_reward_baseline='best'.*first_block, previous, uniform"),
    ({"scall_mode": "exact"}, "scall_mode='exact': allowed paper, fast"),
    ({"scall_reward": "log"}, "scall_reward='log': allowed linear, tanh"),
    ({"scall_frequency": "all"}, "scall_frequency='all': allowed segment, history"),
    ({"scall_reward_range": [1.1, 0.9]}, r"scall_reward_range=\[1.1, 0.9\]"),
    ({"scall_batch_size": 0}, "scall_batch_size=0"),
    ({"scall_search_lr": -1}, "scall_search_lr=-1"),
    ({"scall_search_init": "warm"}, "scall_search_segment='previous'.*needs scall_search_init: fresh"),
    ({"scall_choice": "mean"}, "scall_choice='mean'.*policy, best"),
    ({"scall_action": [0.5, 1.5, 0.5]}, r"scall_action=\[0.5, 1.5, 0.5\].*\[ρ, α_U, α_I\] in \[0, 1\]"),
    ({"scall_action": [0.5, 0.5]}, "scall_action=.*expected"),
])
def test_bad_scall_keys_fail_naming_key_and_value(updates, match):
    with pytest.raises(ValueError, match=match):
        check_scall_config(scall_config(**updates))


@pytest.mark.parametrize("updates,match", [
    ({"scall_choice": "best"}, "scall_choice='best' has no search.*scall_action.*leave it at 'policy'"),
    ({"scall_hidden": 64}, "scall_hidden=64 has no search.*leave it at 512"),
    ({"stream": False}, r"scall_action=\[0.5, 0.5, 0.5\] needs stream: True"),
])
def test_a_fixed_action_refuses_what_it_would_ignore(updates, match):
    check_scall_config(scall_config(**search_defaults(), scall_action=[0.5, 0.5, 0.5]))  # fine as it is
    with pytest.raises(ValueError, match=match):
        check_scall_config(scall_config(**{**search_defaults(), **updates}, scall_action=[0.5, 0.5, 0.5]))


def test_budget_in_megabytes_is_fixed():
    config = scall_config(scall_mean_width=None, scall_budget_mb=1.0)
    assert pair_budget(config, 10) == pair_budget(config, 10_000) == 2 ** 18


@pytest.mark.parametrize("mode", ["paper", "fast"])
def test_the_flat_family_gives_each_side_one_width_split_as_rho(mode):
    config = scall_config(**search_defaults(), scall_mode=mode, scall_distribution="flat", scall_action=[0.3, 0.9, 0.1])
    check_scall_config(config)
    planner = ScallPlanner(None, config)
    specs = [SimpleNamespace(role="user"), SimpleNamespace(role="item")]
    planner.plan(fake_segment(0), specs)
    planner.observe(0.2, FakeModel(16))
    plan = planner.plan(fake_segment(1), specs)
    budget = pair_budget(config, 80)
    users, items = plan["user_widths"][1:], plan["item_widths"][1:]
    assert users.max() - users.min() <= 1 and items.max() - items.min() <= 1  # uniform per side, leftover +1
    assert users.sum() == int(0.3 * budget) and users.sum() + items.sum() == budget
    assert users.mean() < items.mean()  # 30 % of the floats to 50 users, 70 % to 30 items
    assert plan.meta["user_share"] == pytest.approx(users.sum() / budget)
