"""The streaming-segment loader (array core and RecBole wrapper) and the streaming trainer."""

import json
import os

import numpy as np
import pytest

import recbole_lightemb  # noqa: F401  (compat fixes, methods)
from recbole_lightemb import Config, Plan
from recbole_lightemb.stream import check_stream_config, segment_bounds, split_segments, stream_segments


def random_log(n=3000, n_users=80, n_items=60, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(1, n_users, n)
    items = rng.integers(1, n_items, n)
    times = rng.integers(0, 10_000, n).astype(np.float64)
    return users, items, times


CUTS = [("stream_segments", 4), ("stream_new_entities", 30), ("stream_window", 1500.0)]


@pytest.mark.parametrize("key,value", CUTS)
def test_segments_partition_the_log_in_time_order(key, value):
    users, items, times = random_log()
    order, bounds = segment_bounds(users, items, times, key, value)
    assert bounds[0] == 0 and bounds[-1] == len(times) and np.all(np.diff(bounds) > 0)
    assert np.array_equal(np.sort(order), np.arange(len(times)))
    assert np.all(np.diff(times[order]) >= 0)
    if key == "stream_segments":
        assert len(bounds) - 1 == value
    if key == "stream_window":
        for a, b in zip(bounds[:-1], bounds[1:]):
            seg_times = times[order[a:b]]
            assert seg_times.max() - seg_times.min() < value


def test_new_entities_rule_opens_a_segment_per_n_new_entities():
    users, items, times = random_log(n=2000, n_users=300, n_items=200)
    n = 40
    order, bounds = segment_bounds(users, items, times, "stream_new_entities", n)
    seen_u, seen_i = set(), set()
    new_per_segment = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        before = len(seen_u) + len(seen_i)
        for row in order[a:b]:
            seen_u.add(users[row])
            seen_i.add(items[row])
        new_per_segment.append(len(seen_u) + len(seen_i) - before)
    # one interaction can add two new entities, so a cut lands within one of the target
    assert all(n - 1 <= k <= n + 1 for k in new_per_segment[:-1])
    assert new_per_segment[-1] >= n - 1  # a short tail is merged into the last segment
    assert len(new_per_segment) > 3


def test_splits_respect_time_reservoir_and_seen_entities():
    users, items, times = random_log(n=4000)
    order, bounds = segment_bounds(users, items, times, "stream_segments", 5)
    segments = list(split_segments(users, items, order, bounds, 80, 60, train_ratio=0.8, valid_share=0.5,
                                   reservoir=0.2, seed=3))
    assert len(segments) == 5
    for s in segments:
        start, stop = bounds[s.segment], bounds[s.segment + 1]
        rows = order[start:stop]
        own = np.setdiff1d(s.train, s.reservoir)
        assert len(own) == int(0.8 * len(rows))
        assert np.array_equal(np.sort(own), np.sort(rows[: len(own)]))
        # evaluation never precedes training, and valid comes before test
        if s.valid.size:
            assert times[s.valid].min() >= times[own].max()
            assert times[s.test].min() >= times[s.valid].max()
        # the reservoir: only earlier segments, only users active in the segment's training part
        earlier = set(order[:start].tolist())
        assert set(s.reservoir.tolist()) <= earlier
        assert set(users[s.reservoir].tolist()) <= set(users[own].tolist())
        if s.segment == 0:
            assert s.reservoir.size == 0
        else:
            pool = [r for r in earlier if users[r] in set(users[own].tolist())]
            assert s.reservoir.size == min(round(0.2 * len(rows)), len(pool))
        # history = all earlier + own training part; evaluation only over seen entities
        assert np.array_equal(s.history, order[: start + len(own)])
        assert s.seen_users.shape == (80,) and s.seen_items.shape == (60,)
        assert np.array_equal(s.seen_users, np.bincount(users[s.history], minlength=80) > 0)
        assert s.seen_users[users[s.test]].all() and s.seen_items[items[s.test]].all()
        assert np.array_equal(s.user_freq, np.bincount(users[s.history], minlength=80))
        # SCALL's frequency: this segment's training rows only (its own part and its reservoir)
        assert np.array_equal(s.item_segment_freq, np.bincount(items[s.train], minlength=60))
        assert np.all(s.user_segment_freq[~np.isin(np.arange(80), users[s.train])] == 0)


def test_user_split_cuts_each_users_own_rows_and_tests_users_of_short_sessions():
    # users arrive one after another and rate 10 items each in one session, as on ml-100k
    users = np.repeat(np.arange(1, 61), 10)
    items = np.random.default_rng(0).integers(1, 40, users.size)
    times = np.arange(users.size, dtype=np.float64)
    order, bounds = segment_bounds(users, items, times, "stream_segments", 3)
    by = {split: list(split_segments(users, items, order, bounds, 61, 40, reservoir=0.2, seed=1, split=split))
          for split in ("time", "user")}
    for s in by["user"]:
        start, stop = bounds[s.segment], bounds[s.segment + 1]
        rows, own = order[start:stop], np.setdiff1d(s.train, s.reservoir)
        for u in np.unique(users[rows]):
            mine = rows[users[rows] == u]  # time order
            n_train = max(1, int(0.8 * mine.size))
            assert np.array_equal(np.intersect1d(own, mine), np.sort(mine[:n_train]))
            later = np.concatenate([s.valid, s.test])
            assert times[later[users[later] == u]].min(initial=np.inf) > times[mine[:n_train]].max()
        assert np.array_equal(s.history, np.concatenate([order[:start], own]))
        assert np.array_equal(s.user_freq, np.bincount(users[s.history], minlength=61))
    tested = {split: [len(np.unique(users[s.test])) for s in segments] for split, segments in by.items()}
    assert max(tested["time"]) <= 1  # the segment's end holds users not seen in its training part
    assert min(tested["user"]) >= 15  # every user of the segment (20 each) whose test items are seen


def test_reservoir_is_seeded():
    users, items, times = random_log()
    order, bounds = segment_bounds(users, items, times, "stream_segments", 3)
    a = [s.reservoir for s in split_segments(users, items, order, bounds, 80, 60, seed=1)]
    b = [s.reservoir for s in split_segments(users, items, order, bounds, 80, 60, seed=1)]
    c = [s.reservoir for s in split_segments(users, items, order, bounds, 80, 60, seed=2)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("updates,match", [
    ({"stream_train_ratio": 1.0}, "stream_train_ratio=1.0.*open interval"),
    ({"stream_valid_share": 0}, "stream_valid_share=0"),
    ({"stream_segments": 0}, "stream_segments=0.*positive integer"),
    ({"stream_window": -2.0}, "stream_window=-2.0"),
    ({"stream_segments": 3, "stream_new_entities": 10}, "only one of"),
    ({"stream_reservoir": -0.1}, "stream_reservoir=-0.1"),
    ({"stream_split": "random"}, "stream_split='random': allowed 'time', 'user'"),
])
def test_bad_stream_keys_fail_naming_key_and_value(updates, match):
    config = {"stream_segments": None, "stream_new_entities": None, "stream_window": None,
              "stream_train_ratio": None, "stream_valid_share": None, "stream_reservoir": None,
              "stream_stopping_step": None, "stream_packed_training": None, "stream_split": None}
    config.update(updates)
    with pytest.raises(ValueError, match=match):
        check_stream_config(config)


def write_tiny(tmp_path, with_time=True, n=2400, n_users=60, n_items=40, seed=0):
    """A RecBole atomic dataset with clustered tastes, so a model can learn something in 1 epoch."""
    rng = np.random.default_rng(seed)
    folder = tmp_path / "tiny"
    folder.mkdir()
    users = rng.integers(0, n_users, n)
    items = (users % 4) * (n_items // 4) + rng.integers(0, n_items // 4, n)
    pairs = {}
    for t, (u, i) in enumerate(zip(users, items)):
        pairs.setdefault((u, i), t)
    lines = ["user_id:token\titem_id:token" + ("\ttimestamp:float" if with_time else "")]
    for (u, i), t in sorted(pairs.items(), key=lambda kv: kv[1]):
        lines.append(f"u{u}\ti{i}" + (f"\t{t}" if with_time else ""))
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    return str(tmp_path)


def tiny_config(data_path, tmp_path, **extra):
    config = {
        "data_path": data_path, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "checkpoint_dir": str(tmp_path / "saved"), "log_wandb": False, "show_progress": False,
        "embedding_size": 16, "epochs": 1, "train_batch_size": 256, "eval_batch_size": 4096,
        "metrics": ["Recall", "NDCG"], "topk": [20], "valid_metric": "NDCG@20", "stream": True,
        "stream_segments": 3, "state": "ERROR",
    }
    config.update(extra)
    return config


def test_recbole_segments_share_one_id_space_and_mask_history(tmp_path):
    data_path = write_tiny(tmp_path)
    from recbole.data import create_dataset

    config = Config("BPR", "tiny", config_dict=tiny_config(data_path, tmp_path))
    dataset = create_dataset(config)
    segments = list(stream_segments(config, dataset))
    assert len(segments) == 3
    uid, iid = dataset.uid_field, dataset.iid_field
    for seg in segments:
        for loader in (seg.train_data, seg.valid_data, seg.test_data):
            assert loader._dataset.user_num == dataset.user_num
            assert loader._dataset.item_num == dataset.item_num
        history = seg.history.inter_feat
        hist = {}
        for u, i in zip(history[uid].tolist(), history[iid].tolist()):
            hist.setdefault(u, set()).add(i)
        # full-sort validation masks every interaction of the history, and only valid items are positives
        valid = seg.valid_data
        for u in valid.uid_list.tolist():
            masked = set(valid.uid2history_item[u].tolist())
            positives = set(valid.uid2positive_item[u].tolist())
            assert hist[u] - positives <= masked
            assert u in hist  # only users seen in training are evaluated
        assert seg.users_seen == len(hist)


def test_stream_without_time_field_fails_clearly(tmp_path):
    data_path = write_tiny(tmp_path, with_time=False)
    from recbole.data import create_dataset

    config = Config("BPR", "tiny", config_dict=tiny_config(data_path, tmp_path, load_col={"inter": ["user_id", "item_id"]}))
    dataset = create_dataset(config)
    with pytest.raises(ValueError, match="TIME_FIELD"):
        next(stream_segments(config, dataset))


def test_a_token_time_field_is_refused(tmp_path):
    data_path = write_tiny(tmp_path)
    inter = tmp_path / "tiny" / "tiny.inter"
    inter.write_text(inter.read_text().replace("timestamp:float", "timestamp:token", 1))
    from recbole.data import create_dataset

    config = Config("BPR", "tiny", config_dict=tiny_config(data_path, tmp_path))
    with pytest.raises(ValueError, match="TIME_FIELD='timestamp' is a token field"):
        next(stream_segments(config, create_dataset(config)))


def test_segment_without_test_users_fails_clearly(tmp_path):
    data_path = write_tiny(tmp_path, n=300)
    from recbole.data import create_dataset

    config = Config("BPR", "tiny", config_dict=tiny_config(data_path, tmp_path, stream_segments=150))
    dataset = create_dataset(config)
    with pytest.raises(ValueError, match=r"stream segment \d+ has no (valid|test) users.*stream_segments=150"):
        list(stream_segments(config, dataset))


SEGMENT_KEYS = {"segment", "users_seen", "items_seen", "stored_floats", "budget_floats", "stored_bytes",
                "test_result", "time_s", "test_users", "test_interactions"}


@pytest.mark.parametrize("emb,extra", [
    ("uniform", {"emb_width": 4}),
    ("uniform", {"emb_width": 4, "stream_split": "user"}),
    ("scall", {"scall_mean_width": 4, "scall_search_batches": 2, "scall_min_search_steps": 2,
               "scall_max_search_steps": 3, "scall_settle_window": 2, "scall_hidden": 32}),
    ("scall", {"scall_mean_width": 4, "scall_search_batches": 2, "scall_min_search_steps": 2,
               "scall_max_search_steps": 3, "scall_settle_window": 2, "scall_hidden": 32,
               "scall_reward_baseline": "uniform", "scall_choice": "best"}),
    ("scall", {"scall_mean_width": 4, "scall_search_batches": 2, "scall_min_search_steps": 2,
               "scall_max_search_steps": 3, "scall_settle_window": 2, "scall_hidden": 32, "scall_mode": "fast",
               "scall_reward_baseline": "uniform", "scall_choice": "best"}),
    ("scall", {"scall_mean_width": 4, "scall_action": [0.7, 0.6, 0.4]}),
    ("full", {}),
])
def test_tiny_stream_end_to_end_holds_the_budget(tmp_path, emb, extra):
    data_path = write_tiny(tmp_path)
    result_file = tmp_path / "result.json"
    config = tiny_config(data_path, tmp_path, emb=emb, result_file=str(result_file), **extra)
    from recbole_lightemb import run_recbole_lightemb  # routes to run_stream when stream is on

    run_recbole_lightemb("BPR", "tiny", config_dict={**config, "stream": True})
    written = json.loads(result_file.read_text())
    assert len(written["segments"]) == 3
    for key in ("model", "dataset", "emb", "compression", "timing", "mean_test_result"):
        assert key in written
    seen_before = 0
    for row in written["segments"]:
        assert SEGMENT_KEYS <= set(row)
        assert row["users_seen"] + row["items_seen"] >= seen_before
        seen_before = row["users_seen"] + row["items_seen"]
        assert "recall@20" in row["test_result"]
        assert 0 < row["test_users"] <= row["test_interactions"]
        if emb == "full":
            assert row["budget_floats"] is None
        else:
            assert row["budget_floats"] == 4 * (row["users_seen"] + row["items_seen"])
            assert row["stored_floats"] <= row["budget_floats"]
            # indices are counted: one width byte per stored row
            assert row["stored_bytes"] == 4 * row["stored_floats"] + row["users_seen"] + row["items_seen"]
        plan = Plan.load(row["plan_file"])
        if emb != "full":
            assert int(plan["user_widths"].sum() + plan["item_widths"].sum()) == row["stored_floats"]
            assert np.count_nonzero(plan["user_widths"]) == row["users_seen"]
    means = written["mean_test_result"]["recall@20"]
    assert means == round(float(np.mean([r["test_result"]["recall@20"] for r in written["segments"]])), 4)
    later = [r for r in written["segments"] if r["segment"] > 0]
    if emb == "scall":  # the mode at the top of the run file and in every segment's record
        mode = extra.get("scall_mode", "paper")
        assert written["mode"] == mode and all(r["search"]["mode"] == mode for r in written["segments"])
        if "scall_action" not in extra:  # paper mode searches on the segment just trained, fast on its own
            assert all(r["search"]["search_segment"] == r["segment"] - (mode == "paper") for r in later)
    else:
        assert "mode" not in written
    if "scall_action" in extra:  # the fixed shape, no search
        assert all(r["search_steps"] == 0 and r["search"]["chosen"] == "fixed" for r in later)
        assert all(r["search"]["action"] == extra["scall_action"] for r in later)
    elif emb == "scall":
        assert all(2 <= r["search_steps"] <= 3 for r in later)
        assert os.path.isfile(written["plan"]["file"])
        baseline = written["plan"]["baseline_fitness"]  # the last segment's search
        assert (baseline is not None) == (extra.get("scall_reward_baseline") == "uniform")
        assert len(written["plan"]["fitness"]) == written["segments"][-1]["search_steps"]
        assert all(len(r["search"]["rewards"]) == r["search_steps"] for r in later)
        best = extra.get("scall_choice") == "best"
        for r in later:  # the best try's fitness is the search's best, uniform's included
            search = r["search"]
            if not best:
                assert search["chosen"] == "policy"
                continue
            tries = {"uniform": search["baseline_fitness"], **{f"step {k}": f for k, f in enumerate(search["fitness"])}}
            assert tries[search["chosen"]] == max(tries.values())


@pytest.mark.parametrize("emb,extra", [
    ("uniform", {"emb_width": 4}),
    ("scall", {"scall_mean_width": 4, "scall_search_batches": 2, "scall_min_search_steps": 2,
               "scall_max_search_steps": 2, "scall_settle_window": 2, "scall_hidden": 32}),
])
def test_each_segment_trains_packed_tables_that_hold_the_budget(tmp_path, emb, extra):
    """Parameters and Adam's state follow the widths while a segment trains, not the masked n × d table;
    the training itself is the same."""
    from recbole_lightemb import run_recbole_lightemb

    data_path = write_tiny(tmp_path)
    runs = {}
    for packed in (True, False):
        config = tiny_config(data_path, tmp_path, emb=emb, stream=True, stream_packed_training=packed, **extra)
        runs[packed] = run_recbole_lightemb("BPR", "tiny", config_dict=config)
    for row, masked in zip(runs[True]["segments"], runs[False]["segments"]):
        assert row["test_result"] == pytest.approx(masked["test_result"], abs=1e-3)
        held, masked_held = row["training_memory"], masked["training_memory"]
        assert held["param_bytes"] == 4 * row["stored_floats"] and held["optimizer_bytes"] == 8 * row["stored_floats"]
        assert held["ratio"] <= 0.3 < 1.0 <= masked_held["ratio"]  # width 4 of 16, against the masked 16
        if emb == "scall":  # its search tries train masked full-width tables: measured beside the segment's
            assert row["search_training_memory"]["ratio"] >= 1.0 > held["ratio"]
        else:
            assert row["search_training_memory"] is None


@pytest.mark.parametrize("value", ["yes please", 1])
def test_stream_packed_training_must_be_a_boolean(value):
    config = {k: None for k in ("stream_segments", "stream_new_entities", "stream_window", "stream_train_ratio",
                                "stream_valid_share", "stream_reservoir", "stream_stopping_step", "stream_split")}
    with pytest.raises(ValueError, match=f"stream_packed_training={value!r}: expected True or False"):
        check_stream_config({**config, "stream_packed_training": value})


def test_baco_stream_reclusters_within_the_seen_entities_float_budget(tmp_path):
    data_path = write_tiny(tmp_path)
    result_file = tmp_path / "result.json"
    config = tiny_config(data_path, tmp_path, emb="baco", emb_budget=0.75, result_file=str(result_file))
    from recbole_lightemb import run_recbole_lightemb

    run_recbole_lightemb("BPR", "tiny", config_dict=config)
    segments = json.loads(result_file.read_text())["segments"]
    assert len(segments) == 3
    for row in segments:
        # the same floats uniform gets: 0.75 of d = 16 for every seen entity
        assert row["budget_floats"] == 12 * (row["users_seen"] + row["items_seen"])
        assert 0 < row["stored_floats"] <= row["budget_floats"]
        plan = Plan.load(row["plan_file"])
        rows = plan.meta["n_user_codes"] + plan.meta["n_item_codes"]
        assert row["stored_floats"] == 16 * rows
        assert row["stored_bytes"] == 4 * row["stored_floats"] + 4 * (plan["user_codes"].size + plan["item_codes"].size)
    assert segments[-1]["budget_floats"] > segments[0]["budget_floats"]


def test_scall_without_a_stream_plans_uniform_widths_over_training_entities(tmp_path):
    from recbole_lightemb import run_recbole_lightemb

    data_path = write_tiny(tmp_path)
    config = tiny_config(data_path, tmp_path, emb="scall", scall_mean_width=4, stream=False,
                         eval_args={"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "full"})
    result = run_recbole_lightemb("BPR", "tiny", config_dict=config)
    plan = Plan.load(result["plan"]["file"], method="scall")
    widths = np.concatenate([plan["user_widths"][1:], plan["item_widths"][1:]])
    assert set(np.unique(widths)) <= {0, 4}
    assert result["compression"]["stored_floats"] == widths.sum() <= result["plan"]["budget_floats"]


def test_a_stream_given_a_checkpoint_to_resume_is_refused_not_ignored(tmp_path):
    data_path = write_tiny(tmp_path)
    checkpoint = tmp_path / "BPR-stopped.pth"
    checkpoint.write_bytes(b"")
    config = tiny_config(data_path, tmp_path, emb="uniform", emb_width=4, stream=True,
                         resume_checkpoint=str(checkpoint))
    from recbole_lightemb import run_recbole_lightemb

    with pytest.raises(ValueError, match="resume_checkpoint=.*a stream trains one model per segment"):
        run_recbole_lightemb("BPR", "tiny", config_dict=config)


def test_a_searching_trainer_on_a_stream_reports_its_search_in_each_segment(tmp_path):
    """CIESS plans afresh per segment and searches inside its trainer: the segment's row carries that search's
    bytes held while training (masked full-width tables), above the segment's own."""
    from recbole_lightemb import run_recbole_lightemb

    config = tiny_config(write_tiny(tmp_path), tmp_path, emb="ciess", emb_budget=0.5, ciess_pretrain_epochs=1,
                         ciess_episodes=1, ciess_steps=2, ciess_step_batches=2, ciess_updates_per_step=2,
                         ciess_batch_size=64, ciess_hidden=16)
    result = run_recbole_lightemb("BPR", "tiny", config_dict=config)
    for row in result["segments"]:
        assert row["search_training_memory"]["ratio"] > 1.0 > row["training_memory"]["ratio"]


@pytest.mark.parametrize("emb,extra", [
    ("uniform", {"emb_budget": 0.125}),
    ("uniform", {"emb_budget": 0.125, "stream_packed_training": False}),  # the masked tables store the same rows
    ("scall", {"scall_mean_width": 2, "scall_action": [0.7, 0.6, 0.4]}),
    ("scall", {"scall_mean_width": 2, "scall_search_batches": 2, "scall_min_search_steps": 2,
               "scall_max_search_steps": 2, "scall_settle_window": 2, "scall_hidden": 32}),
])
def test_a_low_bit_stream_spends_its_floats_bytes_on_width_and_writes_what_it_counts(tmp_path, emb, extra):
    """At 4 bits the same budget of floats holds about three times the values (a scale per row aside); every
    segment holds it in bytes and writes its rows packed, as counted."""
    from recbole_lightemb import run_recbole_lightemb

    data_path = write_tiny(tmp_path)
    runs = {bits: run_recbole_lightemb("BPR", "tiny", config_dict=tiny_config(
        data_path, tmp_path, emb=emb, emb_bits=bits, checkpoint_dir=str(tmp_path / f"saved{bits}"), **extra))
        for bits in (32, 4)}
    for low, floats in zip(runs[4]["segments"], runs[32]["segments"]):
        assert low["budget_floats"] == floats["budget_floats"] == 2 * (low["users_seen"] + low["items_seen"])
        assert floats["stored_row_bytes"] == 4 * floats["stored_floats"] and floats["packed_file"] is None
        assert low["stored_row_bytes"] <= 4 * low["budget_floats"] < low["stored_row_bytes"] + 5 * (
            low["users_seen"] + low["items_seen"]) + 8  # what a scale and a byte's slack per row leave unspent
        assert low["stored_floats"] >= 2.5 * floats["stored_floats"]
        plan = Plan.load(low["plan_file"])
        assert plan.meta["bits"] == 4 and int(plan["user_widths"].sum() + plan["item_widths"].sum()) == low["stored_floats"]
        unstored = int((plan["user_widths"] == 0).sum() + (plan["item_widths"] == 0).sum())  # a width byte each
        assert low["packed_file"]["array_bytes"] == low["stored_bytes"] + unstored
        assert os.path.isfile(low["packed_file"]["file"])


def test_low_bit_rows_of_widths_of_their_own_are_rounded_per_row_and_read_back_from_the_packed_file(tmp_path):
    import torch

    from recbole_lightemb.modules import VariableWidthEmbedding
    from recbole_lightemb.modules.packed import PackedWidthEmbedding
    from recbole_lightemb.modules.packed_file import read_packed, write_packed

    widths = np.array([0, 3, 16, 7, 0, 1])
    for kind in (VariableWidthEmbedding, PackedWidthEmbedding):
        table = kind(6, 16, widths, padding_idx=0)
        float_bytes = table.stored_bytes()
        table.set_row_bits(4)
        rows, masters = table.full_table().detach(), table.master_rows().detach()
        for row, width in enumerate(widths):
            assert not rows[row, width:].any()
            if width:  # on the row's own grid: max |x| / 7 over its own width
                steps = rows[row, :width] / (masters[row, :width].abs().max() / 7)
                assert torch.allclose(steps, steps.round(), atol=1e-4)
        assert table.stored_bytes() == sum(-(-w * 4 // 8) + 4 for w in widths if w) + 4 < float_bytes
        model = torch.nn.Module()
        model.table = table
        written = write_packed(model, tmp_path / "rows.npz")
        assert written["array_bytes"] == table.stored_bytes() + 2  # the widths of the two rows storing nothing
        with torch.no_grad():  # scrambled masters: the rows can only come back from the file
            for p in table.parameters():
                p.copy_(torch.randn_like(p))
        read_packed(model, tmp_path / "rows.npz")
        assert torch.allclose(table.full_table(), rows, atol=1e-6)
        other = kind(6, 16, widths[::-1].copy(), padding_idx=None)  # the same bytes, other widths: refused
        other.set_row_bits(4)
        holder = torch.nn.Module()
        holder.table = other
        with pytest.raises(ValueError, match="the widths differ from the plan's"):
            read_packed(holder, tmp_path / "rows.npz")
        table.set_row_bits(32)
        assert table.stored_bytes() == float_bytes


def test_rows_of_widths_of_their_own_at_bits_per_row_are_rounded_each_on_its_grid_and_read_back(tmp_path):
    """Mixed precision: each row rounded at its own bits (32: as it is), stored with a 2-bit class per row, and
    the packed file refused for a table planned with other bits."""
    import torch

    from recbole_lightemb.modules import VariableWidthEmbedding
    from recbole_lightemb.modules.packed import PackedWidthEmbedding
    from recbole_lightemb.modules.packed_file import read_packed, write_packed

    widths, bits = np.array([0, 3, 16, 7, 0, 5]), np.array([4, 8, 32, 2, 2, 4])
    for kind in (VariableWidthEmbedding, PackedWidthEmbedding):
        table = kind(6, 16, widths, padding_idx=0)
        table.set_row_bits(bits)
        rows, masters = table.full_table().detach(), table.master_rows().detach()
        ids = torch.tensor([[5, 2], [3, 1]])
        assert torch.equal(table(ids).detach(), rows[ids])  # a lookup rounds each row at its own bits
        assert torch.equal(rows[2], masters[2])
        for row in (1, 3, 5):
            levels = 2 ** (bits[row] - 1) - 1
            steps = rows[row, :widths[row]] / (masters[row, :widths[row]].abs().max() / levels)
            assert torch.allclose(steps, steps.round(), atol=1e-4) and not rows[row, widths[row]:].any()
        # codes in whole bytes per row (3, 2, 3), 16 floats, 3 scales, 12 bits of classes, a width per stored row
        assert table.stored_bytes() == 3 + 2 + 3 + 16 * 4 + 3 * 4 + 2 + 4
        model = torch.nn.Module()
        model.table = table
        written = write_packed(model, tmp_path / "rows.npz")
        assert written["array_bytes"] == table.stored_bytes() + 2  # the widths of the two rows storing nothing
        with torch.no_grad():
            for p in table.parameters():
                p.copy_(torch.randn_like(p))
        read_packed(model, tmp_path / "rows.npz")
        assert torch.allclose(table.full_table(), rows, atol=1e-6)
        table.set_row_bits(bits[[4, 1, 2, 3, 0, 5]])  # two rows storing nothing swap bits: the same arrays' sizes
        with pytest.raises(ValueError, match="the bits per row differ from the plan's"):
            read_packed(model, tmp_path / "rows.npz")


@pytest.mark.parametrize("master_free", [False, True])
def test_scall_on_a_stream_stores_rows_at_bits_by_frequency_within_each_segments_bytes(tmp_path, master_free):
    """Each segment ranks its seen entities (as for the widths) into 8 / 4 / 2 bits; the widest rows are the
    most precise, every segment holds its floats' bytes, and writes what it counts; master-free rows train
    their codes in place."""
    from recbole_lightemb import run_recbole_lightemb

    config = tiny_config(write_tiny(tmp_path), tmp_path, emb="scall", scall_mean_width=2, emb_bits=4,
                         emb_bits_policy="frequency", emb_master_free=master_free, scall_search_batches=2,
                         scall_min_search_steps=2, scall_max_search_steps=2, scall_settle_window=2, scall_hidden=32)
    result = run_recbole_lightemb("BPR", "tiny", config_dict=config)
    for row in result["segments"]:
        plan = Plan.load(row["plan_file"])
        assert plan.meta["bits_policy"] == "frequency" and row["stored_row_bytes"] <= 4 * row["budget_floats"]
        for role in ("user", "item"):
            widths, bits = plan[f"{role}_widths"], plan[f"{role}_bits"]
            seen = widths > 0
            assert (bits[seen] == 8).sum() == round(0.2 * seen.sum())
            assert widths[seen & (bits == 8)].min() >= widths[seen & (bits == 2)].max()
        unstored = 0 if master_free else int((plan["user_widths"] == 0).sum() + (plan["item_widths"] == 0).sum())
        assert row["packed_file"]["array_bytes"] == row["stored_bytes"] + unstored  # groups index every row
        assert (row["training_memory"]["row_grad_bytes"] > 0) == master_free


@pytest.mark.parametrize("emb,extra,match", [
    ("hash", {"emb_budget": 0.5, "emb_bits": 4}, "on a stream .*emb='hash' stores no low-bit rows yet; allowed: emb in "
                                                 "scall, uniform"),
    ("uniform", {"emb_budget": 0.5, "emb_bits": 4, "emb_bits_policy": "frequency"},
     "on a stream only emb=scall stores rows at bits by frequency; allowed: emb=scall, or emb_bits_policy=fixed"),
    ("scall", {"scall_mean_width": 4, "emb_bits": 4, "emb_master_free": True, "stream_packed_training": False},
     "emb_master_free=True: a stream trains low-bit rows without masters in its packed segment tables"),
    ("uniform", {"emb_budget": 0.5, "emb_master_free": True}, "rows trained without masters need emb_bits in 2, 4, 8"),
])
def test_low_bit_stream_settings_it_cannot_store_are_refused_before_training(tmp_path, emb, extra, match):
    from recbole_lightemb import run_recbole_lightemb

    config = tiny_config(write_tiny(tmp_path), tmp_path, emb=emb, **extra)
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb("BPR", "tiny", config_dict=config)
    assert not os.path.isdir(config["checkpoint_dir"])


@pytest.mark.parametrize("emb,extra", [
    ("uniform", {"emb_budget": 0.125}),
    ("scall", {"scall_mean_width": 2, "scall_action": [0.7, 0.6, 0.4]}),
])
def test_a_master_free_stream_trains_its_low_bit_rows_as_stored(tmp_path, emb, extra):
    """Each segment's rows train as 4-bit codes in groups of one width (no float32 copy, gradient or Adam
    moments per value): the same rows and bytes stored, a fraction of the bytes held while training."""
    from recbole_lightemb import run_recbole_lightemb

    data_path = write_tiny(tmp_path)
    runs = {free: run_recbole_lightemb("BPR", "tiny", config_dict=tiny_config(
        data_path, tmp_path, emb=emb, emb_bits=4, emb_master_free=free, checkpoint_dir=str(tmp_path / f"saved{free}"),
        **extra)) for free in (False, True)}
    for free, masters in zip(runs[True]["segments"], runs[False]["segments"]):
        assert free["stored_row_bytes"] == masters["stored_row_bytes"] <= 4 * free["budget_floats"]
        assert free["training_memory"]["training_bytes"] < 0.5 * masters["training_memory"]["training_bytes"]
        assert free["packed_file"]["array_bytes"] == free["stored_bytes"]  # grouped rows index every row
        assert free["training_memory"]["row_grad_bytes"] > 0 == masters["training_memory"]["row_grad_bytes"]  # the
        # codes' own update hook was handed gradients: they trained in place


def test_grouped_rows_of_more_than_127_widths_keep_their_groups():
    """SCALL's widths are any of 1..d: past 127 distinct widths the group ids take two bytes, counted."""
    import torch

    from recbole_lightemb.modules.mixed import MixedDimEmbedding

    widths = np.r_[0, np.arange(1, 201), 200]
    table = MixedDimEmbedding(len(widths), 200, widths, padding_idx=0, projection=False)
    assert torch.equal(table.widths(), torch.as_tensor(widths))
    rows = table.full_table()
    assert all((w == 0 or rows[e, :w].abs().sum() > 0) and not rows[e, w:].any() for e, w in enumerate(widths))
    assert table.index_bytes() == len(widths) * (2 + 1)
    reference = torch.zeros(len(widths), 200)  # the rows group by group
    for g, width in enumerate(table.group_widths):
        reference[torch.from_numpy(table.group_members(widths, g)), :width] = table.values[g].detach()
    assert torch.equal(rows.detach(), reference)
    ids = torch.tensor([[3, 0], [201, 150]])
    assert torch.equal(table(ids).detach(), reference[ids])
