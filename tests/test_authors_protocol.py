"""The BACO authors' training protocol inside RecBole: N(0, 1) tables, negatives from all items, their stop."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from recbole.data import create_dataset, data_preparation
from recbole.utils import early_stopping, get_model, init_seed

from recbole_lightemb import Config, run_recbole_lightemb, swap_embeddings
from recbole_lightemb.protocol import use_negative_sampling

PRESET = Path(__file__).resolve().parent.parent / "properties" / "presets" / "baco_authors_protocol.yaml"


def _built(tiny_config, **keys):
    """A LightGCN on the tiny data with its tables swapped as ``keys`` ask (no training), and its training data."""
    config = Config(model="LightGCN", config_dict={**tiny_config, **keys})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("LightGCN")(config, train_data._dataset)
    swap_embeddings(model, train_data._dataset, config)
    return model, train_data, config


@pytest.mark.parametrize("emb, keys", [("full", {}), ("uniform", {"emb_budget": 0.25}),
                                       ("baco", {"emb_budget": 0.5})])
def test_normal_init_starts_every_table_at_unit_scale_and_the_default_keeps_xavier(emb, keys, tiny_config):
    def values(model):  # what the tables store: full's weight, uniform's narrow table, BACO's codebook
        tables = [model.user_embedding, model.item_embedding]
        return torch.cat([p.detach().flatten() for t in tables for p in t.parameters()])

    normal = values(_built(tiny_config, emb=emb, emb_init="normal", **keys)[0])
    assert normal.numel() > 1000 and abs(normal.std().item() - 1) < 0.12 and abs(normal.mean().item()) < 0.12
    xavier = values(_built(tiny_config, emb=emb, **keys)[0])
    assert xavier.std().item() < 0.4  # RecBole's LightGCN: Xavier, far below unit scale


def test_normal_init_is_seeded_from_the_run_seed(tiny_config):
    first = _built(tiny_config, emb_init="normal")[0].user_embedding.weight.detach()
    again = _built(tiny_config, emb_init="normal")[0].user_embedding.weight.detach()
    other = _built(tiny_config, emb_init="normal", seed=7)[0].user_embedding.weight.detach()
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_each_fresh_ciess_step_draws_its_own_normal_init(tiny_config):
    from recbole_lightemb.ciess.trainer import CIESSTrainer

    model, train_data, config = _built(tiny_config, emb="ciess", emb_budget=0.5, emb_init="normal")
    trainer = CIESSTrainer(config, model)
    starts = []
    for step in (0, 1, 0):
        trainer._fresh_model(train_data._dataset, step)
        starts.append(torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()]))
    assert abs(starts[0].std().item() - 1) < 0.2  # N(0, 1) tables, as the run's own
    assert not torch.equal(starts[0], starts[1]) and torch.equal(starts[0], starts[2])  # new per step, seeded


def _negatives_that_are_positives(train_data, epochs=3):
    """How many sampled negatives, over a few passes of the training data, are a training positive of their user."""
    ds = train_data._dataset
    positives = set(zip(ds.inter_feat[ds.uid_field].tolist(), ds.inter_feat[ds.iid_field].tolist()))
    hits = drawn = 0
    for _ in range(epochs):
        for batch in train_data:
            pairs = zip(batch[ds.uid_field].tolist(), batch[train_data.neg_prefix + ds.iid_field].tolist())
            hits += sum(pair in positives for pair in pairs)
            drawn += len(batch)
    assert drawn > 0
    return hits


def test_uniform_all_negatives_may_be_positives_and_the_default_never_are(tiny_config):
    _, default, config = _built(tiny_config)
    use_negative_sampling(default, config)  # exclude_positives: RecBole's sampler as it is
    assert _negatives_that_are_positives(default) == 0
    _, everything, config = _built(tiny_config, emb_neg_sampling="uniform_all")
    use_negative_sampling(everything, config)
    assert _negatives_that_are_positives(everything) > 0
    ds = everything._dataset
    drawn = everything._sampler.sample_by_user_ids(np.ones(20000, dtype=int), None, 1).numpy()
    assert drawn.min() == 1 and drawn.max() == ds.item_num - 1  # every real item, never the padding id 0
    assert abs(np.bincount(drawn).std() / np.bincount(drawn)[1:].mean()) < 0.25  # about uniform


@pytest.mark.parametrize("bad, match", [
    ({"emb_init": "xavier"}, "emb_init='xavier': allowed recbole .*, normal"),
    ({"emb_neg_sampling": "all"}, "emb_neg_sampling='all': allowed exclude_positives .*, uniform_all"),
    ({"emb_neg_sampling": "uniform_all", "train_neg_sample_args": {"distribution": "popularity"}},
     "emb_neg_sampling='uniform_all' needs uniformly sampled training negatives"),
    ({"emb_neg_sampling": "uniform_all", "stream": True}, "not supported with stream=True"),
    ({"emb_test_curve": "sometimes"}, "emb_test_curve='sometimes': expected True or False"),
])
def test_bad_protocol_values_are_refused_before_any_data_is_read(bad, match, tiny_config, monkeypatch):
    import recbole_lightemb.quick_start as quick_start

    monkeypatch.setattr(quick_start, "start_run", lambda config: pytest.fail("data was loaded"))
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **bad})


def test_the_preset_sets_the_authors_protocol(tiny_config):
    config = Config(model="LightGCN", config_file_list=[str(PRESET)],
                    config_dict={k: v for k, v in tiny_config.items() if k not in ("epochs", "train_batch_size")})
    assert (config["emb_init"], config["emb_neg_sampling"]) == ("normal", "uniform_all")
    assert (config["learning_rate"], config["weight_decay"], config["reg_weight"]) == (0.001, 1e-8, 0.0)
    assert (config["train_batch_size"], config["epochs"], config["eval_step"]) == (1024, 1000, 10)
    assert config["n_layers"] == 2 and config["embedding_size"] == 64 and config["valid_metric"] == "Recall@20"


def _authors_stop(scores, eval_every, patience_epochs):
    """Epochs the authors' loop trains (``train_test_id_only.py``): validate when ``epoch % 10 == 0``, count every
    epoch since the best (a stale score never beats it), stop once the count reaches their patience."""
    best, counter, k, epoch, score = 0.0, 0, 0, 0, None
    while True:
        if epoch % eval_every == 0:
            if k == len(scores):
                return None
            score, k = scores[k], k + 1
        if counter >= patience_epochs:
            return k  # evaluations made
        if score > best:
            best, counter = score, 0
        else:
            counter += 1
        epoch += 1


def _recbole_stop(scores, stopping_step):
    """Evaluations RecBole's trainer makes before its early stop (``recbole.utils.early_stopping``)."""
    best, step = -math.inf, 0
    for k, score in enumerate(scores, 1):
        best, step, stop, _ = early_stopping(score, best, step, stopping_step)
        if stop:
            return k
    return None


def test_the_presets_patience_stops_after_as_many_evaluations_as_the_authors_loop():
    preset = yaml.safe_load(PRESET.read_text())
    rng = np.random.default_rng(0)
    stops = []
    for _ in range(200):  # noisy climbs and plateaus of distinct scores (the authors need a strict gain)
        scores = list(1 + np.cumsum(rng.normal(0.003, 0.02, 60)))
        stops.append(_authors_stop(scores, preset["eval_step"], 50))
        assert stops[-1] == _recbole_stop(scores, preset["stopping_step"])
    assert sum(stop is not None for stop in stops) > 100


def test_the_test_curve_is_recorded_per_evaluation_and_leaves_the_run_unchanged(tiny_config):
    config = {**tiny_config, "epochs": 3, "eval_step": 1, "emb": "uniform", "emb_budget": 0.5}
    curved = run_recbole_lightemb(model="BPR", config_dict={**config, "emb_test_curve": True})
    plain = run_recbole_lightemb(model="BPR", config_dict=config)
    curve = curved["convergence"]["curve"]
    assert [p["epochs"] for p in curve] == [1, 2, 3] and all("recall@10" in p["test"] for p in curve)
    assert [p["valid"] for p in curve] == [p["valid"] for p in plain["convergence"]["curve"]]
    assert "test" not in plain["convergence"]["curve"][0]
    best = curve[curved["convergence"]["best_epoch"]]
    assert best["test"]["recall@10"] == pytest.approx(curved["test_result"]["recall@10"], abs=1e-4)


def test_the_authors_beauty_setting_and_its_curve_table(tmp_path, monkeypatch):
    import frontier

    spec = frontier.SETTINGS["lightgcn-beauty-authors"]
    assert [a[0] for a in spec["arms"]] == ["full", "uniform-0.25", "baco-authors", "baco-authors[fixed γ]"]
    assert spec["config"]["emb_test_curve"] and spec["config"]["emb_init"] == "normal"
    assert spec["config"]["epochs"] == 1000 and spec["arms"][2][3]["baco_rows"] == 9000

    def run(method, label, points, final, best_epoch):
        curve = [{"epochs": e, "valid": v, "test": {"recall@20": t}} for e, v, t in points]
        return {"method": method, "label": label, "seed": 1, "error": None, "test": {"recall@20": final},
                "convergence": {"curve": curve, "best_epoch": best_epoch, "epochs_run": points[-1][0],
                                "converged": True, "epoch_cap": 1000}}

    full = run("full", None, [(50, 0.1, 0.05), (100, 0.2, 0.08), (150, 0.15, 0.09), (200, 0.3, 0.12)], 0.12, 199)
    baco = run("baco", "baco-authors", [(50, 0.3, 0.09), (100, 0.25, 0.1)], 0.09, 49)
    assert frontier.capped_at(full, 150) == 0.08  # the best validation by epoch 150 is epoch 100's
    table = frontier.format_curve_table([full, baco])
    row = next(line for line in table.splitlines() if line.startswith("| baco-authors"))
    assert "| 0.0900 | 0.0900 | 0.0900 | 0.0900 | 1.800 | 1.125 | 0.750 | 0.750 |" in row
    assert frontier.format_curve_table([{**full, "convergence": {"curve": [{"epochs": 1, "valid": 0.1}]}}]) == ""


def test_a_frontier_run_under_the_protocol_records_its_curve_and_plan_mode(tiny_config, tmp_path, monkeypatch):
    import frontier

    monkeypatch.setattr(frontier, "WORK", tmp_path / "work")
    monkeypatch.setattr(frontier, "OUT", tmp_path / "out")
    keys = {k: v for k, v in tiny_config.items() if k not in ("checkpoint_dir", "dataset", "epochs")}
    monkeypatch.setitem(frontier.SETTINGS, "tiny-authors", {
        "model": "LightGCN", "dataset": "tiny", "seeds": 1, "arms": [],
        "config": {**frontier.AUTHORS_PROTOCOL, **keys, "emb_test_curve": True, "train_batch_size": 256}})
    extra = {"baco_budget_rule": "authors", "baco_rows": 40}
    path = frontier._train_one("tiny-authors", "baco-authors", "baco", None, extra, 2020, None,
                               torch.get_num_threads(), epochs=2)
    run = json.loads(Path(path).read_text())
    assert run["error"] is None and run["convergence"]["epoch_cap"] == 2
    assert [p["epochs"] for p in run["convergence"]["curve"]] == [2] and "test" in run["convergence"]["curve"][0]
    assert run["plan"]["mode"] == "paper" and run["plan"]["budget_rule"] == "authors"
    assert run["plan"]["rows"] <= run["plan"]["max_rows"]["authors"]
