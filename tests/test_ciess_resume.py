"""A stopped CIESS search goes on from its last finished episode (``ciess_resume_search``)."""

import io
import os

import numpy as np
import pytest
import torch

from recbole_lightemb import load_data_and_model, run_recbole_lightemb
from recbole_lightemb.ciess.agent import TD3Agent
from recbole_lightemb.ciess.search_state import KIND, SUFFIX
from recbole_lightemb.ciess.trainer import CIESSTrainer

from test_ciess import TINY_SEARCH

TWO_EPISODES = {**TINY_SEARCH, "ciess_episodes": 2, "emb_budget": 0.3}


def _through_data(value):
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_an_agent_restored_from_its_state_learns_and_acts_as_the_original():
    agents = [TD3Agent(seed=3, hidden=8, batch_size=16, buffer_size=64, scalar_target_noise=True, authors=True)
              for _ in range(2)]
    rng = np.random.default_rng(0)
    for _ in range(3):
        s, s2 = rng.uniform(-1, 1, (20, 3)), rng.uniform(-1, 1, (20, 3))
        agents[0].remember(s, rng.uniform(-1, 1, 20), rng.normal(size=20), s2, False)
    agents[0].learn(3)
    agents[1].load(_through_data(agents[0].state()))
    for agent in agents:  # the same sampled rows and target noise from here on: the generators came along
        agent.learn(4)
    states = rng.uniform(-1, 1, (5, 3))
    assert np.array_equal(agents[0].act(states), agents[1].act(states))
    assert np.array_equal(agents[0].value(states, np.zeros(5)), agents[1].value(states, np.zeros(5)))
    assert agents[0].updates == agents[1].updates == 7


def _stop_in_episode(monkeypatch, episode):
    """Make the search raise KeyboardInterrupt at the first step of ``episode``."""
    choose = CIESSTrainer._choose
    calls = {"n": 0}

    def stopping(self, *args):
        if calls["n"] == episode * self.config["ciess_steps"] * len(self.roles):
            raise KeyboardInterrupt
        calls["n"] += 1
        return choose(self, *args)

    monkeypatch.setattr(CIESSTrainer, "_choose", stopping)


def test_a_stopped_search_resumes_after_its_last_episode_and_cleans_up(tiny_config, monkeypatch):
    config = {**tiny_config, **TWO_EPISODES}
    whole = run_recbole_lightemb(model="BPR", config_dict=config)
    saved = tiny_config["checkpoint_dir"]
    assert not [f for f in os.listdir(saved) if f.endswith(SUFFIX)]  # a finished run removes its search state

    with monkeypatch.context() as patch:
        _stop_in_episode(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            run_recbole_lightemb(model="BPR", config_dict=config)
    states = [os.path.join(saved, f) for f in os.listdir(saved) if f.endswith(SUFFIX)]
    assert len(states) == 1
    assert torch.load(states[0], weights_only=True)["episodes_done"] == 1

    resumed = run_recbole_lightemb(model="BPR", config_dict={**config, "ciess_resume_search": states[0]})
    history = resumed["plan"]["history"]
    steps = TWO_EPISODES["ciess_steps"]
    assert [(r["episode"], r["step"]) for r in history] == [(e, s) for e in range(2) for s in range(steps)]
    def seen(records):  # what a step found (its wall time aside)
        return [{k: v for k, v in r.items() if k != "step_s"} for r in records[:steps]]

    assert seen(history) == seen(whole["plan"]["history"])  # the first episode as the unstopped run saw it
    assert resumed["plan"]["resumed_at_episodes"] == [1]
    report = resumed["compression"]
    assert report["stored_bytes"] <= 0.3 * report["full_bytes"]
    assert not os.path.exists(states[0])
    checkpoint = resumed["plan"]["file"].replace(".plan.npz", ".pth")  # its config names the removed state file:
    assert load_data_and_model(checkpoint, data_path=tiny_config["data_path"])[1] is not None  # where: the caller's


class _Called:
    """An object a pickle would rebuild by calling code: a data-only reader refuses it."""

    def __reduce__(self):
        return (os.getcwd, ())


def _state_file(tiny_config, monkeypatch):
    with monkeypatch.context() as patch:
        _stop_in_episode(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **TWO_EPISODES})
    saved = tiny_config["checkpoint_dir"]
    return next(os.path.join(saved, f) for f in os.listdir(saved) if f.endswith(SUFFIX))


def test_a_search_state_is_checked_before_any_data_is_loaded(tiny_config, monkeypatch, tmp_path):
    path = _state_file(tiny_config, monkeypatch)
    config = {**tiny_config, **TWO_EPISODES, "ciess_resume_search": path}
    with pytest.raises(ValueError, match=r"ciess_resume_search=.*written with ciess_lambda=0\.01, this run has "
                                         r"ciess_lambda=0\.5"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "ciess_lambda": 0.5})
    with pytest.raises(ValueError, match=r"written with seed=2020, this run has seed=7"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "seed": 7})
    with pytest.raises(ValueError, match=r"ciess_resume_search=.*a CIESS search's state; this run has emb='uniform'"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "emb": "uniform"})
    with pytest.raises(ValueError, match=r"ciess_resume_search=.*a reused plan"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "ciess_plan": path})
    with pytest.raises(ValueError, match=r"ciess_resume_search='nowhere.search.pth': expected the path"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "ciess_resume_search": "nowhere.search.pth"})

    code = tmp_path / "code.search.pth"
    torch.save({"kind": KIND, "episodes_done": 1, "call": _Called()}, code)  # refused, never built
    with pytest.raises(ValueError, match=r"refused, it holds Python objects that are not data"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "ciess_resume_search": str(code)})
    cut = tmp_path / "cut.search.pth"
    cut.write_bytes(open(path, "rb").read()[:1000])
    with pytest.raises(ValueError, match=r"not a readable state file"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "ciess_resume_search": str(cut)})
    state = torch.load(path, weights_only=True)
    state["peak"]["user"] = state["peak"]["user"][:-1]  # settings that match, arrays that do not
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"ciess_resume_search=.*does not fit this run's model and agents \(its user "
                                         r"arrays do not have"):
        run_recbole_lightemb(model="BPR", config_dict=config)
    other = tmp_path / "other.search.pth"
    torch.save({"kind": "something else"}, other)
    with pytest.raises(ValueError, match=r"not a CIESS search state"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "ciess_resume_search": str(other)})
