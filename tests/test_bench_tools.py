"""The helper scripts under bench/ that users run before a benchmark."""

import subprocess
import sys
from pathlib import Path

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
