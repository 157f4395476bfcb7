"""Hyper-parameter tuning: RecBole's HyperTuning over plugin keys, the plugin's tuner and its command line."""

import os
import runpy
import sys

import pytest
import yaml

from recbole_lightemb.analysis import hyper

CLI = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_hyper_lightemb.py")


@pytest.fixture
def hyperopt():
    return pytest.importorskip("hyperopt")


@pytest.fixture
def fixed_file(tiny_config, tmp_path):
    """RecBole's fixed config file: the tiny data, BPR, uniform tables."""
    path = tmp_path / "fixed.yaml"
    path.write_text(yaml.safe_dump({**tiny_config, "model": "BPR", "emb": "uniform"}))
    return str(path)


def fake_objective(failing=()):
    """An objective that trains nothing: its score is the learning rate; ``failing`` values raise."""

    def objective(config_dict, config_file_list):
        if config_dict["learning_rate"] in failing:
            raise ValueError(f"learning_rate={config_dict['learning_rate']}: refused")
        score = float(config_dict["learning_rate"])
        return {"model": "BPR", "best_valid_score": score, "valid_score_bigger": True,
                "best_valid_result": {"ndcg@10": score}, "test_result": {"ndcg@10": score / 2},
                "compression": {"ratio": 0.25}}

    return objective


def test_without_hyperopt_a_one_line_error_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hyperopt", None)  # import hyperopt now raises ImportError
    with pytest.raises(ImportError, match=r'hyperopt, which is not installed: pip install "recbole-lightemb\[tune\]"'):
        hyper.HyperTuning(params_dict={"choice": {"emb_budget": [0.1]}})
    monkeypatch.setattr(sys, "argv", [CLI, "--params_file=p.hyper"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(CLI, run_name="__main__")
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and '".[tune]"' in err


def test_recbole_s_own_hypertuning_runs_the_plugin_objective(hyperopt, fixed_file):
    """RecBole's HyperTuning, unchanged, tunes a plugin key with the plugin's objective; each result carries
    the compression report, and the metrics are plain numbers."""
    from recbole.trainer import HyperTuning

    tuner = HyperTuning(hyper.objective_function, params_dict={"choice": {"emb_budget": [0.25, 0.5]}},
                        fixed_config_file_list=[fixed_file], algo="exhaustive")
    tuner.run()
    ratios = sorted(result["compression"]["ratio"] for result in tuner.params2result.values())
    assert len(ratios) == 2 and ratios[0] <= 0.25 < ratios[1] <= 0.5
    for result in tuner.params2result.values():
        assert set(hyper.RESULT_KEYS) <= set(result) and all(type(v) is float for v in result["test_result"].values())


def test_a_failing_trial_is_recorded_and_the_search_goes_on(hyperopt, tmp_path):
    space = {"choice": {"learning_rate": [0.1, 0.01, 0.2]}}
    tuner = hyper.HyperTuning(fake_objective(failing={0.1}), params_dict=space)
    tuner.run()
    assert len(tuner.rows) == 3 and [row["error"] is None for row in tuner.rows].count(False) == 1
    assert tuner.best_params == {"learning_rate": 0.2}
    tuner.export_result(output_file=str(tmp_path / "out.txt"))
    text = (tmp_path / "out.txt").read_text()
    header, *lines = text.split("\n\n")[0].splitlines()
    assert header.split() == ["trial", "learning_rate", "valid", "score", "test", "ndcg@10", "bytes", "ratio", "error"]
    assert sum("ValueError: learning_rate=0.1: refused" in line for line in lines) == 1
    assert sum("0.2500" in line for line in lines) == 2 and "Bytes ratio: 0.2500" in text


def test_every_trial_failing_still_ends_with_the_table(hyperopt):
    tuner = hyper.HyperTuning(fake_objective(failing={0.1, 0.2}), params_dict={"choice": {"learning_rate": [0.1, 0.2]}})
    tuner.run()
    assert tuner.best_params is None and all(row["error"] for row in tuner.rows)


def test_random_search_is_seeded_from_recbole_s_seed(hyperopt, monkeypatch):
    def trials(seed):
        monkeypatch.setattr(sys, "argv", ["x", f"--seed={seed}"])
        tuner = hyper.HyperTuning(fake_objective(), params_dict={"uniform": {"learning_rate": [0.001, 0.1]}},
                                  algo="random", max_evals=3)
        tuner.run()
        return [row["params"]["learning_rate"] for row in tuner.rows]

    assert trials(1) == trials(1) != trials(2)


@pytest.mark.parametrize("names, match", [
    (["emb_budgt"], "emb_budgt \\(params file\\): not a RecBole or recbole-lightemb key; did you mean emb_budget\\?"),
    (["learnin_rate"], "did you mean learning_rate\\?"),
])
def test_an_unknown_key_is_named_with_the_closest_before_the_first_trial(hyperopt, names, match):
    calls = []
    with pytest.raises(ValueError, match=match):
        hyper.HyperTuning(lambda *args: calls.append(args), params_dict={"choice": {n: [1] for n in names}})
    assert not calls


def test_plugin_and_recbole_keys_are_known(fixed_file):
    hyper.check_space(["emb_budget", "quant_bits", "baco_resolution", "ciess_episodes", "scall_mean_width",
                       "learning_rate", "embedding_size", "n_layers"], [fixed_file])


def test_a_tuned_key_also_on_the_command_line_is_refused():
    with pytest.raises(ValueError, match="--emb_budget: also tuned in the params file"):
        hyper.check_space(["emb_budget"], argv=["--emb_budget=0.1"])


def test_cli_tunes_a_plugin_key_and_writes_the_table(hyperopt, fixed_file, tmp_path, monkeypatch, capsys):
    params = tmp_path / "params.hyper"
    params.write_text("emb_budget choice [0.25,2.0]\n")
    output = tmp_path / "tuning.result"
    monkeypatch.setattr(sys, "argv", [CLI, f"--config_files={fixed_file}", f"--params_file={params}",
                                      f"--output_file={output}", "--tool=Hyperopt"])
    runpy.run_path(CLI, run_name="__main__")
    out = capsys.readouterr().out
    table = output.read_text().split("\n\n")[0]
    assert "bytes ratio" in table.splitlines()[0] and "test recall@10" in table.splitlines()[0]
    assert "emb_budget=2.0" in table and "best params:  {'emb_budget': 0.25}" in out
    assert sys.argv[1:] == [f"--config_files={fixed_file}", f"--params_file={params}", f"--output_file={output}",
                            "--tool=Hyperopt"]


def test_cli_refuses_another_tool_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [CLI, "--params_file=p.hyper", "--tool=Ray"])
    with pytest.raises(SystemExit):
        runpy.run_path(CLI, run_name="__main__")
    assert capsys.readouterr().err == "error: --tool=Ray: recbole-lightemb tunes with hyperopt only (--tool=Hyperopt)\n"
