"""Every supported RecBole model and every method train one epoch and evaluate with swapped tables, on every
device torch can see (the ``device`` fixture)."""

import pytest
from recbole.trainer.trainer import AbstractTrainer

from recbole_lightemb import run_recbole_lightemb

MODELS = ["BPR", "LightGCN", "NGCF", "NeuMF", "ENMF", "SASRec", "GRU4Rec", "GRU4RecCPR"]
SEQUENTIAL = {"train_neg_sample_args": None}  # RecBole's sequential models train with CE over all items


def model_config(model, config):
    if model == "GRU4RecCPR":  # its reranker partition (100 items by default) must fit the tiny item set
        return {**config, **SEQUENTIAL, "reranker_CAN_NUM": 20}
    return {**config, **SEQUENTIAL} if model in ("SASRec", "GRU4Rec") else config


@pytest.fixture
def trained_models(monkeypatch):
    """Every model a trainer is built for during the test, to check where its tensors ended up."""
    models, init = [], AbstractTrainer.__init__

    def recording_init(self, config, model):
        models.append(model)
        init(self, config, model)

    monkeypatch.setattr(AbstractTrainer, "__init__", recording_init)
    return models


def assert_on(models, device):
    tensors = [t for model in models for t in (*model.parameters(), *model.buffers())]
    assert tensors and {t.device.type for t in tensors} == {device.type}


@pytest.mark.parametrize("model", MODELS)
def test_uniform_trains_and_evaluates(model, tiny_config, device, trained_models):
    keys, where = device
    config = {**model_config(model, tiny_config), **keys, "emb": "uniform", "emb_budget": 0.25}
    result = run_recbole_lightemb(model=model, config_dict=config)
    report = result["compression"]
    assert report["ratio"] <= 0.25
    roles = {t["role"] for t in report["tables"]}
    assert "item" in roles
    assert all(t["stored_floats"] == t["entities"] * (t["dim"] // 4) for t in report["tables"])
    assert set(result["test_result"]) == set(result["best_valid_result"])
    assert all(0 <= v <= 1 for v in result["test_result"].values())
    assert_on(trained_models, where)


METHOD_SETTINGS = {
    "uniform": {"emb_budget": 0.25}, "freq": {"emb_budget": 0.5}, "quant": {"emb_budget": 0.1},
    "hash": {"emb_budget": 0.25}, "qr": {"emb_budget": 0.5}, "baco": {"emb_budget": 0.25},
    "ciess": {"emb_budget": 0.5},  # with test_ciess.TINY_SEARCH
    "scall": {"scall_mean_width": 4, "scall_action": [0.7, 0.6, 0.4]},  # a stream method: test_stream's tiny stream
}


@pytest.mark.parametrize("emb", sorted(METHOD_SETTINGS))
def test_every_method_builds_and_trains_its_tables_on_the_device(emb, tiny_config, tmp_path, device, trained_models):
    """Plan, tables, training and the reloaded best model all on the device: the tables move with the model."""
    keys, where = device
    config = {**tiny_config, **keys, "emb": emb, **METHOD_SETTINGS[emb]}
    if emb == "ciess":
        from test_ciess import TINY_SEARCH

        config.update(TINY_SEARCH)
    if emb == "scall":
        from test_stream import tiny_config as stream_config
        from test_stream import write_tiny

        (tmp_path / "stream").mkdir()
        config = stream_config(write_tiny(tmp_path / "stream"), tmp_path, **keys, emb=emb, **METHOD_SETTINGS[emb])
    result = run_recbole_lightemb(model="BPR", dataset="tiny", config_dict=config)
    assert result["compression"]["tables"] and result["compression"]["ratio"] < 1
    if "emb_budget" in config:
        assert result["compression"]["ratio"] <= config["emb_budget"]
    assert_on(trained_models, where)


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


@pytest.mark.parametrize("model, emb", [("FM", "baco"), ("DeepFM", "hash"), ("FFM", "uniform"), ("DIN", "qr")])
def test_context_aware_models_compress_the_id_rows_of_their_shared_token_table(model, emb, tiny_ctr_config, device,
                                                                               trained_models):
    keys, where = device
    config = {**tiny_ctr_config, **keys, "emb": emb, "emb_budget": 0.5 if emb == "qr" else 0.25}
    if model == "DIN":  # a sequential context model: histories in time order
        config["eval_args"] = {**config["eval_args"], "order": "TO"}
    result = run_recbole_lightemb(model=model, config_dict=config)
    report = result["compression"]
    fields = {t["name"].rsplit("[", 1)[-1].rstrip("]") for t in report["tables"] if "[" in t["name"]}
    assert {t["role"] for t in report["tables"]} == {"user", "item"} and fields <= {"user_id", "item_id"}
    assert report["ratio"] <= config["emb_budget"]
    left = {t["name"] for t in report["rows_left_full"]}  # the gender rows stay full, outside the budget
    unread = {t["name"] for t in result["plan"].get("tables_left_full", []) if "never read" in t["why"]}
    assert left - unread and all(name.endswith("[gender]") for name in left - unread)
    if model == "FM":  # its first-order weights are one float per token: narrow, left full and said so
        assert [t["name"] for t in result["plan"]["tables_left_full"]] == ["first_order_linear.token_embedding_table"
                                                                            ".embedding[user_id]",
                                                                            "first_order_linear.token_embedding_table"
                                                                            ".embedding[item_id]"]
    if model == "FFM":  # every field-aware table holds the ids too, but FFM never reads a field's own rows
        compressed = {t["name"] for t in report["tables"]}
        assert sum(name.startswith("ffm.token_embeddings.") for name in compressed) >= 4
        assert unread == {"ffm.token_embeddings.0[user_id]", "ffm.token_embeddings.1[item_id]"}
        assert not unread & compressed and unread <= left  # kept as they are, outside the budget
        with pytest.raises(ValueError, match=r"emb_tables: 'ffm.token_embeddings.0\[user_id\]' is never read"):
            run_recbole_lightemb(model=model, config_dict={**config, "emb_tables": {
                "user": ["ffm.token_embeddings.0[user_id]"]}})
    assert 0 <= result["test_result"]["auc"] <= 1
    assert_on(trained_models, where)


def test_ffm_reads_a_field_s_own_rows_only_when_another_feature_shares_the_field():
    from types import SimpleNamespace

    from recbole_lightemb.swap import _ffm_reads

    owner = SimpleNamespace(feature2id={"user_id": 0, "item_id": 1, "gender": 2},
                            feature2field={0: 0, 1: 1, 2: 0})  # fields: {0: [user_id, gender], 1: [item_id]}
    assert _ffm_reads(owner, "user_id", 0) and _ffm_reads(owner, "gender", 0)  # partners in field 0
    assert not _ffm_reads(owner, "item_id", 1)  # alone in field 1
    assert _ffm_reads(owner, "item_id", 0) and _ffm_reads(owner, "user_id", 1)


def test_emb_tables_naming_a_missing_field_lists_the_fields(tiny_ctr_config):
    config = {**tiny_ctr_config, "emb": "uniform", "emb_budget": 0.25,
              "emb_tables": {"user": ["token_embedding_table.embedding[zip_code]"]}}
    with pytest.raises(ValueError, match=r"'token_embedding_table.embedding\[zip_code\]' is not a token field of "
                                         r"model FM; its token fields are \['token_embedding_table.embedding\[user_id\]'"):
        run_recbole_lightemb(model="FM", config_dict=config)


def test_ciess_refuses_a_labelled_evaluation_in_one_line(tiny_ctr_config):
    with pytest.raises(ValueError, match="emb=ciess ranks all items to measure per-user quality"):
        run_recbole_lightemb(model="FM", config_dict={**tiny_ctr_config, "emb": "ciess", "emb_budget": 0.25})


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
    (table,) = result["compression"]["tables"]  # the item rows, compressed within the budget
    assert table["stored_bytes"] <= 0.25 * table["entities"] * table["dim"] * 4
    (mask,) = result["compression"]["rows_left_full"]  # the mask-token row, full, counted apart
    assert mask["rows"] == 1 and mask["stored_bytes"] == table["dim"] * 4
    assert result["test_result"]["recall@10"] >= 0


def test_bert4rec_entity_rows_keep_their_padding_row(tiny_config):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model

    from recbole_lightemb import Config, find_embedding_tables

    config = Config(model="BERT4Rec", config_dict={**tiny_config, **SEQUENTIAL, "emb": "uniform", "emb_budget": 0.25})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("BERT4Rec")(config, train_data.dataset)
    (spec,), (table,) = find_embedding_tables(model, train_data.dataset, config)
    assert table.num_embeddings == spec.num_embeddings + 1 and spec.padding_idx == 0 and spec.first_row == 0


def test_narrow_per_entity_tables_are_left_full_and_said_so(tiny_config):
    result = run_recbole_lightemb(model="TransRec", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.25})
    assert [t["name"] for t in result["compression"]["tables"]] == ["user_embedding", "item_embedding"]
    assert result["plan"]["tables_left_full"] == [
        {"name": "bias", "dim": 1, "why": "narrower than 1/8 of the widest table (64)"}]
    assert result["compression"]["ratio"] == 0.25


def test_row_ranges_read_entities_from_their_tables_and_other_rows_from_full_ones():
    import torch

    from recbole_lightemb.modules import UniformEmbedding
    from recbole_lightemb.modules.row_ranges import RowRangesEmbedding

    weight = torch.arange(12 * 8, dtype=torch.float).reshape(12, 8)  # rows: 2 gender, 4 users, 1 age, 5 items
    users, items = UniformEmbedding(4, 8, 2), UniformEmbedding(5, 8, 4)
    labels = [("gender", 0, 2), ("user_id", 2, 4), ("age", 6, 1), ("item_id", 7, 5)]
    table = RowRangesEmbedding(weight, [(7, items), (2, users)], labels)
    ids = torch.arange(12).reshape(3, 4)
    expected = torch.cat([weight[:2], users.full_table(), weight[6:7], items.full_table()])
    assert torch.equal(table(ids), expected[ids]) and torch.equal(table.full_table(), expected)
    assert table.stored_floats() == 4 * 2 + 5 * 4 + 3 * 8
    assert [t["name"] for t in table.rows_left_full()] == ["gender", "age"]
    assert [label for label, _ in table.named_parts()] == ["user_id", "item_id"]
    with pytest.raises(ValueError, match="overlaps another"):
        RowRangesEmbedding(weight, [(2, users), (4, items)])
    assert table.stored_bytes() == 4 * table.stored_floats()
    items_then_mask = RowRangesEmbedding(weight[:6], [(0, UniformEmbedding(5, 8, 4))])
    legacy = {k.replace("parts.0.", "entities.").replace("rest", "extra"): v + 1  # before row ranges (BERT4Rec)
              for k, v in items_then_mask.state_dict().items()}
    items_then_mask.load_state_dict(legacy)
    assert torch.equal(items_then_mask.rest, legacy["extra"])


def test_scall_reads_the_width_of_models_without_embedding_size(tiny_config):
    """NeuMF sets mf_embedding_size and mlp_embedding_size; SCALL's budget takes the tables' own width."""
    result = run_recbole_lightemb(model="NeuMF", config_dict={**tiny_config, "emb": "scall", "emb_budget": 0.25})
    assert 0.2 <= result["compression"]["ratio"] <= 0.25


def test_ciess_packs_the_tied_item_table_of_gru4reccpr_with_its_attributes(tiny_config):
    """GRU4RecCPR reads ``bias`` off its item table; CIESS swaps that table twice (masked, then packed)."""
    from test_ciess import TINY_SEARCH

    config = {**model_config("GRU4RecCPR", tiny_config), **TINY_SEARCH, "emb_budget": 0.5}
    assert run_recbole_lightemb(model="GRU4RecCPR", config_dict=config)["compression"]["ratio"] <= 0.5


def test_ciess_refuses_a_model_that_needs_its_own_trainer(tiny_config):
    with pytest.raises(ValueError, match="model=NCL needs RecBole's NCLTrainer; allowed: models that RecBole trains"):
        run_recbole_lightemb(model="NCL", config_dict={**tiny_config, "emb": "ciess", "emb_budget": 0.25})
