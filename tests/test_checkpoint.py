"""Checkpoints are data only: crafted files run nothing, every checkpoint the plugin writes reloads."""

import copy
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from recbole.data import data_preparation
from recbole.utils import get_model, get_trainer

from recbole_lightemb import Config, load_data_and_model, run_recbole_lightemb
from recbole_lightemb.storage.checkpoint import CheckpointError, UntrustedCheckpointError, load_checkpoint
from recbole_lightemb.quick_start import start_run


class _Call:
    """Pickles as a call of ``func(*args)``: what a crafted checkpoint asks the loader to do."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def craft(path, config_dict, config_class=Config):
    """A checkpoint whose config, when loaded, calls ``config_class('BPR', 'ml-100k', None, config_dict)``."""
    torch.save({"config": _Call(config_class, ("BPR", "ml-100k", None, config_dict)), "epoch": 0, "cur_step": 0,
                "best_valid_score": 0.0, "state_dict": {}, "optimizer": {}}, path)
    return str(path)


def trained(tiny_config, emb, model="BPR", **extra):
    """A short run; returns (its result, its checkpoint path)."""
    result = run_recbole_lightemb(model=model, config_dict={**tiny_config, "emb": emb, **extra})
    checkpoint = [f for f in os.listdir(tiny_config["checkpoint_dir"]) if f.endswith(".pth")]
    return result, os.path.join(tiny_config["checkpoint_dir"], sorted(checkpoint)[-1])


def trainer_for(tiny_config, **extra):
    config = Config(model="BPR", config_dict={**tiny_config, **extra})
    train_data, _, test_data = data_preparation(config, start_run(config))
    model = get_model("BPR")(config, train_data._dataset)
    return get_trainer(config["MODEL_TYPE"], "BPR")(config, model), test_data


LOAD_PATHS = ("plugin load_data_and_model", "recbole load_data_and_model", "Trainer.evaluate",
              "Trainer.resume_checkpoint")


def load_by(path_name, file, tiny_config, trust):
    """Load ``file`` through one of the load paths the plugin offers or patches."""
    if path_name == "plugin load_data_and_model":
        return load_data_and_model(file, trust_checkpoint=trust, data_path=tiny_config["data_path"])
    if path_name == "recbole load_data_and_model":
        from recbole.quick_start import load_data_and_model as recbole_load

        return recbole_load(file, trust_checkpoint=trust)
    trainer, test_data = trainer_for(tiny_config, trust_checkpoint=trust)
    if path_name == "Trainer.evaluate":
        return trainer.evaluate(test_data, model_file=file)
    return trainer.resume_checkpoint(file)


@pytest.mark.parametrize("trust", [False, True])
@pytest.mark.parametrize("path_name", LOAD_PATHS)
def test_a_crafted_config_runs_no_code_on_any_load_path(tiny_config, tmp_path, path_name, trust):
    marker = tmp_path / "PWNED"
    payload = {"x": f"__import__('pathlib').Path({str(marker)!r}).touch()"}
    for config_class in (Config, Config.__mro__[1]):  # the plugin's Config and RecBole's own
        evil = craft(tmp_path / f"evil-{config_class.__module__}.pth", payload, config_class)
        with pytest.raises(CheckpointError) as caught:
            load_by(path_name, evil, tiny_config, trust)
        assert evil in str(caught.value)
        assert isinstance(caught.value, UntrustedCheckpointError) != trust
    assert not marker.exists()


def test_a_crafted_process_group_opens_no_connection(tmp_path):
    """Loading a config that would join a process group returns at once and never connects."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_checkpoint import craft
        from recbole_lightemb import Config, load_data_and_model
        from recbole_lightemb.storage.checkpoint import CheckpointError, load_checkpoint
        evil = craft({str(tmp_path / 'net.pth')!r}, {{"local_rank": 1, "world_size": 2, "ip": "127.0.0.1",
                                                       "port": "{port}"}})
        for trust in (False, True):
            for load in (load_checkpoint, load_data_and_model):
                try:
                    load(evil, trust=trust) if load is load_checkpoint else load(evil, trust_checkpoint=trust)
                except CheckpointError as error:
                    print("refused:", type(error).__name__)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("refused:") == 4
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()


@pytest.mark.parametrize("emb", ["full", "uniform", "hash", "qr", "baco", "freq", "quant"])
def test_every_checkpoint_reloads_as_data_with_identical_metrics(tiny_config, emb):
    budget = {"full": None, "qr": 0.5, "freq": 0.5}.get(emb, 0.25)  # qr, freq: 0.25 is too small on tiny data
    result, checkpoint = trained(tiny_config, emb, emb_budget=budget)
    torch.load(checkpoint, weights_only=True)  # no allow-list needed: tensors and plain values only
    config, model, _, _, _, test_data = load_data_and_model(checkpoint, data_path=tiny_config["data_path"])
    assert config["emb"] == emb and type(config) is Config
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(result["test_result"])


@pytest.mark.parametrize("model, emb", [("DeepFM", "baco"), ("DIN", "uniform")])
def test_context_aware_checkpoints_reload_with_identical_metrics(tiny_ctr_config, model, emb):
    """Their id rows are ranges of a shared token table; DIN also lists its embedding layer (a module) among
    its other parameters, which the checkpoint leaves to the state dict."""
    config = {**tiny_ctr_config, "eval_args": {**tiny_ctr_config["eval_args"], "order": "TO"}}
    result, checkpoint = trained(config, emb, model=model, emb_budget=0.25)
    torch.load(checkpoint, weights_only=True)
    config, model, _, _, _, test_data = load_data_and_model(checkpoint, data_path=tiny_ctr_config["data_path"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(result["test_result"])


def test_a_legacy_checkpoint_is_refused_unless_trusted_then_read_as_data(tiny_config, tmp_path):
    result, checkpoint = trained(tiny_config, "full")
    legacy = torch.load(checkpoint, weights_only=True)
    config = Config(model="BPR", config_dict={**tiny_config, "emb": "full"})
    legacy["config"] = copy.copy(config)
    legacy["config"].model_class = None
    old = tmp_path / "legacy.pth"
    torch.save(legacy, old, pickle_protocol=2)  # what the plugin wrote before 0.2
    with pytest.raises(UntrustedCheckpointError, match="trust_checkpoint=True"):
        load_checkpoint(old)
    loaded = load_checkpoint(old, trust=True)
    assert loaded["config"]["model"] == "BPR" and loaded["config"]["seed"] == config["seed"]
    trainer, test_data = trainer_for(tiny_config, trust_checkpoint=True)
    assert dict(trainer.evaluate(test_data, model_file=str(old))) == dict(result["test_result"])


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"garbage" * 10, "not a readable"),
                                            (None, "not a readable")])
def test_broken_checkpoints_get_a_named_error(tiny_config, tmp_path, content, reason):
    broken = tmp_path / "broken.pth"
    if content is None:  # a real checkpoint cut short, as by a run killed while writing
        _, checkpoint = trained(tiny_config, "full")
        content = open(checkpoint, "rb").read()[:2000]
    broken.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason) as caught:
        load_data_and_model(str(broken))
    assert str(broken) in str(caught.value) and "weights_only=False" not in str(caught.value)


def test_a_pickled_call_is_refused_naming_it(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "call.pth"
    torch.save({"state_dict": {}, "x": _Call(os.system, (f"touch {marker}",))}, evil)
    with pytest.raises(CheckpointError, match="refused.*system"):
        load_checkpoint(evil, trust=True)
    assert not marker.exists()


def _data_checkpoint(tiny_config, tmp_path, **final):
    """A plugin (data-only) checkpoint whose stored config has ``final`` changed, as a crafted file would."""
    from recbole_lightemb.storage.checkpoint import config_to_data

    config = Config(model="BPR", config_dict={**tiny_config, "emb": "full"})
    data = config_to_data(config)
    data["final_config_dict"].update(final)
    path = tmp_path / "crafted.pth"
    torch.save({"config": data, "state_dict": {}, "epoch": 0, "cur_step": 0, "best_valid_score": 0.0}, path)
    return str(path)


def test_rebuilding_from_a_crafted_config_evaluates_and_unpickles_nothing(tiny_config, tmp_path):
    marker = tmp_path / "PWNED"
    evil = _data_checkpoint(tiny_config, tmp_path, model="KD_DAGFM",
                            teacher=f"__import__('pathlib').Path({str(marker)!r}).touch() or CrossNet")
    with pytest.raises(CheckpointError, match="KD_DAGFM would read a file"):
        load_data_and_model(evil, data_path=tiny_config["data_path"])
    import pickle

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Call(os.system, (f"touch {marker}",))))
    evil = _data_checkpoint(tiny_config, tmp_path, dataset_save_path=str(tmp_path / "evil.pkl"),
                            dataloaders_save_path=str(tmp_path / "evil.pkl"), pre_model_path=str(tmp_path / "x.pth"))
    with pytest.raises(CheckpointError, match="differ from the ones it holds"):  # the empty state_dict
        load_data_and_model(evil, data_path=tiny_config["data_path"])
    assert not marker.exists()


def test_a_plain_recbole_checkpoint_is_refused_or_read_as_trusted_data(tiny_config, tmp_path):
    import numpy as np
    from recbole.config import Config as RecBoleConfig

    config = RecBoleConfig("BPR", "tiny", config_dict={k: v for k, v in tiny_config.items()})
    state = {"config": config, "state_dict": {}, "best_valid_score": np.float64(0.1), "epoch": 1, "cur_step": 0}
    torch.save(state, tmp_path / "p2.pth")  # its model_class reference and NumPy score included
    with pytest.raises(UntrustedCheckpointError):
        load_checkpoint(tmp_path / "p2.pth")
    loaded = load_checkpoint(tmp_path / "p2.pth", trust=True)
    assert loaded["config"]["model"] == "BPR" and loaded["best_valid_score"] == 0.1
    torch.save(state, tmp_path / "p4.pth", pickle_protocol=4)  # what RecBole 1.2.1 itself writes
    with pytest.raises(CheckpointError, match="pickle protocol 4"):
        load_checkpoint(tmp_path / "p4.pth", trust=True)


def test_a_methods_own_keys_come_back_from_its_checkpoint(tiny_config, caplog):
    config = {**tiny_config, "emb": "quant", "emb_budget": 0.25, "quant_bits": 8}
    run_recbole_lightemb(model="BPR", config_dict=config)
    saved = [f for f in os.listdir(tiny_config["checkpoint_dir"]) if f.endswith(".pth")]
    loaded, *_ = load_data_and_model(os.path.join(tiny_config["checkpoint_dir"], saved[0]),
                                     data_path=tiny_config["data_path"])
    assert loaded["quant_bits"] == 8  # quant.yaml's key, not dropped for want of a default
    assert "were not applied" not in caplog.text
