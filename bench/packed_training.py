"""CIESS's final training, packed tables against the masked n × d form: epoch time and bytes held.

The widths are a fixed frequency-ranked plan at each budget (the search is not what is measured);
both forms train the same model through RecBole's trainer, alternately, one epoch per round.

    python bench/packed_training.py [--rounds 5] [--models BPR LightGCN] [--budgets 0.1 0.25]

Writes bench/results/packed_training.json: median epoch seconds of each form, their ratio (target
≤ 1.2), and the bytes each holds while training (parameters, buffers, Adam state) over full tables.
"""

import argparse
import statistics

import numpy as np
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from recbole_lightemb import Config
from recbole_lightemb.ciess.widths import fit_to_budget, full_plan_bytes
from recbole_lightemb.modules import VariableWidthEmbedding
from recbole_lightemb.modules.packed import PackedWidthEmbedding
from recbole_lightemb.swap import find_embedding_tables, replace_table
from common import machine, save_results, time_and_memory, timing_arguments


def frequency_widths(dataset, budget, dim):
    """Widths ∝ √frequency, shrunk by CIESS's own ``fit_to_budget`` until they fit ``budget``."""
    counts = {"user": np.bincount(dataset.inter_feat[dataset.uid_field].numpy(), minlength=dataset.user_num),
              "item": np.bincount(dataset.inter_feat[dataset.iid_field].numpy(), minlength=dataset.item_num)}
    widths = {r: np.clip(np.round(np.sqrt(c + 1) * 4), 1, dim).astype(np.int64) for r, c in counts.items()}
    dims = {r: [dim] for r in widths}
    sizes = {r: len(w) for r, w in widths.items()}
    return fit_to_budget(widths, dims, dim, int(budget * full_plan_bytes(sizes, dims)), 1)


def trainer_for(config, train_data, widths, packed):
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data.dataset)
    specs, tables = find_embedding_tables(model, train_data.dataset, config)
    for spec, table in zip(specs, tables):
        kind = PackedWidthEmbedding if packed else VariableWidthEmbedding
        replace_table(model, table, kind(spec.num_embeddings, spec.embedding_dim, widths[spec.role],
                                         padding_idx=spec.padding_idx, init_from=table.weight))
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model)


def measure(model_name, budget, rounds):
    config = Config(model=model_name, dataset="ml-100k", config_dict={"show_progress": False, "state": "WARNING"})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    widths = frequency_widths(train_data.dataset, budget, config["embedding_size"])
    times, memory = time_and_memory({form: (trainer_for(config, train_data, widths, form == "packed"), train_data)
                                     for form in ("masked", "packed")}, rounds)
    ratio = statistics.median(times["packed"]) / statistics.median(times["masked"])
    print(f"{model_name:<9} budget {budget:<5} masked {statistics.median(times['masked']):.3f}s "
          f"(holds {memory['masked']['ratio']:.3f} of full)  packed {statistics.median(times['packed']):.3f}s "
          f"(holds {memory['packed']['ratio']:.3f})  time ratio {ratio:.3f}", flush=True)
    return {"model": model_name, "budget": budget, "seconds": times, "time_ratio_of_medians": ratio,
            "training_memory": memory}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["BPR", "LightGCN"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.1, 0.25])
    args = timing_arguments(__doc__, rounds=5, parser=parser)
    rows = [measure(m, b, args.rounds) for m in args.models for b in args.budgets]
    save_results("packed_training", {
        "benchmark": "packed_training", "dataset": "ml-100k", "rounds": args.rounds, "results": rows,
        "machine": machine()})


if __name__ == "__main__":
    main()
