"""LightGCN's epoch time with its adjacency as RecBole keeps it (COO) and in CSR form (``graph_csr: True``), each
with torch's own gradient products and with the plugin's (a stored CSR transpose, ``AdjacencyWithTranspose``),
measured alternately in one run; whether each form trains RecBole's weights bit for bit (one epoch, the same
batches), and the largest difference between the COO and CSR propagations.

    python bench/graph_csr.py [--rounds 3] [--data ../shared/datasets]   # ml-100k, and Beauty when there

Writes bench/results/graph_csr.json; the docs quote the ratios of median epoch times.
"""

import statistics

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from common import alternate, epoch_seconds, machine, ml100k_and_beauty, save_results, timing_arguments
from recbole_lightemb import Config
from recbole_lightemb.graph import AdjacencyWithTranspose, csr_in_stored_order

FORMS = {"coo": lambda m: m, "coo+transpose": AdjacencyWithTranspose, "csr": csr_in_stored_order,
         "csr+transpose": lambda m: AdjacencyWithTranspose(csr_in_stored_order(m))}
"""RecBole's adjacency and its CSR form with torch's gradients, and as ``graph_csr: False`` / ``True`` run now."""


def fresh_trainer(config, train_data, form):
    """A freshly built LightGCN (seeded) with its adjacency in ``form``, and its trainer."""
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("LightGCN")(config, train_data.dataset)
    model.norm_adj_matrix = FORMS[form](model.norm_adj_matrix)
    return get_trainer(config["MODEL_TYPE"], "LightGCN")(config, model)


def trained_weights(config, train_data, form):
    """The weights after one seeded epoch (the same batches for every form)."""
    trainer = fresh_trainer(config, train_data, form)
    init_seed(config["seed"], config["reproducibility"])
    train_data.generator.manual_seed(config["seed"])
    trainer._train_epoch(train_data, 0, show_progress=False)
    return trainer.model.state_dict()


def largest_difference(config, train_data):
    """The largest absolute difference between the COO and CSR propagations of the same tables."""
    model = fresh_trainer(config, train_data, "coo").model
    with torch.no_grad():
        coo = torch.cat(model.forward())
        model.norm_adj_matrix = csr_in_stored_order(model.norm_adj_matrix)
        return float((coo - torch.cat(model.forward())).abs().max())


def measure(name, dataset, extra, rounds):
    config = Config(model="LightGCN", dataset=dataset, config_dict={
        "n_layers": 2, "embedding_size": 64, "train_batch_size": 2048, "show_progress": False, "state": "WARNING",
        **extra})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    seconds = alternate({form: (lambda f=form: epoch_seconds(fresh_trainer(config, train_data, f), train_data))
                         for form in FORMS}, rounds)
    median = {form: statistics.median(s) for form, s in seconds.items()}
    weights = {form: trained_weights(config, train_data, form) for form in FORMS}
    same = {form: all(torch.equal(a, b) for a, b in zip(weights["coo"].values(), weights[form].values()))
            for form in FORMS if form != "coo"}
    ratios = {"csr_vs_coo": median["coo"] / median["csr"],
              "transpose_vs_coo": median["coo"] / median["coo+transpose"],
              "transpose_vs_csr": median["csr"] / median["csr+transpose"],
              "csr_transpose_vs_coo": median["coo"] / median["csr+transpose"]}
    diff = largest_difference(config, train_data)
    print(f"{name:<8} " + "  ".join(f"{form} {m:.2f}s" for form, m in median.items()) + "  |  " +
          "  ".join(f"{k} x{v:.2f}" for k, v in ratios.items()) +
          "  |  RecBole's weights after an epoch: " + ", ".join(f"{form} {same[form]}" for form in same) +
          f"  |  COO-CSR largest difference {diff:.1e}", flush=True)
    return {"dataset": name, "seconds": seconds, "median_s": median, "speedup_of_medians": ratios,
            "same_weights_as_coo": same, "largest_difference": diff}


def main():
    args = timing_arguments(__doc__, rounds=3, data=True)
    rows = [measure(name, dataset, extra, args.rounds) for name, dataset, extra in ml100k_and_beauty(args.data)]
    save_results("graph_csr", {
        "benchmark": "graph_csr", "model": "LightGCN (2 layers, d = 64, batch 2048)", "rounds": args.rounds,
        "results": rows, "machine": machine()})


if __name__ == "__main__":
    main()
