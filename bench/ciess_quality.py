"""CIESS against the full table and the uniform table at the same memory, on ml-100k.

For each model (BPR, LightGCN; d = 64) and seed, in one process, side by side:
``full``, ``ciess`` at 20 % and 10 % of the full bytes, ``uniform`` at the same fractions.
Every arm of a model trains with the same schedule: RecBole's normal one by default (300 epochs,
early stopping after 10 evaluations without progress); ``--epochs MODEL=N`` caps all arms of
``MODEL`` equally. Reports test Recall@20 / NDCG@20, stored floats and bytes, search time, and
the ratio ``whole ciess run / whole plain (full) run`` of the same model in the same process.
The JSON is rewritten after every arm, so an interrupted run keeps what it measured.

    nice python bench/ciess_quality.py --seeds 1 --epochs LightGCN=150   # bench/results/ciess_quality.json
    nice python bench/ciess_quality.py --models LightGCN --epochs LightGCN=100 --stopping 1000 --merge --tag '[fixed100]'
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from recbole_lightemb import run_recbole_lightemb

RESULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ciess_quality.json")


def arms(budgets):
    yield "full", {"emb": "full"}
    for b in budgets:
        yield f"ciess@{b}", {"emb": "ciess", "emb_budget": b}
        yield f"uniform@{b}", {"emb": "uniform", "emb_budget": b}


def epochs_for(model, args):
    """Epoch cap of every arm of ``model``: ``--epochs MODEL=N``, else RecBole's default 300."""
    return {name: int(n) for name, n in (item.split("=") for item in args.epochs)}.get(model, 300)


def run_arm(model, seed, settings, args, workdir):
    config = {
        "seed": seed, "embedding_size": 64, "epochs": epochs_for(model, args), "stopping_step": args.stopping,
        "metrics": ["Recall", "NDCG"], "topk": [20], "valid_metric": "NDCG@20",
        "train_batch_size": args.batch_size, "show_progress": False, "checkpoint_dir": os.path.join(workdir, "saved"),
        **settings,
    }
    start = time.perf_counter()
    result = run_recbole_lightemb(model=model, dataset="ml-100k", config_dict=config)
    wall = time.perf_counter() - start
    report = result["compression"]
    return {
        "recall@20": result["test_result"]["recall@20"], "ndcg@20": result["test_result"]["ndcg@20"],
        "stored_floats": report["stored_floats"], "stored_bytes": report["stored_bytes"],
        "full_floats": report["full_floats"], "full_bytes": report["full_bytes"], "ratio": report["ratio"],
        "search_s": result["plan"].get("search_s"), "shrunk_to_budget": result["plan"].get("shrunk_to_budget"),
        "wall_s": wall, "train_s": result["timing"]["train_s"], "test_s": result["timing"]["eval_s"],
        "search_kept_quality": [[round(h["kept"], 4), round(h["quality"], 4)] for h in result["plan"].get("history", [])],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["BPR", "LightGCN"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first_seed", type=int, default=2020, help="seeds run: first_seed .. first_seed + seeds - 1")
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.2, 0.1])
    parser.add_argument("--epochs", nargs="*", default=[], metavar="MODEL=N",
                        help="cap every arm of MODEL at N epochs (default: RecBole's 300)")
    parser.add_argument("--stopping", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=2048)
    parser.add_argument("--merge", action="store_true",
                        help="keep the runs already in the JSON except those of the models, tag and seeds run now")
    parser.add_argument("--tag", default="", help="names a non-default schedule in the summary keys, e.g. '[fixed100]'")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the bench machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs = []
    if args.merge and os.path.isfile(RESULT):
        rerun = {(m, args.tag, seed) for m in args.models for seed in seeds}
        with open(RESULT) as f:
            runs = [r for r in json.load(f)["runs"] if (r["model"], r.get("tag", ""), r["seed"]) not in rerun]
    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)  # RecBole writes ./log and ./log_tensorboard
        for model in args.models:
            for seed in seeds:
                for arm, settings in arms(args.budgets):
                    row = {"model": model, "tag": args.tag, "seed": seed, "arm": arm,
                           "epochs": epochs_for(model, args), "stopping_step": args.stopping,
                           **run_arm(model, seed, settings, args, workdir)}
                    runs.append(row)
                    print(json.dumps(row), flush=True)
                    summary = write(args, runs)
    for key, row in summary.items():
        print(f"{key:<22} R@20 {row['recall@20']:.4f}  N@20 {row['ndcg@20']:.4f}  bytes {row['bytes_ratio']:.4f}"
              f"  time x{row['run_time_vs_full']:.2f}")


def _group(row):
    """A summary group: the model, plus the tag of a non-default schedule."""
    return row["model"] + row.get("tag", "")


def write(args, runs):
    """Summarise the arms measured so far and (re)write the JSON; returns the summary."""
    summary = {}
    models = list(dict.fromkeys(_group(r) for r in runs))
    for model in models:
        rows = [r for r in runs if _group(r) == model]
        full_walls = [r["wall_s"] for r in rows if r["arm"] == "full"]
        for arm, _ in arms(args.budgets):
            mine = [r for r in rows if r["arm"] == arm]
            if not mine:
                continue
            wall = float(np.mean([r["wall_s"] for r in mine]))
            summary[f"{model}/{arm}"] = {
                "epochs_cap": mine[0]["epochs"], "stopping_step": mine[0].get("stopping_step", 10),
                "seeds": len(mine),
                "recall@20": float(np.mean([r["recall@20"] for r in mine])),
                "recall@20_std": float(np.std([r["recall@20"] for r in mine])),
                "ndcg@20": float(np.mean([r["ndcg@20"] for r in mine])),
                "ndcg@20_std": float(np.std([r["ndcg@20"] for r in mine])),
                "stored_floats": int(np.mean([r["stored_floats"] for r in mine])),
                "stored_bytes": int(np.mean([r["stored_bytes"] for r in mine])),
                "bytes_ratio": float(np.mean([r["ratio"] for r in mine])),
                "wall_s": wall,
                "run_time_vs_full": wall / float(np.mean(full_walls)) if full_walls else None,
            }
            if arm.startswith("ciess"):
                summary[f"{model}/{arm}"]["search_s"] = float(np.mean([r["search_s"] for r in mine]))
    out = {"settings": {**vars(args), "models": models, "dataset": "ml-100k", "embedding_size": 64,
                        "epochs_per_model": {m: next(r["epochs"] for r in runs if _group(r) == m) for m in models},
                        "note": "all arms of a model share its schedule (300 = RecBole's normal one); "
                                "ciess uses properties/ciess.yaml defaults; wall_s = the whole run "
                                "(data, search, training, test)"},
           "summary": summary, "runs": runs}
    os.makedirs(os.path.dirname(RESULT), exist_ok=True)
    with open(RESULT, "w") as f:
        json.dump(out, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
