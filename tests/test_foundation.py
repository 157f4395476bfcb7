"""The plugin's own pieces: modules, registry, plans, config errors, report, compatibility fixes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

import recbole_lightemb
from recbole_lightemb import (
    Config, EmbeddingMethod, LightEmbedding, Plan, register_method, run_recbole_lightemb, swap_embeddings,
)
from recbole_lightemb.modules import FullEmbedding, UniformEmbedding

ROOT = Path(__file__).resolve().parents[1]


def test_full_embedding_shares_the_original_parameter():
    table = nn.Embedding(7, 4, padding_idx=0)
    full = FullEmbedding(table)
    assert full.weight is table.weight
    ids = torch.tensor([[0, 3], [6, 1]])
    assert torch.equal(full(ids), table(ids))
    assert list(full.state_dict()) == ["weight"]
    assert full.stored_floats() == 28 and full.stored_bytes() == 112


def test_uniform_embedding_pads_and_trains_only_its_columns():
    init = torch.randn(6, 8)
    emb = UniformEmbedding(6, 8, 3, padding_idx=0, init_from=init)
    out = emb(torch.tensor([0, 2]))
    assert out.shape == (2, 8)
    assert torch.equal(out[1, :3], init[2, :3]) and out[:, 3:].abs().sum() == 0
    assert out[0].abs().sum() == 0  # padding row
    emb.weight.sum().backward()
    assert emb.table.grad.shape == (6, 3)
    assert emb.stored_floats() == 18 and emb.stored_bytes() == 72
    with pytest.raises(ValueError, match="width"):
        UniformEmbedding(6, 8, 9)


def test_plan_round_trip(tmp_path):
    plan = Plan("demo", {"codes": np.arange(5, dtype=np.int32)}, {"gamma": 0.5})
    path = plan.save(tmp_path / "p.npz")
    back = Plan.load(path, method="demo")
    assert back.method == "demo" and back.meta == {"gamma": 0.5}
    assert np.array_equal(back["codes"], plan["codes"])
    with pytest.raises(ValueError, match="made by emb='demo'"):
        Plan.load(path, method="other")


class HalfEmbedding(LightEmbedding):
    """A user-defined table for the registry test: every other coordinate is stored."""

    def __init__(self, n, d):
        super().__init__(n, d)
        self.stored = nn.Parameter(torch.randn(n, d // 2) * 0.1)

    def full_table(self):
        return torch.repeat_interleave(self.stored, 2, dim=1)

    def stored_floats(self):
        return self.stored.numel()


def test_custom_method_registers_without_editing_the_package(tiny_config):
    @register_method("half_test")
    class Half(EmbeddingMethod):
        def plan(self, dataset, tables):
            return Plan(self.name, meta={"tables": [t.name for t in tables]})

        def build(self, spec, table, plan):
            return HalfEmbedding(spec.num_embeddings, spec.embedding_dim)

    assert "half_test" in recbole_lightemb.available_methods()
    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "half_test"})
    assert result["compression"]["ratio"] == pytest.approx(0.5)
    assert result["plan"]["tables"] == ["user_embedding", "item_embedding"]


@pytest.mark.parametrize("bad, match", [
    ({"emb": "nope"}, r"emb='nope' is not a known method; allowed: .*uniform"),
    ({"emb": "uniform"}, "needs exactly one of emb_budget"),
    ({"emb": "uniform", "emb_budget": 1.5}, r"emb_budget=1.5: expected a fraction .* \(0, 1\]"),
    ({"emb": "uniform", "emb_width": 0}, "emb_width=0: expected a positive integer"),
    ({"emb": "uniform", "emb_budget": 0.25, "emb_width": 4}, "exactly one of"),
])
def test_bad_config_fails_before_loading_data(bad, match, tiny_config, monkeypatch):
    import recbole_lightemb.runs as runs

    monkeypatch.setattr(runs, "create_dataset", lambda config: pytest.fail("data loaded before config check"))
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **bad})


def test_missing_dataset_is_an_error_not_a_download(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset='nowhere'.*never downloads"):
        Config(model="BPR", dataset="nowhere", config_dict={"data_path": str(tmp_path)})


def test_emb_tables_names_tables_explicitly(tiny_config):
    config = {**tiny_config, "emb": "uniform", "emb_width": 4, "emb_tables": {"item": ["item_embedding"]}}
    result = run_recbole_lightemb(model="BPR", config_dict=config)
    assert [t["name"] for t in result["compression"]["tables"]] == ["item_embedding"]
    with pytest.raises(ValueError, match="'nope' is not an nn.Embedding of model BPR"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "emb_tables": {"user": ["nope"]}})


def test_own_script_swaps_before_building_the_trainer(tiny_config):
    """The README's hand-built pipeline: Config, dataset, model, swap, RecBole trainer."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = Config(model="LightGCN", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.25})
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    model = get_model(config["model"])(config, train_data.dataset)
    swap_embeddings(model, train_data.dataset, config)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, show_progress=False)
    assert trainer.evaluate(test_data)["ndcg@10"] >= 0
    assert recbole_lightemb.compression_report(model)["ratio"] == 0.25


def test_scipy_dok_update_restored():
    m = sp.dok_matrix((3, 3), dtype=np.float32)
    m._update({(0, 1): 1.0, (2, 2): 3.0})
    assert m.toarray()[0, 1] == 1.0 and m.nnz == 2


def test_numpy_aliases_restored_through_names_numpy_2_keeps():
    from recbole.config import Config as RecBoleConfig

    RecBoleConfig.compatibility_settings(None)  # RecBole's own list reads np.float_, gone in NumPy 2
    assert np.float is np.float64 and np.long is np.int_ and np.unicode is np.str_ and np.complex is np.complex128
    from recbole_lightemb.compat import _compatibility_settings

    assert (RecBoleConfig.compatibility_settings is _compatibility_settings) == (not hasattr(np, "float_"))


def _python(script, cwd, path=None):
    env = {**__import__("os").environ, "PYTHONPATH": str(path)} if path else None
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_plugin_never_imports_ray(tmp_path):
    script = ("import sys, recbole_lightemb, recbole.quick_start as q; from recbole.quick_start import run_recbole; "
              "repr(q.quick_start.tune); print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    done = _python(script, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("tune_source, expected", [
    ("report = 'the real ray.tune.report'", "the real ray.tune.report"),
    ("raise ModuleNotFoundError(\"No module named 'pkg_resources'\")",
     "ImportError: RecBole's ray-based tuning needs ray.tune, which failed to import (ModuleNotFoundError"),
])
def test_ray_tune_is_imported_on_first_use(tmp_path, tune_source, expected):
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("")
    (tmp_path / "ray" / "tune.py").write_text(tune_source + "\n")
    script = ("import sys, recbole_lightemb, recbole.quick_start.quick_start as q; assert 'ray' not in sys.modules\n"
              "try:\n    print(q.tune.report)\nexcept ImportError as error:\n    print('ImportError:', error)")
    done = _python(script, tmp_path, path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(expected)
    if done.stdout.startswith("ImportError"):
        assert "numpy<2 and setuptools<82" in done.stdout


def test_many_runs_in_one_process_wrap_the_output_streams_once(tiny_config):
    import sys as system

    from recbole.utils import init_logger

    config = Config(model="BPR", config_dict={**tiny_config, "emb": "full"})
    init_logger(config)
    streams = system.stdout, system.stderr
    for _ in range(3):
        init_logger(config)  # RecBole calls colorama.init(autoreset=True) each time: one more wrapper each
    assert (system.stdout, system.stderr) == streams


def test_cli_writes_result_json(tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "run_recbole_lightemb.py"), "--model=BPR", "--emb=uniform",
           "--emb_budget=0.25", "--epochs=1", "--show_progress=False", f"--result_file={out}",
           f"--checkpoint_dir={tmp_path / 'saved'}"]
    done = subprocess.run([sys.executable, "-W", "default"] + cmd[1:], cwd=tmp_path, check=True, capture_output=True,
                          text=True, timeout=300)
    assert "Warning" not in done.stderr, done.stderr[-2000:]  # RecBole's known warnings are silenced by name
    result = json.loads(out.read_text())
    assert result["dataset"] == "ml-100k" and result["emb"] == "uniform"
    assert result["compression"]["ratio"] <= 0.26
    assert set(result["timing"]) == {"plan_s", "train_s", "eval_s"}
    lines = done.stdout.strip().splitlines()  # a short summary on stdout, the log on stderr
    assert lines[0].startswith("BPR on ml-100k, emb=uniform: bytes ratio 0.2500") and len(lines) == 4
    assert "recall@10" in lines[1] and "the epoch cap, not converged" in lines[2]


@pytest.mark.parametrize("argv, config_dict, match", [
    (["--emb", "uniform"], {}, "--emb uniform: RecBole reads command-line keys only as --key=value"),
    (["--emb_budgt=0.25"], {"emb": "uniform"}, "emb_budgt=.*not a recbole-lightemb key; did you mean emb_budget"),
    ([], {"emb": "uniform", "emb_budget": 0.25, "baco_secondry": True}, "did you mean baco_secondary"),
    ([], {"stream": "maybe"}, "stream='maybe': expected True or False"),
    ([], {"emb": "uniform", "emb_budget": 0.25, "ciess_mode": "slow"}, "ciess_mode='slow': allowed paper, fast"),
    ([], {"emb": "full", "baco_mode": "authors"}, "baco_mode='authors': allowed paper, stated"),
    ([], {"stream": True, "emb_test_curve": True}, "emb_test_curve=True: not supported with stream=True"),
])
def test_keys_that_would_be_ignored_or_misread_are_errors(argv, config_dict, match, tiny_config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run"] + argv)
    with pytest.raises(ValueError, match=match):
        Config(model="BPR", config_dict={**tiny_config, **config_dict})


@pytest.mark.parametrize("text, value", [("no", False), ("False", False), ("0", False), ("yes", True), ("true", True)])
def test_boolean_words_are_read_as_booleans(text, value, tiny_config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run", f"--baco_secondary={text}"])
    config = Config(model="BPR", config_dict={**tiny_config, "emb": "baco", "emb_budget": 0.5, "stream": text})
    assert config["baco_secondary"] is value and config["stream"] is value


def test_a_reused_plan_over_the_budget_is_refused(tiny_config):
    first = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "uniform", "emb_width": 32})
    plan = first["plan"]["file"]
    with pytest.raises(ValueError, match=r"emb_plan=.* stores 0\.5000 of the full bytes, over emb_budget=0\.1"):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.1,
                                                       "emb_plan": plan})
    again = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.5,
                                                           "emb_plan": plan})
    assert again["compression"]["ratio"] == 0.5


def test_a_plan_made_on_other_data_is_refused_before_training(tiny_config, ml100k_config):
    first = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "baco", "emb_budget": 0.5})
    with pytest.raises(ValueError, match="user_codes holds .* rows but this dataset's user table has 944"):
        run_recbole_lightemb(model="BPR", dataset="ml-100k",
                             config_dict={**ml100k_config, "emb": "baco", "emb_budget": 0.5,
                                          "emb_plan": first["plan"]["file"]})


@pytest.mark.parametrize("content", [b"", b"not a zip at all"])
def test_a_broken_plan_is_named_before_any_data_loads(tiny_config, tmp_path, monkeypatch, content):
    broken = tmp_path / "broken.plan.npz"
    broken.write_bytes(content)
    import recbole_lightemb.quick_start as quick_start

    monkeypatch.setattr(quick_start, "start_run", lambda config: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match=f"emb_plan='{broken}': not a readable plan file"):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.5,
                                                       "emb_plan": str(broken)})


def test_tables_named_under_the_wrong_role_are_refused(tiny_config):
    with pytest.raises(ValueError, match="'item_embedding' has .* rows but the dataset has .* users"):
        run_recbole_lightemb(model="BPR", config_dict={
            **tiny_config, "emb": "uniform", "emb_budget": 0.5,
            "emb_tables": {"user": ["item_embedding"], "item": ["user_embedding"]}})


def test_a_table_listed_twice_is_refused():
    """Twice under one name, or under two names of one tied table: it would be built (and budgeted) twice."""
    from types import SimpleNamespace

    from torch import nn

    from recbole_lightemb import find_embedding_tables

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.item_embedding = nn.Embedding(6, 8)
            self.output_embedding = self.item_embedding
            self.user_embedding = nn.Embedding(5, 8)

    dataset = SimpleNamespace(user_num=5, item_num=6, uid_field="user_id", iid_field="item_id")
    ok = find_embedding_tables(Tied(), dataset, {"emb_tables": {"item": ["output_embedding"]}})
    assert [s.name for s in ok[0]] == ["output_embedding"]
    with pytest.raises(ValueError, match=r"'output_embedding' \(tied to 'item_embedding': the same table\) is "
                                         r"listed twice, under 'item' and 'item'"):
        find_embedding_tables(Tied(), dataset, {"emb_tables": {"item": ["item_embedding", "output_embedding"]}})
    with pytest.raises(ValueError, match="'item_embedding' is listed twice"):
        find_embedding_tables(Tied(), dataset, {"emb_tables": {"item": ["item_embedding", "item_embedding"]}})


@pytest.mark.parametrize("key, value", [("stream_window", float("nan")), ("stream_reservoir", float("inf")),
                                        ("emb_budget", float("nan"))])
def test_non_finite_numbers_are_refused(key, value, tiny_config):
    with pytest.raises(ValueError, match=f"{key}=.*expected a finite number"):
        Config(model="BPR", config_dict={**tiny_config, "emb": "uniform", key: value})


@pytest.mark.parametrize("kwargs, match", [({"nproc": 0}, "nproc=0"), ({"nproc": -2}, "nproc=-2"),
                                           ({"nproc": 2, "world_size": 1}, "world_size=1")])
def test_bad_process_counts_are_refused(kwargs, match):
    from recbole_lightemb import run

    with pytest.raises(ValueError, match=match):
        run("BPR", "ml-100k", **kwargs)


def test_cli_config_errors_are_one_line_with_status_2(tmp_path):
    cmd = [sys.executable, str(ROOT / "run_recbole_lightemb.py"), "--emb=uniform", "--emb_budget=1.5"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: emb_budget=1.5")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("config_dict, match", [
    ({"emb": "uniform", "emb_width": 100}, "emb_width=100: must be at most embedding_size=64"),
    ({"emb": "uniform", "emb_budget": 0.001}, r"emb_budget=0.001 leaves less than one float .* >= 0.01562"),
    ({"emb": "uniform", "emb_budget": 0.5, "embedding_size": 0}, "embedding_size=0: expected a positive integer"),
    ({"emb": "ciess", "emb_budget": 0.5, "ciess_s_min": 100}, "ciess_s_min=100: must be at most embedding_size=64"),
])
def test_budget_errors_come_before_any_data_loads(config_dict, match, tiny_config, monkeypatch):
    import recbole_lightemb.quick_start as quick_start

    monkeypatch.setattr(quick_start, "start_run", lambda config: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **config_dict})


def test_numpy_numbers_are_accepted_as_budgets_and_widths(tiny_config):
    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "uniform",
                                                            "emb_budget": np.float32(0.25)})
    assert result["compression"]["ratio"] == 0.25
    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "uniform", "emb_width": np.int64(8)})
    assert result["compression"]["ratio"] == 0.125


def test_models_without_id_tables_get_no_context_model_hint(tiny_config):
    with pytest.raises(ValueError, match="it may have no id embedding at all") as caught:
        run_recbole_lightemb(model="Pop", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.5})
    assert "FMEmbedding" not in str(caught.value)


def test_training_memory_is_reported_beside_stored_bytes(tiny_config):
    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.25})
    training = result["compression"]["training"]
    assert training["param_bytes"] == result["compression"]["stored_bytes"]
    assert training["optimizer_bytes"] == 2 * training["param_bytes"]  # Adam: two moments per float
    assert training["ratio"] == pytest.approx(0.25)


def test_an_unknown_model_is_named_with_the_closest_names(tiny_config):
    with pytest.raises(ValueError, match="model='LightGCM': not a RecBole model; closest: LightGCN"):
        Config(model="LightGCM", config_dict=tiny_config)


def test_cli_help_answers_without_importing_recbole():
    script = ("import runpy, sys\nsys.argv = ['run_recbole_lightemb.py', '--help']\ntry:\n"
              f"    runpy.run_path({str(ROOT / 'run_recbole_lightemb.py')!r}, run_name='__main__')\n"
              "except SystemExit as end:\n    assert end.code == 0\nprint('recbole' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False" and "--emb_budget" in done.stdout


def test_the_baco_paper_preset_sets_the_authors_protocol(tiny_config):
    preset = ROOT / "properties" / "presets" / "baco_lightgcn_beauty.yaml"
    config = Config(config_file_list=[str(preset)],
                    config_dict={**{k: v for k, v in tiny_config.items() if k not in ("epochs", "train_batch_size")},
                                 "benchmark_filename": None, "emb": "baco", "emb_budget": 0.25})
    assert config["model"] == "LightGCN" and config["n_layers"] == 2 and config["embedding_size"] == 64
    assert (config["epochs"], config["eval_step"], config["stopping_step"]) == (1000, 10, 5)
    assert (config["learning_rate"], config["weight_decay"], config["reg_weight"]) == (0.001, 1e-8, 0.0)
    assert config["train_batch_size"] == 1024 and config["valid_metric"] == "Recall@20"
