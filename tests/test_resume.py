"""``resume_checkpoint``: a stopped run trains on from its checkpoint, with its own plan."""

import os

import pytest
import torch

from recbole_lightemb import run_recbole_lightemb


def _checkpoint_of(result):
    return result["plan"]["file"].replace(".plan.npz", ".pth")


def test_a_resumed_run_goes_on_from_the_checkpoint_and_overwrites_it(tiny_config):
    config = {**tiny_config, "emb": "baco", "emb_budget": 0.3, "epochs": 2, "stopping_step": 50}
    first = run_recbole_lightemb(model="BPR", config_dict=config)
    checkpoint = _checkpoint_of(first)
    saved = torch.load(checkpoint, weights_only=True)
    stopped_at = saved["epoch"]
    resumed = run_recbole_lightemb(model="BPR", config_dict={**config, "epochs": 4, "resume_checkpoint": checkpoint})
    convergence = resumed["convergence"]
    assert convergence["resumed_at_epoch"] == stopped_at and convergence["epochs_run"] == 4
    assert convergence["epochs_trained"] == 4 - (stopped_at + 1)  # only the epochs after the checkpoint
    assert convergence["best_epoch"] >= stopped_at
    assert resumed["plan"]["file"] == first["plan"]["file"]  # the same plan: the same codebook rows
    assert [f for f in os.listdir(os.path.dirname(checkpoint)) if f.endswith(".pth")] == [os.path.basename(checkpoint)]
    again = torch.load(checkpoint, weights_only=True)
    assert again["epoch"] >= stopped_at and resumed["compression"]["ratio"] == first["compression"]["ratio"]


def test_resume_is_refused_before_training_when_it_cannot_fit(tiny_config):
    config = {**tiny_config, "emb": "uniform", "emb_budget": 0.5}
    checkpoint = _checkpoint_of(run_recbole_lightemb(model="BPR", config_dict=config))
    with pytest.raises(ValueError, match=r"resume_checkpoint=.*written with emb='uniform', this run has emb='hash'"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "emb": "hash", "resume_checkpoint": checkpoint})
    with pytest.raises(ValueError, match=r"resume_checkpoint=.*written with model='BPR'"):
        run_recbole_lightemb(model="NeuMF", config_dict={**config, "resume_checkpoint": checkpoint})
    with pytest.raises(ValueError, match=r"resume_checkpoint=.*emb=ciess trains through its own trainer"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "emb": "ciess", "resume_checkpoint": checkpoint})
    with pytest.raises(ValueError, match=r"resume_checkpoint='nowhere.pth': expected the path of a checkpoint"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "resume_checkpoint": "nowhere.pth"})
    os.remove(checkpoint.replace(".pth", ".plan.npz"))
    with pytest.raises(ValueError, match=r"resume_checkpoint=.*no plan beside it .*pass the run's plan as emb_plan"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "resume_checkpoint": checkpoint})
