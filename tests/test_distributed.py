"""RecBole's multi-process (DDP) path on CPU with gloo: two workers train one epoch together."""

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from recbole_lightemb import compat, run, run_recbole_lightemb
from recbole_lightemb.plan import Plan


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.parametrize("emb, extra", [("uniform", {"emb_budget": 0.25}), ("baco", {"emb_budget": 0.5})])
def test_two_gloo_workers_match_one_process(emb, extra, tiny_config):
    config = {**tiny_config, "emb": emb, **extra, "epochs": 2, "train_batch_size": 64}
    single = run_recbole_lightemb(model="BPR", config_dict=dict(config))
    double = run("BPR", None, config_dict=dict(config), nproc=2, ip="127.0.0.1", port=free_port())
    assert double["compression"] == single["compression"]
    assert Plan.load(double["plan"]["file"]).digest() == Plan.load(single["plan"]["file"]).digest()
    for key, value in single["test_result"].items():
        # Different batch order and negatives, and RecBole's DistributedSampler repeats up to
        # world_size - 1 users to even out the ranks: close, not equal.
        assert double["test_result"][key] == pytest.approx(value, abs=0.08)


def test_plan_digest_tells_plans_apart():
    import numpy as np

    a = Plan("x", {"c": np.arange(3)}, {"g": 1.0})
    assert a.digest() == Plan("x", {"c": np.arange(3)}, {"g": 1.0}).digest()
    assert a.digest() != Plan("x", {"c": np.arange(3)[::-1]}, {"g": 1.0}).digest()
    assert a.digest() != Plan("x", {"c": np.arange(3)}, {"g": 2.0}).digest()


def _load_best_on_rank(rank, port, out_dir):
    """One rank of a 2-process group: each names its own checkpoint, as RecBole's clock may make it."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    trainer = SimpleNamespace(config={"single_spec": False}, saved_model_file=f"LightGCN-rank{rank}.pth")
    evaluate = compat._best_checkpoint_of_rank_zero(lambda self, *args: self.saved_model_file)
    Path(out_dir, f"{rank}.txt").write_text(evaluate(trainer, None))
    dist.destroy_process_group()


def test_every_rank_loads_the_checkpoint_rank_zero_wrote(tmp_path):
    mp.spawn(_load_best_on_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"{rank}.txt").read_text() for rank in (0, 1)] == ["LightGCN-rank0.pth"] * 2


def test_the_patched_evaluate_takes_rank_zeros_name_before_loading(monkeypatch):
    """The rank-0 fix sits outside the data-only loader, so every rank loads rank 0's finished file."""
    from recbole.trainer import Trainer

    calls = []

    def broadcast(names, src):
        names[0] = "rank0.pth"
        calls.append("broadcast")

    monkeypatch.setattr(dist, "broadcast_object_list", broadcast)
    monkeypatch.setattr(dist, "barrier", lambda: calls.append("barrier"))
    trainer = SimpleNamespace(config={"single_spec": False}, saved_model_file="rank1-own-clock.pth")
    Trainer.evaluate(trainer, None)  # no data: nothing is loaded or evaluated after the names are agreed
    assert trainer.saved_model_file == "rank0.pth" and calls == ["broadcast", "barrier"]
