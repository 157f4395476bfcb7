"""Full-sort evaluation with RecBole's ``eval_batch_size: 4096`` (``4096 // n_items`` users a batch: 2 on ml-100k,
1 on Beauty) against the frontier's (``PROTOCOL``: hundreds of users a batch), after every epoch of a seeded
training run: the time of each, and whether the metrics agree (at 8 decimals; RecBole reports and stops on 4). The scores themselves are not bit
for bit the same: a one-user batch is a matrix-vector product, a many-user batch a matrix product, and BLAS
sums their terms in another order (differences of ~1e-5 on scores of order 10).

    python bench/eval_batch.py [--epochs 8] [--data ../shared/datasets]   # ml-100k, and Beauty when there

Writes bench/results/eval_batch.json; the docs quote the ratio of median evaluation times and the agreement.
"""

import argparse
import statistics

from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from common import evaluation_seconds, machine, ml100k_and_beauty, save_results, timing_arguments
from frontier import PROTOCOL
from recbole_lightemb import Config
from recbole_lightemb.graph import install_adjacency

LARGE = PROTOCOL["eval_batch_size"]
"""The frontier's ``eval_batch_size`` (409 600: 33 Beauty users, 243 ml-100k users a batch)."""


def measure(name, dataset, extra, model_name, epochs):
    def config(eval_batch_size):
        return Config(model=model_name, dataset=dataset, config_dict={
            "embedding_size": 64, "n_layers": 2, "graph_csr": model_name == "LightGCN", "show_progress": False,
            "state": "WARNING", "eval_batch_size": eval_batch_size, "metric_decimal_place": 8, **extra})

    small, large = config(4096), config(LARGE)
    init_seed(small["seed"], small["reproducibility"])
    train_data, valid_small, _ = data_preparation(small, create_dataset(small))
    init_seed(large["seed"], large["reproducibility"])
    _, valid_large, _ = data_preparation(large, create_dataset(large))
    init_seed(small["seed"], small["reproducibility"])
    model = get_model(model_name)(small, train_data._dataset)
    install_adjacency(model, small)
    trainer = get_trainer(small["MODEL_TYPE"], model_name)(small, model)
    rows = []
    for epoch in range(epochs):
        trainer._train_epoch(train_data, epoch, show_progress=False)
        (t_small, r_small), (t_large, r_large) = evaluation_seconds(trainer, valid_small), evaluation_seconds(trainer, valid_large)
        rows.append({"epoch": epoch, "seconds": {"4096": t_small, "large": t_large},
                     "same_metrics": r_small == r_large,
                     "largest_difference": max(abs(r_small[k] - r_large[k]) for k in r_small)})
    ratio = (statistics.median(r["seconds"]["4096"] for r in rows)
             / statistics.median(r["seconds"]["large"] for r in rows))
    same = sum(r["same_metrics"] for r in rows)
    items = train_data._dataset.item_num
    print(f"{name:<8} {model_name:<8} users a batch {max(1, 4096 // items)} vs {LARGE // items}: evaluation "
          f"x{ratio:.2f}; metrics the same after {same} of {len(rows)} epochs (largest difference "
          f"{max(r['largest_difference'] for r in rows):.1e})", flush=True)
    return {"dataset": name, "model": model_name, "epochs": rows, "speedup_of_medians": ratio,
            "same_metrics_epochs": same}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs trained, each followed by both evaluations")
    args = timing_arguments(__doc__, rounds=None, data=True, parser=parser)
    rows = [measure(name, dataset, extra, model, args.epochs)
            for name, dataset, extra in ml100k_and_beauty(args.data) for model in ("BPR", "LightGCN")]
    save_results("eval_batch", {"benchmark": "eval_batch", "large_eval_batch_size": LARGE, "results": rows,
                                "machine": machine()})


if __name__ == "__main__":
    main()
