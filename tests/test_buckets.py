"""Recall by frequency bucket: the buckets partition users and average back to RecBole's Recall@K."""

import numpy as np
import pytest

from recbole_lightemb import run_recbole_lightemb
from recbole_lightemb.analysis.buckets import frequency_buckets


def test_buckets_split_ids_by_descending_frequency():
    counts = np.array([0, 5, 50, 1, 9, 30, 2, 2, 7, 40, 3])
    names = frequency_buckets(counts)
    assert names[0] is None
    assert sorted(np.flatnonzero(names == "head")) == [2, 9]  # the top 20 % of 10 ids
    assert set(np.flatnonzero(names == "tail")) == {3, 6, 7, 10, 1}
    assert (names[1:] != None).all()  # noqa: E711  (every real id has a bucket)


def test_user_buckets_average_back_to_recboles_recall(tiny_config):
    config = {**tiny_config, "emb": "uniform", "emb_budget": 0.5, "metrics": ["Recall"], "topk": [5],
              "valid_metric": "Recall@5"}
    result = run_recbole_lightemb(model="BPR", config_dict=config)
    buckets = result["test_buckets"]
    weighted = sum(buckets["user"][n] * buckets["user_count"][n] for n in buckets["user"])
    assert weighted / sum(buckets["user_count"].values()) == pytest.approx(result["test_result"]["recall@5"],
                                                                          abs=5e-5)
    assert all(0 <= v <= 1 for v in buckets["item"].values()) and buckets["k"] == 5
