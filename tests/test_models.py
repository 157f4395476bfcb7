"""Every supported RecBole model trains one epoch and evaluates with swapped tables."""

import pytest

from recbole_lightemb import run_recbole_lightemb

MODELS = ["BPR", "LightGCN", "NGCF", "NeuMF", "ENMF", "SASRec", "GRU4Rec"]
SEQUENTIAL = {"train_neg_sample_args": None}  # RecBole's sequential models train with CE over all items


def model_config(model, config):
    return {**config, **SEQUENTIAL} if model in ("SASRec", "GRU4Rec") else config


@pytest.mark.parametrize("model", MODELS)
def test_uniform_trains_and_evaluates(model, tiny_config):
    config = {**model_config(model, tiny_config), "emb": "uniform", "emb_budget": 0.25}
    result = run_recbole_lightemb(model=model, config_dict=config)
    report = result["compression"]
    assert report["ratio"] <= 0.25
    roles = {t["role"] for t in report["tables"]}
    assert "item" in roles
    assert all(t["stored_floats"] == t["entities"] * (t["dim"] // 4) for t in report["tables"])
    assert set(result["test_result"]) == set(result["best_valid_result"])
    assert all(0 <= v <= 1 for v in result["test_result"].values())


def test_neumf_swaps_its_four_tables(tiny_config):
    result = run_recbole_lightemb(model="NeuMF", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.5})
    names = sorted(t["name"] for t in result["compression"]["tables"])
    assert names == ["item_mf_embedding", "item_mlp_embedding", "user_mf_embedding", "user_mlp_embedding"]


def test_sequential_item_table_keeps_padding_row(tiny_config):
    from recbole_lightemb.modules import UniformEmbedding

    result = run_recbole_lightemb(model="SASRec", config_dict={**tiny_config, **SEQUENTIAL, "emb": "uniform", "emb_width": 8})
    (table,) = result["compression"]["tables"]
    assert table["role"] == "item" and table["stored_floats"] == table["entities"] * 8
    emb = UniformEmbedding(5, 16, 4, padding_idx=0)
    assert emb.weight[0].abs().sum() == 0


def test_context_aware_model_gets_clear_error(ml100k_config):
    with pytest.raises(ValueError, match="FM.*no nn.Embedding with one row per user"):
        run_recbole_lightemb(model="FM", dataset="ml-100k", config_dict={**ml100k_config, "emb": "uniform", "emb_budget": 0.25})


def test_ce_loss_models_run_as_typed(tiny_config, caplog):
    """SASRec without train_neg_sample_args: the plugin drops RecBole's default negatives and says so."""
    import logging

    with caplog.at_level(logging.INFO):
        result = run_recbole_lightemb(model="SASRec", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.5})
    assert result["test_result"]["recall@10"] >= 0
    assert any("train_neg_sample_args is set to None" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("emb", ["uniform", "baco"])
def test_bert4rec_keeps_its_mask_row_full_and_compresses_the_items(tiny_config, emb):
    result = run_recbole_lightemb(model="BERT4Rec", config_dict={**tiny_config, **SEQUENTIAL, "emb": emb,
                                                                 "emb_budget": 0.25})
    (table,) = result["compression"]["tables"]
    n_rows = table["entities"]  # items plus the mask-token row
    mask_bytes = table["dim"] * 4
    assert table["stored_bytes"] - mask_bytes <= 0.25 * (n_rows - 1) * table["dim"] * 4
    assert result["test_result"]["recall@10"] >= 0


def test_narrow_per_entity_tables_are_left_full_and_said_so(tiny_config):
    result = run_recbole_lightemb(model="TransRec", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.25})
    assert [t["name"] for t in result["compression"]["tables"]] == ["user_embedding", "item_embedding"]
    assert result["plan"]["tables_left_full"] == [
        {"name": "bias", "dim": 1, "why": "narrower than 1/8 of the widest table (64)"}]
    assert result["compression"]["ratio"] == 0.25


def test_extra_rows_read_from_their_own_full_table():
    import torch

    from recbole_lightemb.modules import UniformEmbedding
    from recbole_lightemb.modules.extra_rows import ExtraRowsEmbedding

    table = ExtraRowsEmbedding(UniformEmbedding(5, 8, 2), torch.ones(1, 8))
    out = table(torch.tensor([[1, 5]]))
    assert torch.equal(out[0, 1], torch.ones(8)) and (out[0, 0, 2:] == 0).all()
    assert torch.equal(table.full_table()[5], torch.ones(8)) and table.stored_floats() == 5 * 2 + 8
