"""LightGCN's adjacency: the plugin's forms (a stored CSR transpose; CSR products with `graph_csr`) train RecBole's numbers."""

import copy

import pytest
import torch

from recbole_lightemb import Config, run_recbole_lightemb
from recbole_lightemb.graph import install_adjacency


def test_csr_adjacency_gives_the_same_propagation(tiny_config):
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN

    config = Config(model="LightGCN", config_dict={**tiny_config, "graph_csr": True})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = LightGCN(config, train_data._dataset)
    coo = model.forward()
    install_adjacency(model, config)
    assert model.norm_adj_matrix.layout == torch.sparse_csr
    csr = model.forward()
    for a, b in zip(coo, csr):
        assert torch.allclose(a, b, atol=1e-6)
    sum(t.sum() for t in csr).backward()  # gradients reach the tables through the CSR products
    assert model.user_embedding.weight.grad.abs().sum() > 0


def test_lightgcn_trains_with_csr_adjacency_and_other_models_are_refused(tiny_config):
    result = run_recbole_lightemb(model="LightGCN", config_dict={**tiny_config, "graph_csr": True,
                                                                 "emb": "uniform", "emb_budget": 0.5})
    assert result["compression"]["ratio"] <= 0.5 and result["test_result"]["recall@10"] >= 0
    with pytest.raises(ValueError, match="graph_csr=True: model=NGCF .* allowed: LightGCN"):
        run_recbole_lightemb(model="NGCF", config_dict={**tiny_config, "graph_csr": True})
    with pytest.raises(ValueError, match="graph_csr='maybe': expected True or False"):
        run_recbole_lightemb(model="LightGCN", config_dict={**tiny_config, "graph_csr": "maybe"})


def _trained(config, train_data, adjacency_form):
    """LightGCN's weights after one seeded epoch, its adjacency put in ``adjacency_form``."""
    from recbole.model.general_recommender import LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    init_seed(config["seed"], True)
    model = LightGCN(config, train_data._dataset)
    model.norm_adj_matrix = adjacency_form(model.norm_adj_matrix)
    init_seed(config["seed"], True)
    train_data.generator.manual_seed(config["seed"])  # the same batches each time
    Trainer(config, model)._train_epoch(train_data, 0, show_progress=False)
    return model.state_dict()


@pytest.fixture
def one_thread():
    """One torch thread: with more, RecBole's own LightGCN epoch differs from run to run in the last bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _intel_cpu():
    try:
        with open("/proc/cpuinfo") as f:
            return "GenuineIntel" in f.read()
    except OSError:
        return False


BIT_FOR_BIT = torch.backends.mkl.is_available() and _intel_cpu()
"""Where the same floats are established: torch's MKL build on an Intel CPU. Elsewhere (AMD EPYC: 1.5e-8 after
the tiny epoch) RecBole's own COO and CSR kernels sum in another order, so the forms agree to the last bits."""


def _same(a, b):
    return torch.equal(a, b) if BIT_FOR_BIT else torch.allclose(a, b, rtol=0, atol=1e-6)


def test_the_plugins_adjacency_forms_train_recboles_weights_bit_for_bit(tiny_config, one_thread):
    from recbole.data import create_dataset, data_preparation

    from recbole_lightemb.graph import AdjacencyWithTranspose, csr_in_stored_order

    config = Config(model="LightGCN", config_dict=tiny_config)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    recboles = _trained(config, train_data, lambda m: m)  # RecBole's COO adjacency, torch's gradients
    forms = {"COO, stored transpose (graph_csr: False)": AdjacencyWithTranspose,
             "CSR, stored transpose (graph_csr: True)": lambda m: AdjacencyWithTranspose(csr_in_stored_order(m)),
             "CSR, torch's gradients": csr_in_stored_order}
    for name, form in forms.items():
        plugins = _trained(config, train_data, form)
        assert all(_same(recboles[k], plugins[k]) for k in recboles), name
    other = _trained(config, train_data, lambda m: AdjacencyWithTranspose(1.01 * m))
    assert any(not _same(recboles[k], other[k]) for k in recboles)  # the comparison can tell runs apart

    def other_gradients(m):  # the forward products as RecBole's; only the stored transpose changed
        adjacency = AdjacencyWithTranspose(m)
        adjacency.transpose = 1.01 * adjacency.transpose
        return adjacency

    other = _trained(config, train_data, other_gradients)
    assert any(not _same(recboles[k], other[k]) for k in recboles)  # the stored transpose is what is used


def test_the_stored_transpose_is_the_transpose_and_lightgcn_on_the_cpu_uses_it(tiny_config):
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN

    from recbole_lightemb.graph import AdjacencyWithTranspose, csr_in_stored_order

    unsorted = torch.sparse_coo_tensor([[2, 0, 1, 0], [0, 1, 2, 2]], [1.0, 2.0, 3.0, 4.0], (3, 4), check_invariants=True)
    transpose = csr_in_stored_order(unsorted, transpose=True)
    assert transpose.layout == torch.sparse_csr and transpose.shape == (4, 3)
    assert torch.equal(transpose.to_dense(), unsorted.to_dense().t())
    dense = torch.randn(3, 5)
    assert torch.allclose(torch.sparse.mm(transpose, dense), unsorted.to_dense().t() @ dense)
    assert torch.equal(csr_in_stored_order(unsorted.coalesce().to_sparse_csr(), transpose=True).to_dense(),
                       unsorted.to_dense().t())
    assert torch.equal(csr_in_stored_order(unsorted).to_dense(), unsorted.to_dense())
    config = Config(model="LightGCN", config_dict=tiny_config)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = LightGCN(config, train_data._dataset)
    install_adjacency(model, config)
    assert isinstance(model.norm_adj_matrix, AdjacencyWithTranspose)
    assert model.norm_adj_matrix.layout == torch.sparse_coo  # graph_csr: False keeps RecBole's form
    copied = copy.deepcopy(model)  # e.g. a user's averaged model: the copy keeps the stored transpose
    assert isinstance(copied.norm_adj_matrix, AdjacencyWithTranspose)
    assert all(torch.equal(a, b) for a, b in zip(copied.forward(), model.forward()))
