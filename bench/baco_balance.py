"""How balanced BACO's clusters are on Beauty at the 25 % budget, per node-weight scheme.

Run from the repository root:  python bench/baco_balance.py [--budget 0.25]
For each (user, item) weight scheme, runs the budget search on the Beauty train split with the
row count that ``emb: baco`` would allow at that byte budget (d = 64, two int32 codes per user,
one per item, one cold row per side), and records the largest clusters: one code shared by
most users means those users differ only by their secondary code (the distinct (primary,
secondary) pairs count the user vectors left). Writes bench/results/baco_balance.json.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_lightemb.baco.coclustering import fit_codebook_budget  # noqa: E402
from recbole_lightemb.methods.baco import rows_for_budget  # noqa: E402
from recbole_lightemb.swap import TableSpec  # noqa: E402
from baco_speed import load_atomic  # noqa: E402
from common import save_results  # noqa: E402

SCHEMES = [("degree", "CPM"), ("degree", "degree"), ("degree", "sqrt"), ("degree", "log"),
           ("sqrt", "sqrt"), ("log", "log"), ("CPM", "CPM")]
DIM = 64
SEED = 2020


def beauty_tables(n_users, n_items):
    """LightGCN's two tables on Beauty as RecBole builds them: one padding id added to each side."""
    return [TableSpec("user_embedding", "user", n_users + 1, DIM, None),
            TableSpec("item_embedding", "item", n_items + 1, DIM, None)]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--beauty", default=str(ROOT.parent / "shared" / "datasets"))
    args = parser.parse_args()
    R = load_atomic(Path(args.beauty) / "beauty" / "beauty.train.inter")
    max_codes = rows_for_budget(beauty_tables(*R.shape), args.budget, secondary=True)
    rows = []
    for user_weight, item_weight in SCHEMES:
        start = time.perf_counter()
        result, probes = fit_codebook_budget(R, max_codes, user_weight=user_weight, item_weight=item_weight,
                                             seed=SEED)
        user_sizes = np.sort(np.bincount(result.user_codes[:, 0]))[::-1]
        item_sizes = np.sort(np.bincount(result.item_codes))[::-1]
        row = {"user_weight": user_weight, "item_weight": item_weight, "resolution": result.resolution,
               "user_codes": result.n_user_codes, "item_codes": result.n_item_codes,
               "largest_user_code": int(user_sizes[0]), "top10_user_codes": int(user_sizes[:10].sum()),
               "largest_item_code": int(item_sizes[0]), "top10_item_codes": int(item_sizes[:10].sum()),
               "singleton_user_codes": int((user_sizes == 1).sum()),
               "singleton_item_codes": int((item_sizes == 1).sum()),
               "users_with_secondary": float((result.user_codes[:, 1] >= 0).mean()),
               "distinct_user_vectors": len(np.unique(np.sort(result.user_codes, axis=1), axis=0)),
               "probes": len(probes), "search_s": time.perf_counter() - start}
        rows.append(row)
        print(f"{user_weight:>6}/{item_weight:<6} γ={row['resolution']:.4g} codes {row['user_codes']}/"
              f"{row['item_codes']}  largest user code {row['largest_user_code']} (top 10: "
              f"{row['top10_user_codes']}) of {R.shape[0]} users, largest item code {row['largest_item_code']} "
              f"of {R.shape[1]} items; {row['distinct_user_vectors']} distinct user vectors", flush=True)
    save_results("baco_balance", {"benchmark": "baco_balance", "dataset": "beauty (train split)",
                                  "users": R.shape[0], "items": R.shape[1], "edges": int(R.nnz),
                                  "budget": args.budget, "max_codes": max_codes, "seed": SEED, "schemes": rows})


if __name__ == "__main__":
    main()
