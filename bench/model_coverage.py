"""Which RecBole model trains with which method: every built-in model against every method, one epoch
each on tiny generated data (``bench/tiny_data.py``), at ``emb_budget: 0.25``.

A cell passes when the run trains, evaluates and reports its bytes; otherwise it holds the first line of
the error, so a method that cannot apply says why. ``full`` keeps RecBole's tables (the plugin's parity
arm): a model with id tables that fails there fails in plain RecBole too. Results are written after every model to ``bench/results/model_coverage.json``
(a later invocation runs only the cells not there yet), and the table to ``bench/results/model_coverage.md``.

    python bench/model_coverage.py                              # every model, every method
    python bench/model_coverage.py --models FM SASRec --methods uniform baco
    python bench/model_coverage.py --report                     # the table from the runs so far
"""

import argparse
import importlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS  # noqa: E402
from tiny_data import CTR, write_tiny_ctr_dataset, write_tiny_dataset, write_tiny_item_features, write_tiny_kg_dataset  # noqa: E402

GROUPS = {"general": "general_recommender", "sequential": "sequential_recommender",
          "context-aware": "context_aware_recommender", "knowledge": "knowledge_aware_recommender"}
METHODS = ("full", "uniform", "hash", "qr", "baco", "freq", "quant", "ciess", "scall")
BUDGET = 0.25
OUT_JSON, OUT_MD = RESULTS / "model_coverage.json", RESULTS / "model_coverage.md"
FEATURE_MODELS = {"FDSA", "GRU4RecF", "SASRecF"}
"""Sequential models that read item features (``selected_features``)."""
SHORT_SEARCH = {"ciess": {"ciess_mode": "fast", "ciess_pretrain_epochs": 1, "ciess_episodes": 1, "ciess_steps": 2, "ciess_step_batches": 2,
                          "ciess_updates_per_step": 2, "ciess_batch_size": 64, "ciess_hidden": 16}}
"""CIESS's search cut to a few fast-mode steps: the table asks whether a method runs on a model, not how well."""
KG_SEQUENTIAL = {"KSR", "GRU4RecKG"}
"""Sequential models that read pretrained entity and relation vectors (``.ent``, ``.rel``)."""
SEQUENTIAL_CONTEXT = {"DIN", "DIEN"}
"""Context models over histories: labelled evaluation, histories in time order."""


def recbole_models():
    """``[(group, model name)]`` of every model class RecBole 1.2.1 ships (its ``exlib`` wrappers aside)."""
    from recbole.model.abstract_recommender import AbstractRecommender

    models = []
    for group, package in GROUPS.items():
        module = importlib.import_module(f"recbole.model.{package}")
        names = sorted(n for n, c in vars(module).items()
                       if isinstance(c, type) and issubclass(c, AbstractRecommender) and c.__module__.startswith(
                           f"recbole.model.{package}."))
        models += [(group, name) for name in names]
    return models


def model_config(group, model, folder):
    """The data and evaluation keys a model of ``group`` needs on the tiny datasets under ``folder``."""
    base = {"data_path": str(folder), "epochs": 1, "train_batch_size": 256, "eval_batch_size": 4096,
            "show_progress": False, "state": "ERROR", "checkpoint_dir": str(folder / "saved"),
            "MAX_ITEM_LIST_LENGTH": 10, "user_inter_num_interval": "[3,inf)", "item_inter_num_interval": "[1,inf)",
            "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"}}
    if group == "context-aware" or model in SEQUENTIAL_CONTEXT:
        config = {**base, **CTR}
        if model in SEQUENTIAL_CONTEXT:
            config["eval_args"] = {**config["eval_args"], "order": "TO"}
        return config
    kg_columns = {"inter": ["user_id", "item_id", "timestamp"], "kg": ["head_id", "relation_id", "tail_id"],
                  "link": ["item_id", "entity_id"]}
    if group == "knowledge":
        return {**base, "dataset": "tinykg", "load_col": kg_columns}
    if model in KG_SEQUENTIAL:
        return {**base, "dataset": "tinykg", "additional_feat_suffix": ["ent", "rel"],
                "load_col": {**kg_columns, "ent": ["ent_id", "ent_emb"], "rel": ["rel_id", "rel_emb"]},
                "preload_weight": {"ent_id": "ent_emb", "rel_id": "rel_emb"},
                "alias_of_entity_id": ["ent_id"], "alias_of_relation_id": ["rel_id"]}
    if model == "S3Rec":  # pre-trains on an item attribute (RecBole's default stage)
        return {**base, "dataset": "tinyseq", "item_attribute": "genre", "pretrain_epochs": 1,
                "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "genre"]}}
    if model in FEATURE_MODELS:
        return {**base, "dataset": "tinyseq", "selected_features": ["genre"],
                "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "genre"]}}
    return {**base, "dataset": "tiny", "load_col": {"inter": ["user_id", "item_id", "timestamp"]}}


SIZE = {"n_users": 100, "n_items": 120, "n_inter": 3000}
"""Large enough that every method fits a 0.25 budget (qr needs 2·sqrt(n) rows per side), small enough for seconds."""


def write_datasets(folder):
    for name in ("tiny", "tinyseq"):
        write_tiny_dataset(folder, name, **SIZE)
    write_tiny_item_features(folder / "tinyseq", "tinyseq", SIZE["n_items"])
    write_tiny_ctr_dataset(folder, **SIZE)
    write_tiny_kg_dataset(folder, **SIZE)


def run_cell(group, model, method, folder):
    """One (model, method): ``{"ok": True, "ratio": …}`` or ``{"ok": False, "error": first line}``."""
    from recbole_lightemb import run_recbole_lightemb

    config = {**model_config(group, model, folder), **SHORT_SEARCH.get(method, {}), "emb": method, "seed": 2020}
    if method != "full":
        config["emb_budget"] = BUDGET
    start = time.perf_counter()
    try:
        result = run_recbole_lightemb(model=model, config_dict=config)
    except Exception as error:  # noqa: BLE001  (a cell records why it cannot run)
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return {"ok": False, "error": f"{type(error).__name__}: {message}"[:300],
                "seconds": round(time.perf_counter() - start, 1)}
    return {"ok": True, "ratio": result["compression"]["ratio"], "seconds": round(time.perf_counter() - start, 1)}


def reason(error):
    """An error's first line with the model's name, its trainer and file paths left out, so one cause
    is one numbered reason however many models it stops."""
    error = re.sub(r"model=\w+ \(\w+\)", "model=M (…)", error)
    error = re.sub(r"model=\w+", "model=M", error)
    error = re.sub(r"RecBole's \w+Trainer", "RecBole's own trainer for it", error)
    return re.sub(r"'[^']*\.pth'", "'….pth'", error)


def format_table(results, methods):
    """Markdown: a row per model, a column per method; a failure is a numbered reason listed below."""
    reasons, lines = [], ["| group | model | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for key in sorted(results, key=lambda k: (list(GROUPS).index(results[k]["group"]), k)):
        row = results[key]
        cells = []
        for method in methods:
            cell = row["cells"].get(method)
            if cell is None:
                cells.append("·")
            elif cell["ok"]:
                cells.append("✓")
            else:
                why = reason(cell["error"])
                if why not in reasons:
                    reasons.append(why)
                cells.append(f"✗{reasons.index(why) + 1}")
        lines.append(f"| {row['group']} | {key} | " + " | ".join(cells) + " |")
    passed = {m: sum(r["cells"].get(m, {}).get("ok", False) for r in results.values()) for m in methods}
    lines += ["", "passing: " + ", ".join(f"{m} {passed[m]}/{len(results)}" for m in methods), ""]
    lines += [f"{k + 1}. `{reason}`" for k, reason in enumerate(reasons)]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[], help="only these models (default: every RecBole model)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--report", action="store_true", help="only write the table from the saved runs")
    parser.add_argument("--again", action="store_true", help="run cells already in the results again")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    sys.argv[1:] = []  # RecBole's Config reads the command line: the script's flags are not its keys
    results = json.loads(OUT_JSON.read_text())["models"] if OUT_JSON.exists() else {}
    models = recbole_models()
    known = {name for _, name in models}
    unknown = [m for m in args.models if m not in known]
    if unknown:
        raise SystemExit(f"error: --models {unknown[0]!r}: not a RecBole 1.2.1 model; allowed: {', '.join(sorted(known))}")
    if not args.report:
        with tempfile.TemporaryDirectory(prefix="coverage-") as folder:
            folder = Path(folder)
            write_datasets(folder)
            os.chdir(folder)  # RecBole writes ./log and ./log_tensorboard
            for group, model in models:
                row = results.get(model, {"group": group, "cells": {}})
                todo = [m for m in args.methods if args.again or m not in row["cells"]]
                if args.models and model not in args.models or not todo:
                    continue
                for method in todo:
                    row["cells"][method] = run_cell(group, model, method, folder)
                results[model] = row
                OUT_JSON.write_text(json.dumps({"budget": BUDGET, "models": results}, indent=1) + "\n")
                marks = " ".join(f"{m}:{'ok' if row['cells'][m]['ok'] else 'x'}" for m in todo)
                print(f"{group:<13} {model:<12} {marks}", flush=True)
    table = format_table(results, list(METHODS))
    OUT_MD.write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
