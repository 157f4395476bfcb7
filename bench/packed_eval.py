"""Evaluation time of a model with per-row widths trained in packed form (``PackedWidthEmbedding``: CIESS's
search steps and final training, SCALL's segments; here every id table with seeded random widths), its full table rebuilt for every batch of RecBole's full-sort
scoring against kept while its tensors do not change, measured alternately in one run; whether the metrics
are the same.

    python bench/packed_eval.py [--rounds 5]

Writes bench/results/packed_eval.json; the docs quote the ratio of median evaluation times.
"""

import statistics

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from common import alternate, evaluation_seconds, machine, save_results, timing_arguments
from recbole_lightemb import Config
from recbole_lightemb.swap import replace_table
from recbole_lightemb.modules.packed import PackedWidthEmbedding


WIDTH = 16
"""Mean width of the packed rows (drawn uniformly in 1..31, seeded): a quarter of RecBole's 64."""


def evaluation(trainer, valid_data, rebuilt):
    """Seconds and metrics of one full-sort evaluation, the packed tables rebuilt per batch or kept."""
    kept = PackedWidthEmbedding.full_table
    if rebuilt:
        PackedWidthEmbedding.full_table = PackedWidthEmbedding._table
    try:
        return evaluation_seconds(trainer, valid_data)
    finally:
        PackedWidthEmbedding.full_table = kept


def measure(model_name, rounds):
    config = Config(model=model_name, dataset="ml-100k", config_dict={
        "show_progress": False, "state": "WARNING"})
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    model = get_model(model_name)(config, train_data._dataset)
    generator = torch.Generator().manual_seed(config["seed"])
    for table in [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]:
        widths = torch.randint(1, 2 * WIDTH, (table.num_embeddings,), generator=generator)
        replace_table(model, table, PackedWidthEmbedding(table.num_embeddings, table.embedding_dim, widths,
                                                         padding_idx=table.padding_idx))
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    trainer._train_epoch(train_data, 0, show_progress=False)
    seconds = alternate({label: (lambda r=rebuilt: evaluation(trainer, valid_data, r)[0])
                         for label, rebuilt in (("rebuilt", True), ("kept", False))}, rounds)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    same = evaluation(trainer, valid_data, True)[1] == evaluation(trainer, valid_data, False)[1]
    ratio = median["rebuilt"] / median["kept"]
    print(f"{model_name:<8} evaluation rebuilt {median['rebuilt']:.2f}s kept {median['kept']:.2f}s  x{ratio:.2f}  "
          f"same metrics: {same}", flush=True)
    return {"model": model_name, "seconds": seconds, "median_s": median, "speedup_of_medians": ratio,
            "same_metrics": same}


def main():
    args = timing_arguments(__doc__, rounds=5)
    rows = [measure(model, args.rounds) for model in ("BPR", "SASRec")]
    save_results("packed_eval", {"benchmark": "packed_eval", "dataset": "ml-100k", "widths": "uniform in 1..31, mean 16 of 64",
                                 "rounds": args.rounds, "results": rows, "machine": machine()})


if __name__ == "__main__":
    main()
