"""``graph_csr``: LightGCN's adjacency in CSR form gives the same products and trains through RecBole."""

import pytest
import torch

from recbole_lightemb import Config, run_recbole_lightemb
from recbole_lightemb.graph import use_csr_adjacency


def test_csr_adjacency_gives_the_same_propagation(tiny_config):
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN

    config = Config(model="LightGCN", config_dict={**tiny_config, "graph_csr": True})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = LightGCN(config, train_data._dataset)
    coo = model.forward()
    use_csr_adjacency(model, config)
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
