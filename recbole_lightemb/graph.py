"""LightGCN's normalised adjacency in CSR form (``graph_csr: True``): the same products, faster on the CPU.

RecBole keeps the ``(users + items)²`` adjacency as a COO tensor, and on the CPU ``torch.sparse.mm``
with it is most of a LightGCN batch (on the Beauty split, more than half of a training step's CPU
time is the sparse products of a 2-layer forward and backward). In CSR form the same products run
faster (``bench/graph_csr.py``). The values agree up to float rounding (about 1e-6), so a run with
the key is RecBole's training in another summation order: not bit-identical to one without it, and a
comparison must use one setting for every arm.
"""

import warnings

CSR_MODELS = ("LightGCN",)
"""Models whose adjacency is only ever multiplied (NGCF drops edges by COO index, so it stays COO)."""


def check_graph_csr(config):
    """``graph_csr`` is a boolean, and True only for a model that only multiplies its adjacency."""
    value = config["graph_csr"]
    if not isinstance(value, bool):
        raise ValueError(f"graph_csr={value!r}: expected True or False")
    if value and config["model"] not in CSR_MODELS:
        raise ValueError(f"graph_csr=True: model={config['model']} keeps no adjacency the plugin can convert; "
                         f"allowed: {', '.join(CSR_MODELS)}")


def use_csr_adjacency(model, config):
    """Store ``model.norm_adj_matrix`` in CSR form when ``graph_csr`` asks for it."""
    if config["graph_csr"]:
        with warnings.catch_warnings():  # torch calls its CSR support "beta"; what is used here is tested
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            model.norm_adj_matrix = model.norm_adj_matrix.coalesce().to_sparse_csr()
