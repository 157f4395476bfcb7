"""The fixes to RecBole 1.2.1: plain-number results under NumPy 2, its datasets under pandas 3, its exhaustive
search under today's hyperopt, command-line values that hold ``=``, and autograd's anomaly mode left as it was."""

import subprocess
import sys
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from recbole.utils import FeatureType

from recbole_lightemb import Config, compat, run_recbole_lightemb


def test_results_are_plain_python_numbers(tiny_config):
    """NumPy 2 would log ``np.float64(0.19)`` in every result line; RecBole 1.2.1 logged ``0.19``."""
    numpy_result = OrderedDict([("recall@10", np.float64(0.25)), ("n", np.int64(3))])
    wrapped = compat._plain_numbers(lambda self, data: numpy_result)
    result = wrapped(None, None)
    assert isinstance(result, OrderedDict) and [type(v) for v in result.values()] == [float, int]
    assert "np." not in repr(result)
    run = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.5})
    for values in (run["test_result"], run["best_valid_result"]):
        assert values and all(type(v) is float for v in values.values())
    assert type(run["best_valid_score"]) is float


def test_fill_nan_fills_by_assignment():
    """RecBole's chained ``fillna(inplace=True)`` fills nothing under pandas 3; the fix fills every kind."""
    feat = pd.DataFrame({"tok": [1.0, np.nan], "num": [1.0, np.nan], "seq": [np.array([2, 3]), np.nan]})
    dataset = SimpleNamespace(feat_name_list=["feat"], feat=feat, field2type={
        "tok": FeatureType.TOKEN, "num": FeatureType.FLOAT, "seq": FeatureType.TOKEN_SEQ})
    compat._fill_nan(dataset)
    assert feat["tok"].tolist() == [1.0, 0.0] and feat["num"].tolist() == [1.0, 1.0]
    assert feat["seq"][1].dtype == np.int64 and len(feat["seq"][1]) == 0 and feat["seq"][0].tolist() == [2, 3]


def test_remap_splits_each_sequence_at_its_own_length():
    """``Series.agg(len)`` is the column's length under pandas 3: the fix reads each row's length."""
    from recbole.data.dataset import Dataset

    inter = pd.DataFrame({"item": ["b", "a", "c"]})
    items = pd.DataFrame({"genre": [np.array(["x", "y"]), np.array([], dtype=str), np.array(["x"])]})
    dataset = SimpleNamespace(field2id_token={}, field2token_id={})
    dataset._concat_remaped_tokens = lambda remap_list: Dataset._concat_remaped_tokens(dataset, remap_list)
    compat._remap(dataset, [(inter, "item", FeatureType.TOKEN), (items, "genre", FeatureType.TOKEN_SEQ)])
    assert inter["item"].tolist() == [1, 2, 3]  # 0 is padding
    assert [row.tolist() for row in items["genre"]] == [[4, 5], [], [4]]
    assert dataset.field2id_token["item"].tolist() == ["[PAD]", "b", "a", "c", "x", "y"]
    assert dataset.field2token_id["genre"]["y"] == 5


def test_read_csv_gives_empty_sequence_cells_as_empty_strings(tmp_path):
    path = tmp_path / "t.item"
    path.write_text("item_id:token\tgenre:token_seq\tprice:float\ni1\ta b\t1.0\ni2\t\t\n")
    frame = compat._PandasReadingEmptySequences("pandas").read_csv(path, delimiter="\t", dtype={
        "item_id:token": str, "genre:token_seq": str, "price:float": np.float64})
    assert frame["genre:token_seq"].tolist() == ["a b", ""] and np.isnan(frame["price:float"][1])


def test_a_context_model_reads_items_with_missing_sequences_and_floats(tiny_ctr_config, tmp_path):
    """End to end under the installed pandas (3 in CI): an item with no genre and no price still loads."""
    item_file = tmp_path / "tinyctr" / "tinyctr.item"
    lines = item_file.read_text().splitlines()
    fields = lines[1].split("\t")
    lines[1] = "\t".join([fields[0]] + [""] * (len(fields) - 1))
    item_file.write_text("\n".join(lines) + "\n")
    result = run_recbole_lightemb(model="FM", config_dict={**tiny_ctr_config, "emb": "uniform", "emb_budget": 0.5})
    assert 0 <= result["test_result"]["auc"] <= 1


@pytest.mark.skipif(int(pd.__version__.split(".")[0]) < 3, reason="pandas 2 runs RecBole's own code")
def test_pandas_3_gets_the_fixes():
    from recbole.data.dataset import Dataset
    import recbole.data.dataset.dataset as dataset_module

    assert Dataset._fill_nan is compat._fill_nan and Dataset._remap is compat._remap
    assert isinstance(dataset_module.pd, compat._PandasReadingEmptySequences)


def test_exhaustive_search_tries_every_point_once_with_today_s_hyperopt():
    pytest.importorskip("hyperopt")
    from recbole.trainer import HyperTuning

    seen = []

    def objective(config_dict, config_file_list):
        seen.append((config_dict["a"], config_dict["b"]))
        return {"model": "x", "best_valid_score": float(config_dict["a"]), "valid_score_bigger": True,
                "best_valid_result": {}, "test_result": {}}

    tuner = HyperTuning(objective, params_dict={"choice": {"a": [1, 2, 3], "b": ["x", "y"]}}, algo="exhaustive")
    tuner.run()
    assert sorted(seen) == [(a, b) for a in (1, 2, 3) for b in ("x", "y")]


def test_a_command_line_value_holding_equals_is_read_not_dropped(tiny_config, monkeypatch):
    """RecBole drops ``--key=a=b`` with only a log line; the plugin's Config reads everything after the first '='."""
    monkeypatch.setattr(sys, "argv", ["run", "--result_file=runs/baco[residual=48].json", "--epochs=2",
                                      "--emb_tables={'user': ['a=b']}"])
    config = Config(model="BPR", config_dict=tiny_config)
    assert config["result_file"] == "runs/baco[residual=48].json" and config["epochs"] == 2
    assert config["emb_tables"] == {"user": ["a=b"]}  # evaluated as RecBole evaluates every value
    monkeypatch.setattr(sys, "argv", ["run", "--result_file=a=1.json", "--result_file=a=2.json"])
    with pytest.raises(ValueError, match=r"--result_file: given twice with different values \('a=1.json' and 'a=2"):
        Config(model="BPR", config_dict=tiny_config)


@pytest.mark.parametrize("before", [False, True])
def test_listing_recboles_models_leaves_autograd_anomaly_mode_as_it_was(before):
    """RecBole's SINE module switches anomaly mode on when imported; after the plugin's import and a model check
    that imports every RecBole model, a training step is still as fast as plain PyTorch's (mode unchanged)."""
    code = (
        "import sys; sys.argv = sys.argv[:1]\n"
        "import torch\n"
        f"torch.autograd.set_detect_anomaly({before})\n"
        "import recbole_lightemb\n"
        "from recbole_lightemb.config import recbole_model_names\n"
        "from recbole.utils import get_model\n"
        "assert 'SINE' in recbole_model_names() and get_model('SINE') is not None\n"
        "print(torch.is_anomaly_enabled())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == str(before)
