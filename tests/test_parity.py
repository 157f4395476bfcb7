"""``emb: full`` must reproduce plain RecBole exactly: same seed, same metrics."""

import pytest
from recbole.quick_start import run_recbole

from recbole_lightemb import run_recbole_lightemb


@pytest.mark.parametrize("model", ["BPR", "LightGCN"])
def test_full_matches_plain_recbole(model, ml100k_config):
    config = {**ml100k_config, "epochs": 2}
    plain = run_recbole(model=model, dataset="ml-100k", config_dict=dict(config))
    ours = run_recbole_lightemb(model=model, dataset="ml-100k", config_dict={**config, "emb": "full"})
    assert ours["best_valid_result"] == plain["best_valid_result"]
    assert ours["test_result"] == plain["test_result"]
    assert ours["compression"]["ratio"] == 1.0


def test_full_matches_plain_recbole_on_a_context_aware_model(tiny_ctr_config):
    config = {**tiny_ctr_config, "epochs": 2}
    plain = run_recbole(model="DeepFM", config_dict=dict(config))
    ours = run_recbole_lightemb(model="DeepFM", config_dict={**config, "emb": "full"})
    assert ours["test_result"] == plain["test_result"] and ours["compression"]["ratio"] == 1.0
    # measured on the same rows as a compressed method: the id rows, the other fields apart
    assert {t["name"] for t in ours["compression"]["tables"]} == {"token_embedding_table.embedding[user_id]",
                                                                  "token_embedding_table.embedding[item_id]"}
    assert [t["name"] for t in ours["compression"]["rows_left_full"]] == ["token_embedding_table.embedding[gender]"]
