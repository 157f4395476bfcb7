"""A stopped stream goes on after its last finished segment (``stream_resume``)."""

import os

import pytest
import torch

from recbole_lightemb import run_recbole_lightemb
from recbole_lightemb.scall.planner import ScallPlanner
from recbole_lightemb.stream.planners import UniformStream
from recbole_lightemb.stream.resume import SUFFIX

from test_stream import tiny_config, write_tiny

SCALL_TINY = {"scall_mean_width": 4, "scall_search_batches": 2, "scall_min_search_steps": 2,
              "scall_max_search_steps": 3, "scall_settle_window": 2, "scall_hidden": 32}
VOLATILE = ("time_s", "plan_s", "train_s", "eval_s", "search_s", "convergence")
"""Row fields that are wall times (or hold them): not compared between an unstopped and a resumed stream."""


def _stop_at_segment(monkeypatch, planner_class, index):
    plan = planner_class.plan

    def stopping(self, segment, *args, **kwargs):
        if segment.index == index:
            raise KeyboardInterrupt
        return plan(self, segment, *args, **kwargs)

    monkeypatch.setattr(planner_class, "plan", stopping)


def _states(folder):
    return [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(SUFFIX)] if os.path.isdir(folder) else []


def _kept(row):
    return {k: v for k, v in row.items() if k not in VOLATILE and k != "search"} | {
        "search": {k: v for k, v in (row.get("search") or {}).items() if k not in VOLATILE}}


@pytest.mark.parametrize("emb,extra,planner", [
    ("uniform", {"emb_width": 4}, UniformStream),
    ("scall", SCALL_TINY, ScallPlanner),
    ("uniform", {"emb_budget": 0.125, "emb_bits": 4, "emb_master_free": True}, UniformStream),
])
def test_a_stopped_stream_resumes_after_its_last_segment_as_if_never_stopped(tmp_path, monkeypatch, emb, extra,
                                                                             planner):
    data_path = write_tiny(tmp_path)
    whole = run_recbole_lightemb("BPR", "tiny", config_dict=tiny_config(
        data_path, tmp_path, emb=emb, checkpoint_dir=str(tmp_path / "whole"), **extra))
    assert not _states(tmp_path / "whole")  # a finished stream removes its state

    config = tiny_config(data_path, tmp_path, emb=emb, **extra)
    with monkeypatch.context() as patch:
        _stop_at_segment(patch, planner, 2)
        with pytest.raises(KeyboardInterrupt):
            run_recbole_lightemb("BPR", "tiny", config_dict=config)
    states = _states(config["checkpoint_dir"])
    assert len(states) == 1 and torch.load(states[0], weights_only=True)["segments_done"] == 2

    resumed = run_recbole_lightemb("BPR", "tiny", config_dict={**config, "stream_resume": states[0]})
    assert [r["segment"] for r in resumed["segments"]] == [0, 1, 2]
    files = {"plan_file": None, "packed_file": None}  # in another folder
    assert [_kept(r) | files for r in resumed["segments"]] == [_kept(r) | files for r in whole["segments"]]
    stamps = {os.path.basename(r["plan_file"]).split("-stream-seg")[0] for r in resumed["segments"]}
    assert len(stamps) == 1  # one run id: the resumed segments' files sit beside the earlier ones
    assert resumed["test_result"] == pytest.approx(whole["test_result"])
    assert not os.path.exists(states[0])


def test_a_stream_state_is_checked_before_any_data_is_loaded(tmp_path, monkeypatch):
    data_path = write_tiny(tmp_path)
    config = tiny_config(data_path, tmp_path, emb="uniform", emb_width=4)
    with monkeypatch.context() as patch:
        _stop_at_segment(patch, UniformStream, 1)
        with pytest.raises(KeyboardInterrupt):
            run_recbole_lightemb("BPR", "tiny", config_dict=config)
    path = _states(config["checkpoint_dir"])[0]
    config["stream_resume"] = path
    with pytest.raises(ValueError, match=r"stream_resume=.*written with emb_width=4, this run has emb_width=5"):
        run_recbole_lightemb("BPR", "tiny", config_dict={**config, "emb_width": 5})
    with pytest.raises(ValueError, match=r"stream_resume=.*written with seed=2020, this run has seed=3"):
        run_recbole_lightemb("BPR", "tiny", config_dict={**config, "seed": 3})
    with pytest.raises(ValueError, match=r"stream_resume=.*for stream: True; this run has stream: False"):
        run_recbole_lightemb("BPR", "tiny", config_dict={**config, "stream": False})
    with pytest.raises(ValueError, match=r"stream_resume='nowhere': expected the path of a state file"):
        run_recbole_lightemb("BPR", "tiny", config_dict={**config, "stream_resume": "nowhere"})
    state = torch.load(path, weights_only=True)
    state["previous"]["tables"]["user_embedding"]["rows"] = torch.zeros(3, 16)  # settings fit, rows do not
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"warm start of user_embedding: rows of shape \(3, 16\)"):
        run_recbole_lightemb("BPR", "tiny", config_dict=config)
