"""``resume_checkpoint``: a stopped run trains on from its checkpoint, with its own plan."""

import os

import pytest
import torch

from recbole_lightemb import run_recbole_lightemb
from recbole_lightemb.plan import Plan


def _checkpoint_of(result):
    return result["plan"]["file"].replace(".plan.npz", ".pth")


def test_a_resumed_run_goes_on_from_the_checkpoint_and_overwrites_it(tiny_config):
    config = {**tiny_config, "emb": "baco", "emb_budget": 0.3, "epochs": 2, "stopping_step": 50}
    first = run_recbole_lightemb(model="BPR", config_dict=config)
    checkpoint = _checkpoint_of(first)
    saved = torch.load(checkpoint, weights_only=True)
    stopped_at, digest = saved["epoch"], Plan.load(first["plan"]["file"]).digest()
    resumed = run_recbole_lightemb(model="BPR", config_dict={**config, "epochs": 4, "resume_checkpoint": checkpoint})
    convergence = resumed["convergence"]
    assert convergence["resumed_at_epoch"] == stopped_at and convergence["epochs_run"] == 4
    assert convergence["epochs_trained"] == 4 - (stopped_at + 1)  # only the epochs after the checkpoint
    # the weights of the checkpoint, not a fresh init: they score its best validation score again
    assert convergence["resumed_valid_score"] == pytest.approx(saved["best_valid_score"])
    assert resumed["best_valid_result"]["recall@10"] >= 0  # a best result even when no later epoch beats it
    assert Plan.load(resumed["plan"]["file"]).digest() == digest  # the same codebook rows
    assert [f for f in os.listdir(os.path.dirname(checkpoint)) if f.endswith(".pth")] == [os.path.basename(checkpoint)]
    assert resumed["compression"]["ratio"] == first["compression"]["ratio"]


def test_resume_is_refused_before_training_when_it_cannot_fit(tiny_config):
    config = {**tiny_config, "emb": "uniform", "emb_budget": 0.5, "epochs": 2}
    checkpoint = _checkpoint_of(run_recbole_lightemb(model="BPR", config_dict=config))
    for key, value in (("emb", "hash"), ("emb_budget", 0.25), ("learning_rate", 0.01)):
        with pytest.raises(ValueError, match=rf"resume_checkpoint=.*written with {key}=.*this run has {key}="):
            run_recbole_lightemb(model="BPR", config_dict={**config, key: value, "resume_checkpoint": checkpoint})
    with pytest.raises(ValueError, match=r"resume_checkpoint=.*written with model='BPR'"):
        run_recbole_lightemb(model="NeuMF", config_dict={**config, "resume_checkpoint": checkpoint})
    with pytest.raises(ValueError, match=r"resume_checkpoint=.*its best epoch is \d, and epochs=1 leaves none"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "epochs": 1, "resume_checkpoint": checkpoint})
    with pytest.raises(ValueError, match=r"resume_checkpoint=.*emb=ciess trains through its own trainer"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "emb": "ciess", "resume_checkpoint": checkpoint})
    with pytest.raises(ValueError, match=r"resume_checkpoint='nowhere.pth': expected the path of a checkpoint"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "resume_checkpoint": "nowhere.pth"})
    os.remove(checkpoint.replace(".pth", ".plan.npz"))
    with pytest.raises(ValueError, match=r"resume_checkpoint=.*no plan beside it .*pass the run's plan as emb_plan"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "epochs": 4, "resume_checkpoint": checkpoint})


def test_a_resumed_run_reports_the_curve_of_the_epochs_before_it_stopped(tiny_config):
    config = {**tiny_config, "emb": "uniform", "emb_budget": 0.5, "epochs": 3, "stopping_step": 50,
              "emb_test_curve": True}
    first = run_recbole_lightemb(model="BPR", config_dict=config)
    checkpoint = _checkpoint_of(first)
    stopped_at = torch.load(checkpoint, weights_only=True)["epoch"]
    kept = [p for p in first["convergence"]["curve"] if p["epochs"] <= stopped_at + 1]
    resumed = run_recbole_lightemb(model="BPR", config_dict={**config, "epochs": 5, "resume_checkpoint": checkpoint})
    curve = resumed["convergence"]["curve"]
    assert curve[:len(kept)] == kept and all("test" in p for p in curve)  # the first session's points, tests too
    assert [p["epochs"] for p in curve] == list(range(1, 6))  # then one per epoch trained after the checkpoint
    with open(checkpoint.replace(".pth", ".curve.json"), "w") as f:
        f.write('[{"epochs": "one", "valid": 0.1}]')
    with pytest.raises(ValueError, match=r"curve '.*\.curve\.json': expected a list of .*delete it to resume"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "epochs": 7, "resume_checkpoint": checkpoint})
