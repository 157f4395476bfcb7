"""RecBole's multi-process (DDP) path on CPU with gloo: two workers train one epoch together."""

import socket

import pytest

from recbole_lightemb import run, run_recbole_lightemb
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
