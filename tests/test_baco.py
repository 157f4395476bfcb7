"""``emb: baco`` through RecBole: budget held in stored bytes, plans saved and reloadable."""

import logging

import numpy as np
import pytest
import torch

from recbole_lightemb import Plan, run_recbole_lightemb
from recbole_lightemb.methods.baco import split_largest
from recbole_lightemb.modules.residual import ResidualEmbedding

SEQUENTIAL = {"train_neg_sample_args": None}


@pytest.mark.parametrize("model", ["BPR", "LightGCN", "NeuMF"])
def test_baco_on_ml100k_fits_the_budget(model, ml100k_config):
    config = {**ml100k_config, "epochs": 1, "emb": "baco", "emb_budget": 0.25}
    result = run_recbole_lightemb(model=model, dataset="ml-100k", config_dict=config)
    report = result["compression"]
    assert report["ratio"] <= 0.25
    assert report["stored_bytes"] == result["plan"]["stored_bytes"]
    assert result["test_result"]["recall@10"] > 0
    plan = Plan.load(result["plan"]["file"], method="baco")
    assert plan["user_codes"].shape[1] == 2 and (plan["user_codes"][1:, 0] >= 0).all()
    assert plan["user_codes"][0].tolist() == [-1, -1]  # RecBole's padding user stores nothing
    assert plan["item_codes"].max() + 1 == plan.meta["n_item_codes"]


def test_saved_plan_is_reused_without_clustering(tiny_config, monkeypatch):
    config = {**tiny_config, "emb": "baco", "emb_budget": 0.5}
    first = run_recbole_lightemb(model="BPR", config_dict=config)
    import recbole_lightemb.methods.baco as baco

    monkeypatch.setattr(baco, "fit_codebook_budget", lambda *a, **k: pytest.fail("clustered again"))
    second = run_recbole_lightemb(model="BPR", config_dict={**config, "baco_plan": first["plan"]["file"]})
    assert second["compression"] == first["compression"]
    a, b = Plan.load(first["plan"]["file"]), Plan.load(second["plan"]["file"])
    assert np.array_equal(a["user_codes"], b["user_codes"]) and np.array_equal(a["item_codes"], b["item_codes"])


def test_a_reused_plan_fixes_the_residual_bits_and_older_plans_are_float32(tiny_config, tmp_path):
    config = {**tiny_config, "emb": "baco", "emb_budget": 0.5, "baco_residual": 2, "baco_residual_bits": 4}
    first = run_recbole_lightemb(model="BPR", config_dict=config)
    plan = Plan.load(first["plan"]["file"])
    with pytest.raises(ValueError, match="baco_residual_bits=32: the reused plan was made with baco_residual_bits=4"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "baco_residual_bits": 32,
                                                        "baco_plan": first["plan"]["file"]})
    del plan.meta["residual_bits"]  # as saved before the option existed
    older = plan.save(str(tmp_path / "older.plan.npz"))
    with pytest.raises(ValueError, match="baco_residual_bits=4: the reused plan was made with baco_residual_bits=32"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "baco_plan": older})


def test_same_seed_same_plan_and_users_average_two_rows(tiny_config):
    config = {**tiny_config, "emb": "baco", "emb_budget": 0.5, "epochs": 1}
    a = run_recbole_lightemb(model="BPR", config_dict=config)
    b = run_recbole_lightemb(model="BPR", config_dict=config)
    codes_a, codes_b = Plan.load(a["plan"]["file"]), Plan.load(b["plan"]["file"])
    assert np.array_equal(codes_a["user_codes"], codes_b["user_codes"])
    assert (codes_a["user_codes"][:, 1] >= 0).any()  # some users hold a secondary code


@pytest.mark.parametrize("bad, match", [
    ({"emb_budget": None}, "emb=baco needs emb_budget"),
    ({"baco_user_weight": "pagerank"}, "baco_user_weight='pagerank': allowed degree, CPM, sqrt, log"),
    ({"baco_n_iter": 0}, "baco_n_iter=0"),
    ({"baco_resolution": -1}, "baco_resolution=-1"),
    ({"baco_residual": -2}, "baco_residual=-2"),
    ({"baco_residual": 64}, "baco_residual=64: expected an integer in 0..63"),
    ({"baco_split": "maybe"}, "baco_split='maybe': expected True or False"),
    ({"baco_head_share": 1.0}, r"baco_head_share=1.0: expected a number in \[0, 1\)"),
    ({"baco_head_share": -0.1}, r"baco_head_share=-0.1: expected a number in \[0, 1\)"),
    ({"baco_head_share": 0.9}, "baco_head_share=0.9: its .* private rows leave fewer than 2"),
    ({"baco_residual": 4, "stream": True}, "not supported with stream=True"),
    ({"baco_residual": 4, "baco_residual_bits": 3}, "baco_residual_bits=3: allowed 2, 4, 8, 16, 32"),
    ({"baco_residual_bits": 4}, "baco_residual_bits=4 needs private rows to store: set baco_residual >= 1"),
    ({"baco_mode": "code"}, "baco_mode='code': allowed paper, stated"),
    ({"baco_budget_rule": "rows"}, "baco_budget_rule='rows': allowed bytes, authors"),
    ({"emb_budget": None, "baco_rows": 0}, "baco_rows=0: expected an integer >= 1"),
    ({"baco_rows": 30}, "baco_rows=30 and emb_budget=0.25: give one budget, not both"),
    ({"emb_budget": None, "baco_resolution": 1.0, "baco_budget_rule": "authors"},
     "baco_budget_rule='authors' needs a budget"),
    ({"baco_budget_rule": "authors", "baco_residual": 2}, "baco_residual=2 needs baco_budget_rule: bytes"),
    ({"baco_budget_rule": "authors", "stream": True}, "not supported with stream=True"),
    ({"baco_search": "maybe"}, "baco_search='maybe': expected True or False"),
    ({"baco_search": False}, "baco_search=False uses γ as given: it needs baco_resolution"),
])
def test_bad_baco_config(bad, match, tiny_config, monkeypatch):
    import recbole_lightemb.quick_start as quick_start

    if "baco_head_share" not in bad:  # (a head share too large for the budget is known once the data is)
        monkeypatch.setattr(quick_start, "start_run", lambda config: pytest.fail("data was loaded"))
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "baco", "emb_budget": 0.25, **bad})


def test_the_authors_budget_rule_allows_their_row_count_and_reports_the_honest_bytes(tiny_config):
    config = {**tiny_config, "emb": "baco", "epochs": 1, "baco_rows": 30}
    plans = {rule: run_recbole_lightemb(model="BPR", config_dict={**config, "baco_budget_rule": rule})
             for rule in ("bytes", "authors")}
    tables = {t["role"]: t for t in plans["bytes"]["compression"]["tables"]}
    d, n_users, n_items = 64, tables["user"]["entities"], tables["item"]["entities"]
    authors = (30 * d - n_users) // d  # train.py: budget = (budget * embedding_dim - num_users) // embedding_dim
    honest = (30 * d * 4 - (2 * n_users + n_items) * 4) // (d * 4)  # 30 rows' bytes less every int32 code
    for rule, result in plans.items():
        plan = result["plan"]
        assert plan["budget_rule"] == rule and plan["mode"] == "paper" and plan["row_budget"] == 30
        assert plan["within_rows"] is True
        assert plan["max_rows"] == {"authors": authors, "bytes": honest}  # both figures, whichever rule
        assert plan["rows"] == plan["n_user_codes"] + plan["n_item_codes"] <= plan["max_rows"][rule]
        assert plan["stored_bytes"] == result["compression"]["stored_bytes"]  # codes counted either way
        assert plan["within_bytes"] == (plan["stored_bytes"] <= 30 * d * 4)
    assert authors > honest  # the authors charge n_users floats; the codes cost 2·n_users + n_items int32


def test_without_the_search_gamma_is_kept_and_the_rows_only_stop_the_passes_early(tiny_config, monkeypatch, caplog):
    import recbole_lightemb.methods.baco as baco

    monkeypatch.setattr(baco, "fit_codebook_budget", lambda *a, **k: pytest.fail("searched γ"))
    config = {**tiny_config, "emb": "baco", "epochs": 1, "baco_rows": 30, "baco_budget_rule": "authors",
              "baco_resolution": 0.05, "baco_search": False}
    plan = run_recbole_lightemb(model="BPR", config_dict=config)["plan"]
    assert plan["resolution"] == 0.05 and plan["probes"] == [] and plan["within_rows"] is True
    assert plan["rows"] <= plan["max_rows"]["authors"]
    with caplog.at_level(logging.WARNING):  # the authors' procedure may end above its rows: said and recorded
        over = run_recbole_lightemb(model="BPR", config_dict={**config, "baco_resolution": 1000.0, "baco_n_iter": 1})
    assert over["plan"]["within_rows"] is False and over["plan"]["rows"] > over["plan"]["max_rows"]["authors"]
    assert any("over the" in r.getMessage() and "within_rows: False" in r.getMessage() for r in caplog.records)


def test_a_reused_plan_fixes_the_weight_mode(tiny_config):
    config = {**tiny_config, "emb": "baco", "emb_budget": 0.5, "baco_mode": "stated"}
    first = run_recbole_lightemb(model="BPR", config_dict=config)
    assert first["plan"]["mode"] == "stated"
    with pytest.raises(ValueError, match="baco_mode='paper': the reused plan was made with baco_mode='stated'"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "baco_mode": "paper",
                                                        "baco_plan": first["plan"]["file"]})


def test_the_most_interacted_entities_keep_private_rows_within_the_budget(tiny_config):
    from recbole_lightemb.methods.baco import private_head

    codes = np.array([[0, 1], [0, -1], [1, 1], [2, 0], [2, -1]])
    degrees = np.array([1, 9, 2, 8, 1])
    out, n = private_head(codes, 3, degrees, 2)  # users 1 and 3 take codes of their own; code 2 keeps user 4
    assert out[1, 0] == out[1, 1] and out[3, 0] == out[3, 1] and len({out[1, 0], out[3, 0]} | set(out[[0, 2, 4], 0])) == 5
    assert out[4, 1] == -1 and n == 5 and out.max() == 4

    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "baco", "emb_budget": 0.5,
                                                            "baco_head_share": 0.1})
    plan = Plan.load(result["plan"]["file"])
    assert plan.meta["private_users"] == 4 and result["compression"]["ratio"] <= 0.5
    codes = plan["user_codes"]
    private = [c for c in np.unique(codes[:, 0]) if (codes[:, 0] == c).sum() == 1 and (codes[:, 1] == c).sum() == 1]
    assert len(private) >= 4  # a head user's two codes are one row, its own


def test_item_only_models_take_item_codes_of_the_whole_graph(tiny_config):
    result = run_recbole_lightemb(model="SASRec", config_dict={**tiny_config, **SEQUENTIAL, "emb": "baco",
                                                               "emb_budget": 0.5})
    (table,) = result["compression"]["tables"]
    assert table["role"] == "item" and result["compression"]["ratio"] <= 0.5
    plan = Plan.load(result["plan"]["file"])
    budget_rows = int((0.5 * table["entities"] * table["dim"] * 4 - table["entities"] * 4) // (table["dim"] * 4))
    assert budget_rows - 4 <= plan.meta["n_item_codes"] <= budget_rows  # the user rows' share went to items
    assert result["test_result"]["recall@10"] >= 0


def test_residual_rows_are_private_counted_and_fill_the_budget(ml100k_config):
    config = {**ml100k_config, "epochs": 1, "emb": "baco", "emb_budget": 0.25, "baco_residual": 4}
    result = run_recbole_lightemb(model="BPR", dataset="ml-100k", config_dict=config)
    residual = result["plan"]["residual"]
    assert residual >= 4  # widened to spend what the clustering left
    report = result["compression"]
    assert report["stored_bytes"] == result["plan"]["stored_bytes"] and report["ratio"] <= 0.25
    n_entities = sum(t["entities"] for t in report["tables"])
    plain = run_recbole_lightemb(model="BPR", dataset="ml-100k", config_dict={**config, "baco_residual": 0,
                                                                              "epochs": 1})
    assert plain["plan"]["n_user_codes"] + plain["plan"]["n_item_codes"] >= (
        result["plan"]["n_user_codes"] + result["plan"]["n_item_codes"])  # the residual's bytes cost rows
    assert report["stored_floats"] >= n_entities * residual


def test_a_quantized_residual_costs_fewer_bytes_and_leaves_more_codebook_rows(ml100k_config):
    config = {**ml100k_config, "epochs": 1, "emb": "baco", "emb_budget": 0.25, "baco_residual": 8}
    runs = {bits: run_recbole_lightemb(model="BPR", dataset="ml-100k",
                                       config_dict={**config, "baco_residual_bits": bits}) for bits in (32, 4)}
    floats, quantized = runs[32]["plan"], runs[4]["plan"]
    assert quantized["residual_bits"] == 4 and quantized["residual"] >= floats["residual"] >= 8
    rows = {bits: run["plan"]["n_user_codes"] + run["plan"]["n_item_codes"] for bits, run in runs.items()}
    assert rows[4] > rows[32]  # 8 values at 4 bits and a scale: 8 bytes a row, not 32
    for run in runs.values():
        assert run["compression"]["stored_bytes"] == run["plan"]["stored_bytes"] and run["compression"]["ratio"] <= 0.25


def test_a_quantized_residual_is_on_its_grid_and_stored_in_bits():
    from recbole_lightemb.modules import CodebookEmbedding

    shared = CodebookEmbedding(np.zeros((5, 1), dtype=np.int32), 1, 8)
    table = ResidualEmbedding(shared, 6, bits=2)
    private = table.full_table()[:, :6] - shared.full_table()[:, :6]
    scale = table.private.detach().abs().amax(1, keepdim=True)  # 2 bits: levels -1, 0, 1 times max |x|
    assert torch.allclose(private / scale, (private / scale).round(), atol=1e-5)
    assert table.stored_bytes() == shared.stored_bytes() + 5 * (2 + 4)  # 12 bits packed in 2 bytes, one scale


def test_a_residual_row_tells_apart_entities_that_share_a_code():
    from recbole_lightemb.modules import CodebookEmbedding

    shared = CodebookEmbedding(np.zeros((4, 1), dtype=np.int32), 1, 8)
    table = ResidualEmbedding(shared, 2)
    out = table.full_table()
    assert torch.equal(out[:, 2:], out[:1, 2:].expand(4, -1)) and not torch.equal(out[0], out[1])
    assert table.stored_floats() == 8 + 4 * 2


def test_split_halves_the_most_crowded_codes_keeping_neighbours_together():
    codes = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    order = np.array([5, 5, 9, 9, 7, 7, 0, 0])  # e.g. secondary codes: equal keys stay together
    n = split_largest(codes, 2, 2, order)
    assert n == 4 and np.bincount(codes).max() <= 3 and set(codes[6:]) == {1}
    first = np.arange(6)[np.lexsort((np.arange(6), order[:6]))]  # cluster 0 in (secondary, id) order
    runs = codes[first]
    assert (np.diff(runs) != 0).sum() == len(set(runs)) - 1  # each new code is one contiguous run


def test_without_secondary_codes_users_store_one_code_and_the_budget_holds(ml100k_config):
    config = {**ml100k_config, "epochs": 1, "emb": "baco", "emb_budget": 0.25, "baco_secondary": False}
    result = run_recbole_lightemb(model="BPR", dataset="ml-100k", config_dict=config)
    assert Plan.load(result["plan"]["file"])["user_codes"].shape[1] == 1
    assert result["compression"]["ratio"] <= 0.25


def test_a_resolution_that_stores_more_than_full_says_so(tiny_config, caplog):
    with caplog.at_level(logging.WARNING):
        result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "baco", "baco_resolution": 1e9})
    assert result["compression"]["ratio"] > 1  # every entity its own row, plus the codes
    assert any("more than storing them uncompressed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("keys", [{"emb_budget": 0.001}, {"baco_rows": 2},
                                  {"baco_rows": 2, "baco_budget_rule": "authors"}])
def test_a_budget_too_small_names_the_smallest_that_fits(keys, tiny_config):
    import re

    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_seed

    from recbole_lightemb import Config, swap_embeddings

    def plan(**given):
        config = Config(model="BPR", config_dict={**tiny_config, "emb": "baco", **given})
        init_seed(config["seed"], config["reproducibility"])
        train_data, _, _ = data_preparation(config, create_dataset(config))
        return swap_embeddings(get_model("BPR")(config, train_data._dataset), train_data._dataset, config)

    key = next(k for k in keys if k in ("emb_budget", "baco_rows"))
    with pytest.raises(ValueError, match=f"{key}=.* leaves no room for BACO codebook rows.*raise it to at least") as err:
        plan(**keys)
    least = float(re.search(r"at least ([0-9.e-]+)$", str(err.value)).group(1))
    least = int(least) if key == "baco_rows" else least
    fits = plan(**{**keys, key: least}).meta
    assert fits["max_rows"][keys.get("baco_budget_rule", "bytes")] >= 2 + 2  # two rows besides the cold ones
    below = least - 1 if key == "baco_rows" else least * 0.98
    with pytest.raises(ValueError, match="leaves no room"):  # the smallest: a little less does not fit
        plan(**{**keys, key: below})
