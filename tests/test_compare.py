"""The comparison runs every arm on the same data, survives failing arms and writes CSV, JSON and a plot."""

import csv
import json
import os
import runpy
import sys

import pytest

from recbole_lightemb import EmbeddingMethod, register_method
from recbole_lightemb import registry
from recbole_lightemb.analysis.compare import _results_of, compare, strip_cmd_args

CLI = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_recbole_lightemb.py")


@pytest.fixture
def boom_method(monkeypatch):
    """A registered method whose planner raises, removed again after the test."""

    class Boom(EmbeddingMethod):
        def plan(self, dataset, tables):
            raise RuntimeError("plan exploded")

    monkeypatch.setitem(registry._METHODS, "boom", Boom)
    register_method("boom")(Boom)
    return "boom"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_failing_arms_get_an_error_row_and_the_others_complete(tiny_config, tmp_path, boom_method):
    out = tmp_path / "cmp"
    rows = compare("BPR", "tiny", ["full", "uniform", boom_method, "nope"], [0.25],
                   config_dict=tiny_config, compare_dir=str(out))
    by_method = {r["method"]: r for r in rows}
    assert [r["method"] for r in rows] == ["full", "uniform", "boom", "nope"]
    full, uniform = by_method["full"], by_method["uniform"]
    assert full["error"] is None and uniform["error"] is None
    assert full["budget"] is None and full["ratio"] == 1.0 and full["stored_bytes"] == full["full_bytes"]
    assert uniform["budget"] == 0.25 and uniform["ratio"] <= 0.25 and uniform["within_budget"] is True
    assert uniform["stored_bytes"] == uniform["stored_floats"] * 4 < full["stored_bytes"]
    assert "RuntimeError: plan exploded" in by_method["boom"]["error"]
    assert "not a known method" in by_method["nope"]["error"] and by_method["nope"]["stored_bytes"] is None
    change = 100 * (uniform["valid_recall@10"] - full["valid_recall@10"]) / full["valid_recall@10"]
    assert uniform["valid_recall@10_vs_full_pct"] == pytest.approx(change)

    table = read_csv(out / "results.csv")
    assert [r["method"] for r in table] == ["full", "uniform", "boom", "nope"]
    for col in ("budget", "stored_floats", "stored_bytes", "ratio", "valid_recall@10", "test_ndcg@10",
                "test_ndcg@10_vs_full_pct", "plan_s", "train_s", "error"):
        assert col in table[0]
    assert float(table[1]["test_ndcg@10"]) == pytest.approx(uniform["test_ndcg@10"])
    assert table[2]["valid_recall@10"] == "" and "plan exploded" in table[2]["error"]

    saved = json.loads((out / "results.json").read_text())
    assert saved["versions"]["recbole"] == "1.2.1" and saved["versions"]["recbole_lightemb"]
    assert saved["config"]["epochs"] == 1 and saved["valid_metric"] == "mrr@10"
    assert [r["method"] for r in saved["rows"]] == ["full", "uniform", "boom", "nope"]
    assert {(r["method"], r["error"] is None) for r in saved["runs"]} == {
        ("full", True), ("uniform", True), ("boom", False), ("nope", False)}
    pytest.importorskip("matplotlib")
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["n_converged"] for r in saved["rows"][:2]] == [0, 0]  # epochs=1: the cap ended both runs


def test_seeds_repeat_every_arm_and_report_mean_and_std(tiny_config, tmp_path):
    out = tmp_path / "cmp"
    (row,) = compare("BPR", "tiny", ["full"], [0.5], config_dict={**tiny_config, "seed": 11}, seeds=2,
                     compare_dir=str(out))
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [11, 12] and row["n_seeds"] == 2
    values = [r["test"]["recall@10"] for r in runs]
    assert row["test_recall@10"] == pytest.approx(sum(values) / 2)
    assert row["test_recall@10_std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)


def test_cli_arm_settings_win_over_the_command_line(tiny_config, tmp_path, monkeypatch):
    """``--emb``/``--emb_budget``/``--seed`` are the comparison's; other ``--key=value`` still reach RecBole."""
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in tiny_config.items() if k != "epochs"))
    out = tmp_path / "cli"
    argv = [CLI, "--compare", "--model=BPR", "--dataset=tiny", f"--config_files={config_file}",
            "--emb=full,uniform", "--emb_budget=0.5", "--seed=5", "--epochs=1", f"--compare_dir={out}"]
    monkeypatch.setattr(sys, "argv", list(argv))
    runpy.run_path(CLI, run_name="__main__")
    assert sys.argv == argv
    table = read_csv(out / "results.csv")
    arms = [(r["method"], r["budget"], float(r["ratio"])) for r in table]
    assert arms == [("full", "", 1.0), ("uniform", "0.5", 0.5)]
    saved = json.loads((out / "results.json").read_text())
    assert saved["seed_values"] == [5] and saved["config"]["epochs"] == 1
    assert "--emb=full,uniform" not in saved["cmd_line"] and "--epochs=1" in saved["cmd_line"]


def test_bad_arguments_fail_before_training():
    with pytest.raises(ValueError, match="emb_budget='lots'"):
        compare("BPR", "tiny", ["uniform"], ["lots"])
    with pytest.raises(ValueError, match="seeds=0"):
        compare("BPR", "tiny", ["uniform"], [0.5], seeds=0)


def test_strip_cmd_args_removes_both_spellings():
    argv = ["--emb=baco", "--epochs=3", "--emb_budget", "0.1", "--compare", "--seeds=2", "--gpu_id=0"]
    assert strip_cmd_args(argv, ("emb", "emb_budget", "compare", "seeds")) == ["--epochs=3", "--gpu_id=0"]


def test_stream_runs_are_judged_by_their_segment_means():
    last = {"best_valid_result": {"recall@20": 0.1}, "test_result": {"recall@20": 0.2}}
    stream = {**last, "mean_test_result": {"recall@20": 0.4},
              "segments": [{"valid_result": {"recall@20": 0.3}}, {"valid_result": {"recall@20": 0.5}}]}
    assert _results_of(last) == ({"recall@20": 0.1}, {"recall@20": 0.2})
    assert _results_of(stream) == ({"recall@20": pytest.approx(0.4)}, {"recall@20": 0.4})
    del stream["segments"][1]["valid_result"]  # not every segment validated: no valid means, not the last one's
    assert _results_of(stream) == ({}, {"recall@20": 0.4})




def test_the_terminal_table_fits_120_columns_and_shows_what_matters():
    from recbole_lightemb.analysis.compare import format_table

    metrics = {"valid": ["recall@10", "recall@20", "mrr@10"],
               "test": ["recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10", "hit@10", "precision@10"]}
    rows = []
    for method, budget in (("full", None), ("uniform", 0.25), ("baco", 0.25)):
        row = {"method": method, "budget": budget, "ratio": 0.2493, "n_seeds": 3, "n_converged": 2,
               "train_s": 1234.5, "error": None}
        for split, names in metrics.items():
            for name in names:
                row[f"{split}_{name}"], row[f"{split}_{name}_std"] = 0.31234, 0.01234
                row[f"{split}_{name}_vs_full_pct"] = -12.3456
        rows.append(row)
    table = format_table(rows, metrics, "mrr@10")
    assert max(len(line) for line in table.splitlines()) <= 120
    head = table.splitlines()[0].split()
    assert head == ["method", "budget", "ratio", "valid", "mrr@10", "test", "recall@10", "test", "ndcg@10",
                    "conv", "train", "s"]


def test_stream_means_are_rounded_as_recbole_rounds():
    from recbole_lightemb.stream.runner import _mean_results

    rows = [{"test_result": {"recall@20": 0.0701}}, {"test_result": {"recall@20": 0.0701}},
            {"test_result": {"recall@20": 0.0701}}]
    assert _mean_results(rows, 4) == {"recall@20": 0.0701}
