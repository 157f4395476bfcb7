"""The helper scripts under bench/ that users run before a benchmark."""

import json
import math
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_the_authors_beauty_split_converts_to_atomic_files(tmp_path):
    src = tmp_path / "Beauty-processed"
    src.mkdir()
    for part, pairs in {"train": [[0, 1, 1], [5, 6, 7]], "val": [[0], [8]], "test": [[1], [9]]}.items():
        torch.save(torch.tensor(pairs), src / f"{part}.pt")
    done = subprocess.run([sys.executable, str(BENCH / "beauty_to_atomic.py"), "--src", str(src), "--out",
                           str(tmp_path / "data")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    train = (tmp_path / "data" / "beauty" / "beauty.train.inter").read_text().splitlines()
    assert train == ["user_id:token\titem_id:token", "0\t5", "1\t6", "1\t7"]
    assert (tmp_path / "data" / "beauty" / "beauty.valid.inter").read_text().splitlines()[1] == "0\t8"


def test_a_file_that_is_not_plain_tensors_is_refused(tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "train.pt").write_bytes(b"garbage")
    done = subprocess.run([sys.executable, str(BENCH / "beauty_to_atomic.py"), "--src", str(src), "--out",
                           str(tmp_path / "data")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "train.pt is not a readable tensor file" in done.stderr


def test_the_coverage_table_lists_every_model_group_and_numbers_the_reasons(tmp_path):
    import model_coverage

    models = dict((name, group) for group, name in model_coverage.recbole_models())
    assert {models[m] for m in ("BPR", "SASRec", "FM", "DIN", "KGCN")} == {"general", "sequential", "context-aware",
                                                                           "knowledge"}
    assert len(models) >= 80
    model_coverage.write_datasets(tmp_path)
    cells = {method: model_coverage.run_cell("context-aware", "FM", method, tmp_path) for method in ("qr", "ciess")}
    assert cells["qr"]["ok"] and cells["qr"]["ratio"] <= model_coverage.BUDGET
    assert not cells["ciess"]["ok"] and "emb=ciess ranks all items" in cells["ciess"]["error"]
    table = model_coverage.format_table({"FM": {"group": "context-aware", "cells": cells}}, ["qr", "ciess"])
    assert "| context-aware | FM | ✓ | ✗1 |" in table and "1. `ValueError: eval_args.mode=" in table


def test_the_ciess_signal_pairs_each_step_with_its_converged_run_and_uniform_at_its_bytes(tmp_path, monkeypatch):

    import ciess_signal

    monkeypatch.setattr(ciess_signal, "OUT", tmp_path / "ciess_signal")
    monkeypatch.setattr(ciess_signal, "RESULTS", tmp_path)
    folder = tmp_path / "ciess_signal" / "t"
    folder.mkdir(parents=True)
    history = [{"episode": 0, "quality": q, "user_reward": -q} for q in (0.1, 0.3, 0.2, 0.4)]
    (folder / "search.json").write_text(json.dumps({"plan": {"history": history}}))
    kept, test = (0.1, 0.2, 0.4, 0.8), (0.20, 0.31, 0.27, 0.36)  # test follows the step quality, not the bytes
    for k, (ratio, value) in enumerate(zip(kept, test)):
        run = {"error": None, "compression": {"ratio": ratio}, "valid": {"recall@20": value},
               "test": {"recall@20": value}, "convergence": {"converged": True, "epochs_run": 10}}
        (folder / f"step{k:02d}.json").write_text(json.dumps(run))
    uniform = tmp_path / "frontier" / "bpr-ml100k"
    uniform.mkdir(parents=True)
    for label, method, ratio, value in (("full", "full", 1.0, 0.4), ("uniform-0.1", "uniform", 0.1, 0.2)):
        (uniform / f"{label}-seed7.json").write_text(json.dumps({  # as the frontier writes them
            "method": method, "seed": 7, "error": None, "compression": {"ratio": ratio},
            "test": {"recall@20": value}, "label": label, "extra": {}}))
    summary = ciess_signal.summarise("t", seed=7)
    assert [r["step"] for r in summary["steps"]] == [0, 1, 2, 3]
    assert summary["steps"][0]["vs_uniform"] == pytest.approx(0.0)
    assert summary["steps"][1]["uniform_at_bytes"] == pytest.approx(0.2 + 0.2 * math.log(2) / math.log(10))
    assert summary["spearman"]["step_quality"]["test"] == pytest.approx(1.0)
    assert summary["spearman"]["step_user_reward"]["test"] == pytest.approx(-1.0)
    assert summary["spearman"]["kept"]["test"] == pytest.approx(0.8)
    assert ciess_signal.spearman([1, 1, 1], [1, 2, 3]) is None


def test_a_run_capped_below_a_raised_cap_is_done_again_and_the_others_are_kept(tmp_path, monkeypatch):
    import frontier

    monkeypatch.setattr(frontier, "OUT", tmp_path)
    cap = frontier.SETTINGS["lightgcn-ml100k"]["config"]["epochs"]
    runs = {"stopped": (None, True, 600), "capped-low": (None, False, cap - 1), "capped-now": (None, False, cap),
            "failed": ("RuntimeError: x", None, None)}
    for label, (error, converged, epoch_cap) in runs.items():
        path = frontier.run_path("lightgcn-ml100k", label, 2020)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"error": error, "convergence": {"converged": converged, "epoch_cap": epoch_cap}}))
    todo = {label for label in [*runs, "absent"] if frontier.to_do("lightgcn-ml100k", label, 2020)}
    assert todo == {"capped-low", "absent"}
    assert frontier.to_do("lightgcn-ml100k", "failed", 2020, retry_failed=True)


def _running(pid):
    """Whether process ``pid`` exists and is not a zombie (a container's init may not reap orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_run_held_by_another_live_process_is_not_claimed_until_that_process_ends(tmp_path, monkeypatch):
    import frontier

    monkeypatch.setattr(frontier, "WORK", tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(BENCH)!r})
import frontier
from pathlib import Path
frontier.WORK = Path({str(tmp_path)!r})
held = frontier.claim_run("tiny", "uniform-0.5", 2020)
print("held" if held else "refused", flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert select.select([holder.stdout], [], [], 120)[0], "the holder never answered"
        assert holder.stdout.readline().strip() == "held"
        assert frontier.claim_run("tiny", "uniform-0.5", 2020) is None
        other_seed = frontier.claim_run("tiny", "uniform-0.5", 2021)
        assert other_seed is not None
        other_seed.close()
    finally:
        holder.kill()
        holder.wait()
    claimed = frontier.claim_run("tiny", "uniform-0.5", 2020)  # the lock ended with its process
    assert claimed is not None
    claimed.close()


def test_a_queued_run_finished_meanwhile_by_another_frontier_is_not_trained_again(tmp_path, monkeypatch, capsys):
    import frontier

    monkeypatch.setattr(frontier, "WORK", tmp_path / "work")
    monkeypatch.setattr(frontier, "stop_when_orphaned", lambda: None)  # called here outside a pool
    monkeypatch.setattr(frontier, "OUT", tmp_path / "out")
    path = frontier.run_path("tiny", "uniform-0.5", 2020)
    path.parent.mkdir(parents=True)
    finished = json.dumps({"error": None, "convergence": {"converged": True, "epoch_cap": 10}})
    path.write_text(finished)
    task = ("tiny", ("uniform-0.5", "uniform", 0.5, {}), 2020, None, 1, str(tmp_path / "out"), None, False)
    assert frontier._one_run(task) is None
    assert path.read_text() == finished
    assert "has finished it; skipped" in capsys.readouterr().out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_run_process_ends_once_the_frontier_that_started_it_is_gone():
    script = f"""
import os, sys, time
sys.path.insert(0, {str(BENCH)!r})
import frontier
parent = os.getpid()
child = os.fork()
if child == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    frontier.stop_when_orphaned(parent, interval=0.05)
    time.sleep(600)
    os._exit(0)
print(child, flush=True)
"""  # the parent exits at once, as a killed frontier does; its child is the pool worker left behind
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    child = int(done.stdout.split()[-1])
    try:
        for _ in range(200):
            if not _running(child):
                break
            time.sleep(0.1)
        assert not _running(child)
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)


def test_a_running_arm_is_found_by_its_method_budget_and_own_keys():
    from frontier import arm_of

    base = {"emb": "baco", "emb_budget": 0.25, "baco_item_weight": "CPM", "baco_residual": 0, "baco_residual_bits": 32,
            "baco_mode": "stated"}  # the arms defined before the paper modes keep the mode their runs used
    assert arm_of("lightgcn-beauty", base) == "baco-0.25"
    assert arm_of("lightgcn-beauty", {**base, "baco_mode": "paper"}) is None
    assert arm_of("lightgcn-beauty", {**base, "baco_item_weight": "degree"}) == "baco-0.25[item=degree]"
    assert arm_of("lightgcn-beauty", {**base, "baco_residual": 48, "baco_residual_bits": 4}) == \
        "baco-0.25[residual=48@4bit]"
    assert arm_of("lightgcn-beauty", {**base, "emb_budget": 0.3}) is None
    assert arm_of("lightgcn-beauty", {"emb": "full", "emb_budget": None}) == "full"


def test_a_stopped_frontier_run_resumes_from_its_best_epoch_and_clears_its_folder_and_snapshot(tiny_config, tmp_path, monkeypatch):

    import frontier

    from recbole_lightemb import run_recbole_lightemb

    monkeypatch.setattr(frontier, "WORK", tmp_path / "work")
    monkeypatch.setattr(frontier, "OUT", tmp_path / "out")
    keys = {k: v for k, v in tiny_config.items() if k not in ("checkpoint_dir", "dataset")}
    monkeypatch.setitem(frontier.SETTINGS, "tiny", {"model": "BPR", "dataset": "tiny", "seeds": 1,
                                                    "arms": [("uniform-0.5", "uniform", 0.5, {})],
                                                    "config": {**keys, "epochs": 3, "eval_step": 1}})
    folder = frontier.work_dir("tiny", "uniform-0.5", 2020)
    snapshot = tmp_path / "out" / "tiny" / "unfinished" / "uniform-0.5-seed2020.json"
    snapshot.parent.mkdir(parents=True)
    snapshot.write_text("{}")
    stopped = run_recbole_lightemb(model="BPR", dataset="tiny", config_dict={  # the run, stopped after epoch 0
        **frontier.PROTOCOL, **keys, "epochs": 1, "emb": "uniform", "emb_budget": 0.5, "seed": 2020,
        "checkpoint_dir": str(folder / "saved")})
    assert stopped["convergence"]["epochs_run"] == 1
    path = frontier._train_one("tiny", "uniform-0.5", "uniform", 0.5, {}, 2020, None, torch.get_num_threads())
    run = json.loads(Path(path).read_text())
    assert run["error"] is None and run["convergence"]["resumed_at_epoch"] == 0
    assert run["convergence"]["epochs_trained"] == 2 and run["convergence"]["epochs_run"] == 3
    assert not folder.exists() and not snapshot.exists()


def _two_segment_stream_setting(frontier, tiny_config, tmp_path, monkeypatch):
    """A frontier setting ``tiny-stream`` (uniform-0.5 on two segments of the tiny data), written under tmp_path."""
    monkeypatch.setattr(frontier, "WORK", tmp_path / "work")
    monkeypatch.setattr(frontier, "OUT", tmp_path / "out")
    keys = {k: v for k, v in tiny_config.items() if k not in ("checkpoint_dir", "dataset")}
    monkeypatch.setitem(frontier.SETTINGS, "tiny-stream", {
        "model": "BPR", "dataset": "tiny", "seeds": 1, "arms": [("uniform-0.5", "uniform", 0.5, {})],
        "config": {**keys, "epochs": 1, "eval_step": 1, "stream": True, "stream_segments": 2}})


def test_a_stopped_stream_run_starts_again_instead_of_resuming(tiny_config, tmp_path, monkeypatch, capsys):
    import frontier

    _two_segment_stream_setting(frontier, tiny_config, tmp_path, monkeypatch)
    stale = frontier.work_dir("tiny-stream", "uniform-0.5", 2020) / "saved" / "BPR-stream-seg0.pth"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")  # a segment checkpoint left by a stopped stream run
    path = frontier._train_one("tiny-stream", "uniform-0.5", "uniform", 0.5, {}, 2020, None, torch.get_num_threads())
    run = json.loads(Path(path).read_text())
    assert run["error"] is None and len(run["segments"]) == 2
    assert "cannot resume, starting again" in capsys.readouterr().out


def test_a_refused_resume_is_recorded_with_the_folder_to_remove(tiny_config, tmp_path, monkeypatch):
    import frontier

    _two_segment_stream_setting(frontier, tiny_config, tmp_path, monkeypatch)
    folder = frontier.work_dir("tiny-stream", "uniform-0.5", 2020)
    stale = folder / "saved" / "BPR-x-stream.state.pth"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not a state")  # e.g. a state file an older plugin wrote
    path = frontier._train_one("tiny-stream", "uniform-0.5", "uniform", 0.5, {}, 2020, None, torch.get_num_threads())
    error = json.loads(Path(path).read_text())["error"]
    assert "stream_resume=" in error and f"remove {folder} to run it afresh" in error
    assert stale.exists()  # kept: what to do with it is the user's choice


def test_a_stopped_frontier_ciess_search_goes_on_after_its_last_episode(tiny_config, tmp_path, monkeypatch, capsys):
    import frontier
    from test_ciess_resume import TWO_EPISODES, _stop_in_episode

    from recbole_lightemb import run_recbole_lightemb

    monkeypatch.setattr(frontier, "WORK", tmp_path / "work")
    monkeypatch.setattr(frontier, "OUT", tmp_path / "out")
    keys = {k: v for k, v in tiny_config.items() if k not in ("checkpoint_dir", "dataset")}
    own = ("emb", "emb_budget", "metrics", "topk", "valid_metric")  # the arm's and the frontier's protocol
    search = {k: v for k, v in TWO_EPISODES.items() if k not in own}
    monkeypatch.setitem(frontier.SETTINGS, "tiny", {"model": "BPR", "dataset": "tiny", "seeds": 1,
                                                    "arms": [("ciess-0.3", "ciess", 0.3, {})],
                                                    "config": {**keys, **search, "eval_step": 1}})
    folder = frontier.work_dir("tiny", "ciess-0.3", 2020)
    with monkeypatch.context() as patch:
        _stop_in_episode(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            run_recbole_lightemb(model="BPR", dataset="tiny", config_dict={
                **frontier.PROTOCOL, **keys, **search, "eval_step": 1, "emb": "ciess", "emb_budget": 0.3,
                "seed": 2020, "checkpoint_dir": str(folder / "saved")})
    path = frontier._train_one("tiny", "ciess-0.3", "ciess", 0.3, {}, 2020, None, torch.get_num_threads())
    run = json.loads(Path(path).read_text())
    assert run["error"] is None and run["plan"]["resumed_at_episodes"] == [1]
    assert "resuming the search from" in capsys.readouterr().out
    assert not folder.exists()


def test_a_stopped_frontier_stream_goes_on_after_its_last_segment(tiny_config, tmp_path, monkeypatch, capsys):
    import frontier
    from test_stream_resume import _stop_at_segment

    from recbole_lightemb import run_recbole_lightemb
    from recbole_lightemb.stream.planners import UniformStream

    monkeypatch.setattr(frontier, "WORK", tmp_path / "work")
    monkeypatch.setattr(frontier, "OUT", tmp_path / "out")
    keys = {k: v for k, v in tiny_config.items() if k not in ("checkpoint_dir", "dataset")}
    stream = {**keys, "epochs": 1, "eval_step": 1, "stream": True, "stream_segments": 3}
    monkeypatch.setitem(frontier.SETTINGS, "tiny-stream", {
        "model": "BPR", "dataset": "tiny", "seeds": 1, "arms": [("uniform-0.5", "uniform", 0.5, {})], "config": stream})
    folder = frontier.work_dir("tiny-stream", "uniform-0.5", 2020)
    with monkeypatch.context() as patch:
        _stop_at_segment(patch, UniformStream, 2)
        with pytest.raises(KeyboardInterrupt):
            run_recbole_lightemb(model="BPR", dataset="tiny", config_dict={
                **frontier.PROTOCOL, **stream, "emb": "uniform", "emb_budget": 0.5, "seed": 2020,
                "checkpoint_dir": str(folder / "saved")})
    path = frontier._train_one("tiny-stream", "uniform-0.5", "uniform", 0.5, {}, 2020, None, torch.get_num_threads())
    run = json.loads(Path(path).read_text())
    assert run["error"] is None and [s["segment"] for s in run["segments"]] == [0, 1, 2]
    assert "resuming the stream from" in capsys.readouterr().out
    assert not folder.exists()


def test_the_summary_tables_every_reported_setting_and_refuses_when_none_is(tmp_path, monkeypatch):
    import frontier
    from recbole_lightemb.analysis.frontier import frontier_rows

    monkeypatch.setattr(frontier, "OUT", tmp_path)
    with pytest.raises(SystemExit, match="--summary: no setting reported"):
        frontier.summary()
    runs = [{"method": method, "budget": budget, "seed": 1, "label": None, "error": None,
             "test": {"recall@20": value}, "compression": {"ratio": ratio, "stored_bytes": 1},
             "convergence": {"converged": True}}
            for method, budget, ratio, value in (("full", None, 1.0, 0.4), ("uniform", 0.25, 0.25, 0.3),
                                                 ("baco", 0.25, 0.24, 0.2))]
    (tmp_path / "bpr-ml100k.json").write_text(json.dumps({"rows": frontier_rows(runs)}))
    table = frontier.summary()
    assert "| bpr-ml100k | 0.25 | `uniform-0.25` 0.3000 (1 seed) |" in table
    picks = json.loads((tmp_path / "which-method.json").read_text())["settings"]
    assert picks == {"bpr-ml100k": [{"budget": 0.25, "best": "uniform-0.25", "uniform": "uniform-0.25",
                                     "best_paper": "baco-0.25"}]}
    assert (tmp_path / "which-method.md").read_text() == table + "\n"


def test_the_frontier_without_a_setting_or_summary_says_what_it_needs():
    done = subprocess.run([sys.executable, str(BENCH / "frontier.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "error: --setting: required (one of bpr-beauty," in done.stderr


def test_the_time_still_to_run_goes_by_the_arm_then_by_its_method_and_names_the_rest():
    from frontier import time_to_do

    runs = [{"label": "uniform-0.25", "method": "uniform", "budget": 0.25, "error": None, "wall_s": 600},
            {"label": "uniform-0.25", "method": "uniform", "budget": 0.25, "error": None, "wall_s": 1200},
            {"label": None, "method": "baco", "budget": 0.25, "error": None, "wall_s": 60},  # its label cleared
            {"label": "hash-0.25", "method": "hash", "budget": 0.25, "error": "RuntimeError: x", "wall_s": 9},
            {"label": "qr-0.25", "method": "qr", "budget": 0.25, "error": None, "wall_s": 9, "unfinished": "…"}]
    minutes, unknown = time_to_do(runs, ["uniform-0.25", "uniform-0.1", "baco-0.25[item=degree]", "hash-0.25",
                                         "qr-0.25"])
    assert minutes == pytest.approx(15 + 15 + 1)  # its arm's mean; its method's mean; baco's one run
    assert unknown == ["hash-0.25", "qr-0.25"]  # neither a failed nor an unfinished run tells the pace


def test_the_search_cost_table_averages_each_searched_arm_and_times_whole_runs_only_if_never_stopped():
    from frontier import format_search_cost

    def run(seed, pretrain, search, wall, resumed=None):
        return {"label": "ciess-0.1[paper x1]", "extra": {"ciess_search_scale": 1.0}, "method": "ciess",
                "budget": 0.1, "seed": seed, "error": None, "wall_s": wall,
                "plan": {"pretrain_s": pretrain, "search_s": search, "resumed_at_episodes": resumed}}

    plain = {"label": None, "method": "uniform", "budget": 0.1, "seed": 2020, "error": None, "wall_s": 60, "plan": {}}
    assert format_search_cost([plain]) == ""
    table = format_search_cost([plain, run(2020, 60, 600, 900), run(2021, 180, 1800, 300, resumed=[4])])
    row = [line for line in table.splitlines() if line.startswith("| ciess-0.1[paper x1] |")]
    assert row == ["| ciess-0.1[paper x1] | 2 | 2.0 | 20.0 | 15.0 (1) |"]  # the resumed run's wall is one invocation's


def test_the_frontier_pins_the_modes_its_reports_assume_for_older_runs():
    import frontier

    from recbole_lightemb.analysis.frontier import EARLIER_MODES

    assert frontier.EARLIER_MODES == {method: {f"{method}_mode": mode} for method, mode in EARLIER_MODES.items()}
