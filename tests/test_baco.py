"""``emb: baco`` through RecBole: budget held in stored bytes, plans saved and reloadable."""

import numpy as np
import pytest

from recbole_lightemb import Plan, run_recbole_lightemb

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
])
def test_bad_baco_config(bad, match, tiny_config):
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "baco", "emb_budget": 0.25, **bad})


def test_item_only_model_is_refused_clearly(tiny_config):
    with pytest.raises(ValueError, match="needs both tables; model=SASRec has only"):
        run_recbole_lightemb(model="SASRec", config_dict={**tiny_config, **SEQUENTIAL, "emb": "baco",
                                                          "emb_budget": 0.5})
