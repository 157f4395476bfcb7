"""The frontier ruler: uniform curve interpolation in log-bytes, per-seed signs, convergence flags, plot."""

import logging
import math
import sys

import pytest

from recbole_lightemb.analysis.convergence import ConvergenceLog
from recbole_lightemb.analysis.frontier import (PAPER_METHODS, budget_winners, format_budget_table, format_bucket_table,
                                       format_frontier_table, format_segment_epochs, format_segment_search,
                                       format_segment_table, format_summary, frontier_rows, interpolate_log,
                                       shown_label, training_ratio)
from recbole_lightemb.analysis.plot import plot_frontier


def run(method, budget, seed, ratio, recall, converged=True, label=None, error=None):
    return {"method": method, "budget": budget, "seed": seed, "label": label, "error": error,
            "test": {} if error else {"recall@20": recall, "ndcg@20": recall / 2},
            "compression": {} if error else {"ratio": ratio, "stored_bytes": int(ratio * 1000)},
            "convergence": {"converged": converged, "epochs_run": 50, "best_epoch": 39}}


RUNS = [
    run("full", None, 1, 1.0, 0.40), run("full", None, 2, 1.0, 0.42),
    run("uniform", 0.1, 1, 0.1, 0.20), run("uniform", 0.1, 2, 0.1, 0.22),
    run("uniform", 0.25, 1, 0.25, 0.30), run("uniform", 0.25, 2, 0.25, 0.30),
    run("baco", 0.25, 1, 0.2, 0.29), run("baco", 0.25, 2, 0.2, 0.25, converged=False),
    run("baco", 0.25, 1, 0.25, 0.33, label="baco-0.25[item=degree]"),
    run("hash", 0.05, 1, 0.05, 0.1),
    run("boom", 0.1, 1, None, None, error="RuntimeError: exploded"),
]


def test_interpolation_is_linear_in_log_bytes_and_refuses_to_extrapolate():
    assert interpolate_log(0.1, [0.1, 1.0], [0.2, 0.4]) == pytest.approx(0.2)
    assert interpolate_log(math.sqrt(0.1), [1.0, 0.1], [0.4, 0.2]) == pytest.approx(0.3)  # log-midpoint
    assert interpolate_log(0.05, [0.1, 1.0], [0.2, 0.4]) is None
    assert interpolate_log(1.5, [0.1, 1.0], [0.2, 0.4]) is None
    assert interpolate_log(0.0995, [0.1, 1.0], [0.2, 0.4]) == pytest.approx(0.2)  # the same bytes, within 1 %
    assert interpolate_log(0.098, [0.1, 1.0], [0.2, 0.4]) is None


def test_rows_compare_each_seed_with_its_own_uniform_curve():
    rows = {r["arm"]: r for r in frontier_rows(RUNS)}
    baco = rows["baco-0.25"]
    at = 0.20 + (0.30 - 0.20) * math.log(0.2 / 0.1) / math.log(0.25 / 0.1)  # seed 1's curve at 0.2
    at2 = 0.22 + (0.30 - 0.22) * math.log(0.2 / 0.1) / math.log(0.25 / 0.1)
    assert baco["vs_uniform"] == pytest.approx(((0.29 - at) + (0.25 - at2)) / 2)
    assert baco["vs_uniform_signs"] == "+-"
    assert baco["test_recall@20"] == pytest.approx(0.27) and baco["test_recall@20_std"] == pytest.approx(0.0283, 1e-3)
    assert baco["n_converged"] == 1 and baco["converged"] is False
    assert rows["baco-0.25[item=degree]"]["vs_uniform"] == pytest.approx(0.03)
    assert rows["uniform-0.1"]["vs_uniform"] is None and rows["full"]["vs_uniform"] is None
    assert rows["hash-0.05"]["vs_uniform"] is None  # below the curve's smallest budget: no extrapolation
    assert rows["boom-0.1"]["n_ok"] == 0 and "exploded" in rows["boom-0.1"]["error"]


def test_table_marks_unconverged_arms_and_failures():
    table = format_frontier_table(frontier_rows(RUNS))
    line = next(l for l in table.splitlines() if l.startswith("| baco-0.25 (stated) |"))
    assert "1/2 **not converged**" in line and "| +- |" in line
    assert "2/2 |" in next(l for l in table.splitlines() if l.startswith("| full |"))
    assert "failed: RuntimeError: exploded" in table


def test_each_budget_is_won_by_the_best_arm_within_its_bytes_and_names_the_papers_best():
    runs = RUNS + [run("quant", 0.1, 1, 0.1005, 0.5),  # within 1 % of the 0.1 table's bytes: counts there
                   run("ciess", 0.1, 1, 0.103, 0.6, converged=False)]  # over them: counts at 0.25 only
    winners = {w["budget"]: w for w in budget_winners(frontier_rows(runs))}
    assert sorted(winners) == [0.1, 0.25]  # the uniform curve's budgets
    assert winners[0.1]["best"]["arm"] == "quant-0.1" and winners[0.1]["uniform"]["arm"] == "uniform-0.1"
    assert winners[0.1]["best_paper"] is None  # baco stores 0.2, ciess 0.103: neither fits 0.1
    assert winners[0.25]["best"]["arm"] == "ciess-0.1" and winners[0.25]["best_paper"]["arm"] == "ciess-0.1"
    without = {w["budget"]: w for w in budget_winners(frontier_rows(RUNS))}
    assert without[0.25]["best"]["arm"] == "baco-0.25[item=degree]"  # full (1.0) never fits a budget
    lines = format_budget_table({"toy": frontier_rows(runs)}).splitlines()
    assert lines[2].startswith("| toy | 0.1 | `quant-0.1` 0.5000") and lines[2].endswith("| none within these bytes |")
    assert "**1 not converged**" in lines[3] and "`uniform-0.25` 0.3000 ± 0.0000 (2 seeds)" in lines[3]
    no_papers = [r for r in runs if r["method"] not in PAPER_METHODS]
    lines = format_budget_table({"toy": frontier_rows(no_papers)}).splitlines()
    assert lines[2].endswith("| none run in this setting |")  # not "none fits": none was tried


def test_an_unfinished_run_shows_its_best_epoch_so_far_and_is_not_converged():
    unfinished = run("qr", 0.25, 1, 0.25, 0.2, converged=False)
    unfinished["convergence"].update(epochs_run=None, best_epoch=85)
    line = next(l for l in format_frontier_table(frontier_rows(RUNS + [unfinished])).splitlines()
                if l.startswith("| qr-0.25 |"))
    assert line.endswith("| 0/1 **not converged** | 85 / unfinished |")


def test_convergence_says_whether_early_stopping_ended_the_run():
    class Trainer:
        epochs, stopping_step, eval_step = 100, 2, 1
        train_loss_dict = {e: 1.0 for e in range(7)}
        cur_step = 3

    log = ConvergenceLog(bigger=True)
    for epoch, score in enumerate([0.1, 0.3, 0.3, 0.2, 0.25, 0.2, 0.1]):
        log(epoch, score)
    summary = log.summary(Trainer)
    assert summary["best_epoch"] == 2 and summary["epochs_run"] == 7 and summary["converged"] is True
    Trainer.cur_step = 2  # the cap ended it before the patience ran out
    assert log.summary(Trainer)["converged"] is False


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "frontier.png"
    assert plot_frontier(frontier_rows(RUNS), "recall@20", str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_plot_is_skipped_with_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    path = tmp_path / "frontier.png"
    with caplog.at_level(logging.INFO):
        assert plot_frontier(frontier_rows(RUNS), "recall@20", str(path)) is None
    assert not path.exists()
    (record,) = [r for r in caplog.records if "matplotlib" in r.getMessage()]
    assert "\n" not in record.getMessage() and record.levelno == logging.WARNING


def test_bucket_recall_is_averaged_over_seeds_per_arm():
    runs = [dict(r) for r in RUNS[:4]]
    for k, r in enumerate(runs):
        r["test_buckets"] = {"user": {"head": 0.1 * k, "torso": 0.2, "tail": 0.3},
                             "item": {"head": 0.5, "torso": 0.1, "tail": 0.01 * k}}
    rows = {r["arm"]: r for r in frontier_rows(runs)}
    assert rows["uniform-0.1"]["buckets"]["user"]["head"] == pytest.approx(0.25)
    assert rows["full"]["buckets"]["item"]["tail"] == pytest.approx(0.005)
    table = format_bucket_table(list(rows.values()))
    assert "| uniform-0.1 | 0.1000 | 0.2500 | 0.2000 | 0.3000 | 0.5000 | 0.1000 | 0.0250 |" in table


def test_the_percentage_has_the_sign_of_the_mean_difference_when_seeds_disagree():
    """+0.10 on a low curve point and -0.12 on a high one: a mean of per-seed ratios would be positive."""
    runs = [run("full", None, 1, 1.0, 0.40), run("full", None, 2, 1.0, 0.60),
            run("uniform", 0.25, 1, 0.25, 0.10), run("uniform", 0.25, 2, 0.25, 0.50),
            run("scall", 0.25, 1, 0.25, 0.20), run("scall", 0.25, 2, 0.25, 0.38)]
    (row,) = [r for r in frontier_rows(runs) if r["method"] == "scall"]
    assert row["vs_uniform"] == pytest.approx(-0.01) and row["vs_uniform_signs"] == "+-"
    assert row["vs_uniform_pct"] == pytest.approx(100 * -0.01 / 0.30)


def stream_run(method, seed, recalls, best_epochs):
    return {"method": method, "budget": None if method == "full" else 0.125, "seed": seed, "label": None,
            "error": None, "segments": [{"test_users": 10 + k, "test_result": {"recall@20": r},
                                         "convergence": {"best_epoch": e}}
                                        for k, (r, e) in enumerate(zip(recalls, best_epochs))]}


def test_a_stream_is_tabled_per_segment_against_its_uniform_arm_with_a_sign_per_seed():
    runs = [stream_run("full", 1, (0.5, 0.5), (3, 4)),
            stream_run("uniform", 1, (0.2, 0.3), (5, 6)), stream_run("uniform", 2, (0.2, 0.5), (7, 8)),
            stream_run("scall", 1, (0.2, 0.1), (1, 1)), stream_run("scall", 2, (0.3, 0.4), (9, 1))]
    lines = format_segment_table(runs).splitlines()
    assert lines[2].split(" | ")[-1] == "scall-0.125 (fast) − uniform-0.125 (per seed) |"  # no column for full; the mode said
    assert lines[4] == "| 0 | 10 | 0.5000 | 0.2000 | 0.2500 | +0.0500 =+ |"
    assert lines[5] == "| 1 | 11 | 0.5000 | 0.4000 | 0.2500 | -0.1500 -- |"
    for r in runs:  # validation: the scores the search and early stopping selected on
        for segment in r["segments"]:
            segment["valid_result"] = {"recall@20": segment["test_result"]["recall@20"] + 0.5}
    valid = format_segment_table(runs, split="valid").splitlines()
    assert valid[0].startswith("Valid recall@20 per segment") and valid[4] == "| 0 | 10 | 1.0000 | 0.7000 | 0.7500 | +0.0500 =+ |"
    epochs = format_segment_epochs(runs).splitlines()
    assert epochs[5] == "| 1 | 4 | 6 / 8 | 1 / 1 |"
    assert format_segment_table(RUNS) is None and format_segment_epochs(RUNS) is None  # not a stream
    two_uniforms = runs + [dict(stream_run("uniform", 1, (0.2, 0.3), (5, 6)), budget=0.25)]
    assert format_segment_table(two_uniforms) is None  # which one would the others be measured against?


def test_a_stream_search_is_tabled_by_its_mean_reward_and_spread_per_segment():
    runs = [stream_run("uniform", 1, (0.2, 0.3), (5, 6)), stream_run("scall", 1, (0.2, 0.1), (1, 1)),
            stream_run("scall", 2, (0.3, 0.4), (9, 1))]
    runs[1]["segments"][1]["search"] = {"rewards": [-1.0, -0.99]}
    runs[2]["segments"][1]["search"] = {"rewards": [0.2, -0.2, 0.0]}
    lines = format_segment_search(runs).splitlines()
    assert lines[2] == "| segment | scall-0.125 (fast) |"  # only the arm that searched, its mode said
    assert lines[4] == "| 0 | - |"
    assert lines[5] == "| 1 | -0.497 / 0.205 |"  # means (-0.995, 0.0), spreads (0.01, 0.4)
    assert format_segment_search(runs[:1]) is None
    runs[1]["plan"] = {"segment": 0, "rewards": [1.0, 1.0]}  # an older run: its plan record, the last segment's
    assert format_segment_search(runs).splitlines()[4] == "| 0 | +1.000 / 0.000 |"


def trained_run(method, budget, seed, ratio, recall, training):
    """A run file with its bytes held while training, as runs record them since the frontier has two rulers."""
    return {**run(method, budget, seed, ratio, recall),
            "compression": {"ratio": ratio, "stored_bytes": int(ratio * 1000), "training_ratio": training}}


TWO_RULERS = [trained_run("full", None, 1, 1.0, 0.40, 1.0), trained_run("full", None, 2, 1.0, 0.42, 1.0),
              trained_run("uniform", 0.1, 1, 0.1, 0.20, 0.1), trained_run("uniform", 0.1, 2, 0.1, 0.22, 0.1),
              trained_run("uniform", 0.25, 1, 0.25, 0.30, 0.25), trained_run("uniform", 0.25, 2, 0.25, 0.30, 0.25),
              trained_run("quant", 0.1, 1, 0.1, 0.305, 0.25), trained_run("quant", 0.1, 2, 0.1, 0.32, 0.25),
              run("baco", 0.1, 1, 0.1, 0.5)]  # an older run file: no training figures, none derivable


def test_the_training_ratio_is_read_from_a_run_or_derived_only_where_it_can_be():
    assert training_ratio(TWO_RULERS[6]) == 0.25
    assert training_ratio({"method": "baco", "compression": {"ratio": 0.2, "training": {"ratio": 0.7}}}) == 0.7
    stream = {"method": "scall", "compression": {"ratio": 0.1},
              "segments": [{"training_memory": {"ratio": 0.12}}, {"training_memory": {"ratio": 0.15}}, {}]}
    assert training_ratio(stream) == 0.15  # the most any segment held
    old = {"compression": {"ratio": 0.25, "stored_floats": 250, "full_floats": 1000}}
    assert training_ratio({**old, "method": "hash"}) == 0.25  # a float table trains what it stores
    assert training_ratio({**old, "method": "ciess"}) is None  # trains a masked n x d table: not derivable
    assert training_ratio({**old, "method": "uniform", "extra": {"emb_bits": 4}}) is None  # float32 masters
    searched = {"method": "ciess", "compression": {"ratio": 0.1, "training_ratio": 0.1}, "plan": {"searched": True}}
    assert training_ratio(searched) == 1.0  # its masked n x d search, unmeasured in older files: at least full's
    measured = {**searched, "plan": {"searched": True, "search_training_memory": {"ratio": 1.2}},
                "compression": {"ratio": 0.1, "training_ratio": 1.2}}
    assert training_ratio(measured) == 1.2
    scall = {"method": "scall", "segments": [{"training_memory": {"ratio": 0.12}, "search_steps": 3,
                                              "search_training_memory": {"ratio": 1.3}}]}
    assert training_ratio(scall) == 1.3 and training_ratio({"method": "scall", "segments": [
        {"training_memory": {"ratio": 0.12}, "search_steps": 3}]}) == 1.0


def test_every_arm_is_compared_with_uniform_at_its_stored_and_at_its_training_bytes():
    rows = {r["arm"]: r for r in frontier_rows(TWO_RULERS)}
    quant = rows["quant-0.1"]
    assert quant["training_ratio"] == 0.25 and rows["uniform-0.1"]["training_ratio"] == 0.1
    assert quant["vs_uniform"] == pytest.approx(0.1025) and quant["vs_uniform_signs"] == "++"
    assert quant["vs_uniform_training"] == pytest.approx(0.0125) and quant["vs_uniform_training_signs"] == "++"
    assert rows["baco-0.1"]["training_ratio"] is None and rows["baco-0.1"]["vs_uniform_training"] is None
    line = next(l for l in format_frontier_table(list(rows.values())).splitlines() if l.startswith("| quant-0.1 |"))
    assert line.startswith("| quant-0.1 | 0.1000 | 0.2500 |") and "| +0.0125 (+4.2 %) ++ |" in line


def test_the_summary_says_which_method_at_which_budget_by_stored_and_by_training_bytes():
    rows = frontier_rows(TWO_RULERS)
    stored = {w["budget"]: w["best"]["arm"] for w in budget_winners(rows)}
    training = {w["budget"]: w["best"]["arm"] for w in budget_winners(rows, axis="training")}
    assert stored == {0.1: "baco-0.1", 0.25: "baco-0.1"}
    assert training == {0.1: "uniform-0.1", 0.25: "quant-0.1"}  # quant holds 0.25 while training; baco unknown
    summary = format_summary({"toy": rows}).splitlines()
    second = summary.index("### By bytes held while training (parameters, gradients, buffers, optimiser state)")
    assert summary[0] == "### By stored bytes" and summary[2].startswith("| setting | bytes / full ≤ |")
    assert summary[second + 2].startswith("| setting | training bytes / full ≤ |")
    assert summary[second + 4].startswith("| toy | 0.1 | `uniform-0.1` 0.2100")
    assert summary[second + 5].startswith("| toy | 0.25 | `quant-0.1` 0.3125 ± 0.0106, +4.2 % vs uniform ++")
    assert summary[-1].endswith("not in the second table: toy: baco-0.1 (stated)")  # a run file before the modes


def test_the_plot_has_a_panel_per_ruler(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: saved.append(fig))
    plot_frontier(frontier_rows(TWO_RULERS), "recall@20", str(tmp_path / "f.png"))
    left, right = saved[0].axes
    assert left.get_xlabel().startswith("stored bytes") and right.get_xlabel().startswith("bytes held while training")
    drawn = {ax: ax.get_legend_handles_labels()[1] for ax in (left, right)}
    assert drawn[left] == ["full", "uniform", "quant-0.1", "baco-0.1 (stated)"]
    assert drawn[right] == ["full", "uniform", "quant-0.1"]  # baco has no training figures
    quant = next(bars for bars in right.containers if bars.get_label() == "quant-0.1")
    assert list(quant.lines[0].get_xdata()) == [0.25]  # 0.1 of the bytes stored, 0.25 held while training


def test_every_paper_method_figure_says_its_mode():
    old = {"method": "ciess", "budget": 0.25}  # a run file from before the modes: the fast mode's
    assert shown_label(old) == "ciess-0.25 (fast)"
    assert shown_label({"method": "baco", "budget": 0.25, "label": "baco-0.25[split]"}) == "baco-0.25[split] (stated)"
    assert shown_label({"method": "scall", "budget": 0.125, "label": "scall-0.125[flat]", "mode": "paper"}) == \
        "scall-0.125[flat] (paper)"
    assert shown_label({"method": "ciess", "budget": 0.1, "label": "ciess-0.1[paper x1]", "mode": "paper"}) == \
        "ciess-0.1[paper x1]"  # the label says it already
    assert shown_label({"method": "quant", "budget": 0.1}) == "quant-0.1"  # no modes
    rows = frontier_rows([{**old, "seed": 1, "error": None, "test": {"recall@20": 0.3},
                           "compression": {"ratio": 0.25, "stored_bytes": 10}}])
    assert rows[0]["arm"] == "ciess-0.25" and "| ciess-0.25 (fast) |" in format_frontier_table(rows)
