"""Shared fixtures: a tiny generated RecBole dataset, so model tests take seconds."""

import os
import sys
from pathlib import Path

import pytest
import torch

import recbole_lightemb  # noqa: F401  (applies the compatibility fixes before RecBole is used)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from tiny_data import CTR, write_tiny_ctr_dataset, write_tiny_dataset  # noqa: E402,F401

# Every test uses tiny tensors: more threads only contend (on 2 shared cores, 10x slower epochs).
torch.set_num_threads(1)

RUN_OUTPUTS = ("log", "log_tensorboard", "saved")
"""What RecBole writes into the working folder."""


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """RecBole writes ./log, ./log_tensorboard and ./saved: every test runs inside its own tmp_path."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True, scope="session")
def _checkout_stays_clean():
    """The suite leaves nothing in the checkout: fails at the end if RecBole wrote into it."""
    root = Path(__file__).resolve().parent.parent
    before = {name for name in RUN_OUTPUTS if (root / name).exists()}
    yield
    left = {name for name in RUN_OUTPUTS if (root / name).exists()} - before
    assert not left, f"the tests left {sorted(left)} in {root}"




DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                             reason="torch sees no CUDA device"))]
"""Every device torch can see: the CPU always; CUDA when present (its ids are skipped, with the reason, otherwise)."""


@pytest.fixture(params=DEVICES)
def device(request):
    """A device to run on, as the config keys that put a RecBole run there (``gpu_id``) and the ``torch.device``.
    RecBole writes ``CUDA_VISIBLE_DEVICES`` from ``gpu_id``: it is put back afterwards."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    yield {"gpu_id": "" if request.param == "cpu" else "0"}, torch.device(request.param)
    if visible is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible


@pytest.fixture
def tiny_config(tmp_path, monkeypatch):
    """A config dict for the tiny dataset; RecBole's ./log and ./saved go under tmp_path."""
    monkeypatch.chdir(tmp_path)
    write_tiny_dataset(tmp_path)
    return {
        "data_path": str(tmp_path),
        "dataset": "tiny",
        "epochs": 1,
        "train_batch_size": 256,
        "eval_batch_size": 4096,
        "checkpoint_dir": str(tmp_path / "saved"),
        "show_progress": False,
        "MAX_ITEM_LIST_LENGTH": 10,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[3,inf)",
        "item_inter_num_interval": "[1,inf)",
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"},
    }


@pytest.fixture
def ml100k_config(tmp_path, monkeypatch):
    """RecBole's bundled ml-100k, with logs and checkpoints under tmp_path."""
    monkeypatch.chdir(tmp_path)
    return {"checkpoint_dir": str(tmp_path / "saved"), "show_progress": False}


@pytest.fixture
def tiny_ctr_config(tiny_config, tmp_path):
    """``tiny_config`` for a context-aware model: the labelled tiny log with user and item features."""
    write_tiny_ctr_dataset(tmp_path)
    return {**tiny_config, **CTR}
