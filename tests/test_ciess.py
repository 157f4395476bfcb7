"""CIESS: exploration, budget guarantee, per-user quality, TD3, and the search inside RecBole."""

import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_lightemb import Plan, run_recbole_lightemb
from recbole_lightemb.ciess.agent import TD3Agent
from recbole_lightemb.ciess.explore import explore, neighbour_probabilities, random_walk
from recbole_lightemb.ciess.quality import item_quality, ranking_quality
from recbole_lightemb.ciess.widths import (
    fit_to_budget, grow_to_budget, mixed_plan_bytes, plan_bytes, rank_by_frequency, table_widths, to_mixed)

TINY_SEARCH = {  # the paper mode (the default), cut to seconds: 1 pre-training epoch, 2 steps of 2 batches
    "emb": "ciess", "ciess_pretrain_epochs": 1, "ciess_episodes": 1, "ciess_steps": 2, "ciess_step_batches": 2,
    "ciess_updates_per_step": 2, "ciess_batch_size": 64, "ciess_hidden": 16, "epochs": 1,
    "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
}


# -- exploration ---------------------------------------------------------------------------------

def test_neighbour_probabilities_are_inverse_distance_and_in_bounds():
    neighbours, probs = neighbour_probabilities(30, 1, 64, 5)
    assert sorted(neighbours) == [25, 26, 27, 28, 29, 31, 32, 33, 34, 35]
    assert np.isclose(probs.sum(), 1)
    inv = 1 / np.abs(neighbours - 30)
    assert np.allclose(probs, inv / inv.sum())
    neighbours, probs = neighbour_probabilities(2, 1, 64, 5)
    assert set(neighbours[probs > 0]) == {1, 3, 4, 5, 6, 7}


def test_random_walk_follows_the_step_distribution_and_bounds():
    rng = np.random.default_rng(0)
    n = 60_000
    walk = random_walk(np.full(n, 3), rng, 1, 8, steps=5, radius=5)
    assert walk.shape == (6, n) and (walk[0] == 3).all()
    assert walk.min() >= 1 and walk.max() <= 8
    assert (walk[1:] != walk[:-1]).all()  # every step moves
    neighbours, probs = neighbour_probabilities(3, 1, 8, 5)
    observed = np.array([(walk[1] == w).mean() for w in neighbours])
    assert np.allclose(observed, probs, atol=0.01)


def test_explore_takes_the_critics_best_walk_width():
    rng = np.random.default_rng(1)
    proposed = np.array([10.2, 40.0, 63.7])
    widest = explore(proposed, lambda c: c.astype(float), rng, 1, 64, sigma=0.0)
    narrowest = explore(proposed, lambda c: -c.astype(float), rng, 1, 64, sigma=0.0)
    assert (widest >= np.rint(proposed)).all() and (narrowest <= np.rint(proposed)).all()
    assert (widest - np.rint(proposed) <= 25).all()
    noisy = explore(np.full(5000, 2.0), lambda c: np.zeros(c.shape), rng, 1, 64, sigma=6.0)
    assert noisy.min() == 1 and noisy.max() <= 64 and noisy.dtype == np.int64


# -- budget guarantee ----------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fit_to_budget_never_exceeds_and_shrinks_largest_first(data):
    ref = data.draw(st.sampled_from([8, 16, 64, 300]))
    dims = {"user": data.draw(st.lists(st.integers(1, ref), min_size=1, max_size=2)),
            "item": data.draw(st.lists(st.integers(1, ref), min_size=1, max_size=2))}
    dims["user"][0] = ref
    widths = {r: np.array(data.draw(st.lists(st.integers(1, ref), min_size=1, max_size=40)))
              for r in dims}
    fraction = data.draw(st.floats(0.01, 1.0))
    full = sum(len(widths[r]) * d * 4 for r in dims for d in dims[r])
    max_bytes = int(fraction * full)
    smallest = plan_bytes({r: np.ones_like(w) for r, w in widths.items()}, dims, ref)
    if smallest > max_bytes:
        with pytest.raises(ValueError, match="over the budget"):
            fit_to_budget(widths, dims, ref, max_bytes)
        return
    out = fit_to_budget(widths, dims, ref, max_bytes)
    assert plan_bytes(out, dims, ref) <= max_bytes
    before = plan_bytes(widths, dims, ref)
    for r in dims:
        assert (out[r] <= widths[r]).all() and (out[r] >= 1).all()
    if before <= max_bytes:
        assert all((out[r] == widths[r]).all() for r in dims)
        return
    shrunk = np.concatenate([out[r][out[r] < widths[r]] for r in dims])
    kept = np.concatenate(list(out.values()))
    assert kept.max() <= shrunk.min() + 1  # nobody kept more than one step above a shrunk entity


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=40), st.lists(st.integers(1, 64), min_size=1, max_size=40),
       st.floats(0.03, 1.0))
def test_grow_to_budget_spends_but_never_exceeds_and_keeps_the_order(users, items, fraction):
    dims = {"user": [64], "item": [64, 16]}
    widths = {"user": np.array(users), "item": np.array(items)}
    max_bytes = int(fraction * sum(len(widths[r]) * d * 4 for r in dims for d in dims[r]))
    out = grow_to_budget(widths, dims, 64, max_bytes)
    if plan_bytes(widths, dims, 64) > max_bytes:
        assert all((out[r] == widths[r]).all() for r in dims)
        return
    assert plan_bytes(widths, dims, 64) <= plan_bytes(out, dims, 64) <= max_bytes
    for r in dims:
        assert (out[r] >= widths[r]).all() and (out[r] <= 64).all()
    both, grown = np.concatenate([users, items]), np.concatenate([out["user"], out["item"]])
    order = np.argsort(both, kind="stable")
    assert (np.diff(grown[order]) >= 0).all()  # wider before stays at least as wide after


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 64), st.integers(0, 9)), min_size=1, max_size=40))
def test_rank_by_frequency_keeps_the_widths_and_bytes_and_follows_frequency(rows):
    widths, counts = (np.array(column) for column in zip(*rows))
    dims = {"item": [64, 16]}
    out = rank_by_frequency({"item": widths}, {"item": counts})["item"]
    assert sorted(out) == sorted(widths)
    assert plan_bytes({"item": out}, dims, 64) == plan_bytes({"item": widths}, dims, 64)
    order = np.lexsort((np.arange(len(counts)), counts))  # by frequency, ties by id
    assert (np.diff(out[order]) >= 0).all()  # more frequent: never narrower


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=40), st.lists(st.integers(1, 64), min_size=1, max_size=40),
       st.floats(0.1, 1.0), st.booleans())
def test_to_mixed_gives_power_of_two_groups_within_the_budget_in_the_same_order(users, items, fraction, grow):
    dims = {"user": [64], "item": [64, 16]}
    widths = {"user": np.array(users), "item": np.array(items)}
    max_bytes = int(fraction * sum(len(widths[r]) * d * 4 for r in dims for d in dims[r]))
    try:
        out = to_mixed(widths, dims, 64, max_bytes, grow=grow)
    except ValueError as error:
        assert "over the budget" in str(error)
        assert mixed_plan_bytes({r: np.ones_like(w) for r, w in widths.items()}, dims, 64) > max_bytes
        return
    assert mixed_plan_bytes(out, dims, 64) <= max_bytes
    both, mixed = np.concatenate([users, items]), np.concatenate([out["user"], out["item"]])
    assert set(mixed) <= {1, 2, 4, 8, 16, 32, 64}
    assert (np.diff(mixed[np.argsort(both, kind="stable")]) >= 0).all()  # wider before stays at least as wide
    if not grow:
        assert (mixed <= both).all()


def test_table_widths_map_the_reference_scale_onto_narrower_tables():
    assert list(table_widths([1, 32, 64], 64, 64)) == [1, 32, 64]
    assert list(table_widths([1, 32, 63, 64], 8, 64)) == [1, 4, 8, 8]


# -- quality ---------------------------------------------------------------------------------------

def slow_quality(ranked, positives, ks):
    values = []
    for k in ks:
        hit = [1.0 if item in positives else 0.0 for item in ranked[:k]]
        values.append(sum(hit) / len(positives))
        idcg = sum(1 / np.log2(j + 2) for j in range(min(len(positives), k)))
        values.append(sum(h / np.log2(j + 2) for j, h in enumerate(hit)) / idcg)
    return np.mean(values)


def test_ranking_quality_matches_a_slow_reference():
    rng = np.random.default_rng(2)
    n_users, n_items, ks = 30, 50, [5, 10, 20]
    scores = torch.from_numpy(rng.random((n_users, n_items)))
    positives = [set(rng.choice(n_items, rng.integers(1, 15), replace=False)) for _ in range(n_users)]
    mask = torch.zeros(n_users, n_items, dtype=torch.bool)
    for u, pos in enumerate(positives):
        mask[u, list(pos)] = True
    top = scores.topk(20, dim=1).indices
    fast = ranking_quality(mask.gather(1, top), mask.sum(1), ks).numpy()
    slow = [slow_quality(top[u].tolist(), positives[u], ks) for u in range(n_users)]
    assert np.allclose(fast, slow, atol=1e-6)


def test_item_quality_is_the_mean_over_its_users():
    rng = np.random.default_rng(3)
    matrix = sp.random(20, 15, density=0.2, random_state=3, format="csr")
    user_q = rng.random(20)
    fast = item_quality(user_q, matrix)
    dense = matrix.toarray() > 0
    for i in range(15):
        assert np.isclose(fast[i], user_q[dense[:, i]].mean() if dense[:, i].any() else 0.0)


def test_user_quality_agrees_with_recboles_evaluator(tiny_config):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model

    from recbole_lightemb import Config, swap_embeddings
    from recbole_lightemb.ciess.quality import user_quality
    from recbole_lightemb.ciess.trainer import CIESSTrainer

    config = Config(model="BPR", config_dict={**tiny_config, **TINY_SEARCH, "emb_budget": 0.5})
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = get_model("BPR")(config, train._dataset)
    swap_embeddings(model, train._dataset, config)
    trainer = CIESSTrainer(config, model)
    trainer.eval_collector.data_collect(train)
    result = trainer.evaluate(valid, load_best_model=False)
    q = user_quality(trainer, valid, [10])
    evaluated = np.unique(valid._dataset.inter_feat[config["USER_ID_FIELD"]].numpy())
    assert (q[np.setdiff1d(np.arange(len(q)), evaluated)] == 0).all()
    expected = (result["recall@10"] + result["ndcg@10"]) / 2
    assert abs(q[evaluated].mean() - expected) < 1e-3


# -- TD3 -------------------------------------------------------------------------------------------

def test_td3_learns_a_one_step_bandit_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    agent = TD3Agent(seed=0, hidden=32, actor_lr=3e-3, batch_size=128, buffer_size=5000)
    rng = np.random.default_rng(0)
    states = rng.uniform(-1, 1, (2000, 3))
    actions = rng.uniform(-1, 1, 2000)
    rewards = -(actions - 0.5) ** 2  # best action 0.5 whatever the state
    agent.remember(states, actions, rewards, states, done=True)
    agent.learn(500)
    assert torch.equal(before, torch.get_rng_state())
    assert abs(agent.act(states[:200]).mean() - 0.5) < 0.15
    other = TD3Agent(seed=0, hidden=32)
    assert np.allclose(other.act(states[:5]), TD3Agent(seed=0, hidden=32).act(states[:5]))


# -- inside RecBole --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["paper", "fast"])
def test_search_on_ml100k_meets_the_budget_and_saves_the_plan(mode, ml100k_config):
    config = {**ml100k_config, **TINY_SEARCH, "emb_budget": 0.2, "ciess_mode": mode,
              "user_inter_num_interval": "[200,inf)"}
    result = run_recbole_lightemb(model="BPR", dataset="ml-100k", config_dict=config)
    assert result["plan"]["mode"] == mode
    report = result["compression"]
    assert report["stored_floats"] <= 0.2 * report["full_floats"]
    assert report["stored_bytes"] <= 0.2 * report["full_bytes"]
    assert len(result["plan"]["history"]) == 2 and result["plan"]["searched"]
    plan = Plan.load(result["plan"]["file"], method="ciess")
    assert plan.meta["searched"] and plan.meta["stored_bytes"] == report["stored_bytes"]
    tables = {t["name"]: t for t in report["tables"]}
    assert plan["user_widths"].sum() == tables["user_embedding"]["stored_floats"]
    assert plan["item_widths"].sum() == tables["item_embedding"]["stored_floats"]
    spread = plan.meta["final_widths"]["item"]
    assert (spread["min"], spread["median"], spread["max"]) == (plan["item_widths"].min(),
                                                                np.median(plan["item_widths"]), plan["item_widths"].max())


def test_saved_plan_skips_the_search_and_reproduces_the_widths(tiny_config):
    first = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **TINY_SEARCH, "ciess_budget": 0.15})
    assert first["compression"]["ratio"] <= 0.15
    path = first["plan"]["file"]
    assert os.path.isfile(path)
    second = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **TINY_SEARCH, "emb_plan": path,
                                                            "ciess_episodes": 50})
    assert second["compression"]["tables"] == first["compression"]["tables"]
    saved = Plan.load(second["plan"]["file"], method="ciess")  # the reused plan is saved again, unchanged
    assert np.array_equal(saved["item_widths"], Plan.load(path)["item_widths"])
    with pytest.raises(ValueError, match="over emb_budget"):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **TINY_SEARCH, "emb_plan": path,
                                                        "emb_budget": 0.05})


@pytest.mark.parametrize("model", ["LightGCN", "NeuMF"])
def test_search_works_with_graph_and_multi_table_models(model, tiny_config):
    result = run_recbole_lightemb(model=model, config_dict={**tiny_config, **TINY_SEARCH, "emb_budget": 0.3})
    report = result["compression"]
    assert report["stored_bytes"] <= 0.3 * report["full_bytes"]
    plan = Plan.load(result["plan"]["file"])
    for table in report["tables"]:
        widths = table_widths(plan[f"{table['role']}_widths"], table["dim"], plan.meta["ref_dim"])
        assert widths.sum() == table["stored_floats"]
    assert len(report["tables"]) == (4 if model == "NeuMF" else 2)


@pytest.mark.parametrize("bad, match", [
    ({"ciess_steps": 0}, "ciess_steps=0"),
    ({"ciess_tau": 1.5}, "ciess_tau=1.5"),
    ({"ciess_warm_start": "maybe"}, "ciess_warm_start"),
    ({"ciess_mode": "authors"}, "ciess_mode='authors': allowed paper, fast"),
    ({"ciess_search_scale": 0.0}, "ciess_search_scale=0.0"),
    ({"ciess_step_batch_size": 0}, "ciess_step_batch_size=0"),
    ({"ciess_grad_clip": -1.0}, "ciess_grad_clip=-1.0"),
    ({"ciess_fill_budget": 2}, "ciess_fill_budget"),
    ({"ciess_rank_by_frequency": "maybe"}, "ciess_rank_by_frequency"),
    ({"ciess_quality_ks": []}, "ciess_quality_ks"),
    ({"ciess_projection": "yes"}, "ciess_projection='yes'"),
    ({"ciess_projection": True, "ciess_packed_training": False}, "ciess_packed_training=False"),
    ({"emb_budget": 0.2, "ciess_budget": 0.1}, "disagree"),
    ({"emb_budget": None}, "needs emb_budget"),
    ({"emb_budget": 1.5}, "emb_budget=1.5"),
    ({"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "mode": "uni100"}}, "mode"),
])
def test_bad_config_fails_before_training(bad, match, tiny_config):
    config = {**tiny_config, **TINY_SEARCH, "emb_budget": 0.2, **bad}
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict=config)


def test_an_interrupted_search_leaves_no_plan_behind(tiny_config, monkeypatch):
    from recbole_lightemb.ciess.trainer import CIESSTrainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(CIESSTrainer, "search", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **TINY_SEARCH, "emb_budget": 0.3})
    saved = tiny_config["checkpoint_dir"]
    assert not [f for f in os.listdir(saved) if f.endswith(".plan.npz")] if os.path.isdir(saved) else True


def test_after_the_search_the_tables_train_packed_within_the_budget(tiny_config):
    runs = {packed: run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **TINY_SEARCH, "emb_budget": 0.3,
                                                                   "ciess_packed_training": packed, "epochs": 2})
            for packed in (True, False)}
    assert runs[True]["test_result"] == pytest.approx(runs[False]["test_result"])  # the same training, packed
    packed, masked = runs[True]["compression"], runs[False]["compression"]
    assert packed["stored_bytes"] == masked["stored_bytes"] <= 0.3 * packed["full_bytes"]
    assert packed["training"]["ratio"] <= 0.3 * 1.05 < 1 < masked["training"]["ratio"]
    # the search trained masked full-width tables: the run's peak is the search's, measured, for both
    for report in (packed, masked):
        assert report["search_training"]["ratio"] > 1
        assert report["training_ratio"] == max(report["training"]["ratio"], report["search_training"]["ratio"])
    assert packed["search_training"]["optimizer_bytes"] == packed["full_bytes"] * 2  # Adam's two moments, n x d


def test_search_works_on_a_table_with_a_kept_mask_row(tiny_config):
    result = run_recbole_lightemb(model="BERT4Rec", config_dict={**tiny_config, **TINY_SEARCH, "emb_budget": 0.3,
                                                                 "train_neg_sample_args": None})
    assert result["compression"]["tables"][0]["role"] == "item" and result["test_result"]["recall@10"] >= 0


def test_projection_trains_grouped_tables_within_the_budget_and_reloads(tiny_config):
    from recbole_lightemb import load_data_and_model
    from recbole_lightemb.modules.mixed import MixedDimEmbedding

    config = {**tiny_config, **TINY_SEARCH, "emb_budget": 0.3, "ciess_projection": True, "epochs": 2}
    result = run_recbole_lightemb(model="BPR", config_dict=config)
    report = result["compression"]
    assert report["stored_bytes"] <= 0.3 * report["full_bytes"] and report["training"]["ratio"] <= 0.3 * 1.05
    plan = Plan.load(result["plan"]["file"], method="ciess")
    assert plan.meta["projection"] and set(np.unique(plan["item_widths"])) <= {1, 2, 4, 8, 16, 32, 64}
    _, model, _, _, _, _ = load_data_and_model(result["plan"]["file"].removesuffix(".plan.npz") + ".pth",
                                               data_path=tiny_config["data_path"])
    tables = [m for m in model.modules() if isinstance(m, MixedDimEmbedding)]
    assert len(tables) == 2 and all(t.projections for t in tables)  # narrow groups learned their projections
    assert any(not torch.equal(p, torch.eye(*p.shape)) for t in tables for p in t.projections)
    reused = run_recbole_lightemb(model="BPR", config_dict={**config, "emb_plan": result["plan"]["file"],
                                                            "ciess_episodes": 50})
    assert reused["compression"]["tables"] == report["tables"]  # the saved groups, no search
    with pytest.raises(ValueError, match="ciess_projection=False: the reused plan was made with ciess_projection=True"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "emb_plan": result["plan"]["file"],
                                                        "ciess_projection": False})
