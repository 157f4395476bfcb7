"""Codebook and quotient–remainder tables, and the ``hash`` / ``qr`` baselines built on them."""

import math

import numpy as np
import pytest
import torch

from recbole_lightemb import run_recbole_lightemb
from recbole_lightemb.methods.quotient_remainder import quotient_rows_for
from recbole_lightemb.modules import CodebookEmbedding, QuotientRemainderEmbedding
from recbole_lightemb.modules.codebook import HASH_PRIME, HashedCodebookEmbedding


def test_codebook_entity_is_mean_of_its_codes():
    codes = np.array([[-1, -1], [0, -1], [0, 1], [2, -1]])
    emb = CodebookEmbedding(codes, 3, 4, padding_idx=0)
    table = emb.weight
    book = emb.codebook.detach()
    assert table[0].abs().sum() == 0
    assert torch.allclose(table[1], book[0])
    assert torch.allclose(table[2], (book[0] + book[1]) / 2)
    assert torch.allclose(emb(torch.tensor([3, 2])), table[[3, 2]])
    assert emb.stored_floats() == 12 and emb.stored_bytes() == 12 * 4 + 8 * 4
    with pytest.raises(ValueError, match="codes must lie in -1..2"):
        CodebookEmbedding(np.array([0, 3]), 3, 4)


def test_quotient_remainder_rows_are_unique_products():
    emb = QuotientRemainderEmbedding(10, 4, 4, padding_idx=0, generator=torch.Generator().manual_seed(0))
    table = emb.weight
    assert table[0].abs().sum() == 0
    m = emb.n_remainders
    assert torch.allclose(table[7], emb.quotient[7 // m] * emb.remainder[7 % m])
    assert len({tuple(r.tolist()) for r in table[1:]}) == 9
    assert emb.stored_floats() == (emb.quotient.shape[0] + m) * 4


@pytest.mark.parametrize("n, budget_rows", [(1683, 420), (944, 236), (50, 15), (10, 8)])
def test_qr_sizing_fills_but_never_exceeds_the_budget(n, budget_rows):
    q = quotient_rows_for(n, budget_rows)
    m = math.ceil(n / q)
    assert math.ceil(n / m) + m <= budget_rows
    assert q == budget_rows or math.ceil(n / (q + 1)) + math.ceil(n / math.ceil(n / (q + 1))) > budget_rows


def test_qr_budget_too_small_says_the_least_it_needs():
    with pytest.raises(ValueError, match="qr needs at least 15"):
        quotient_rows_for(50, 14)


@pytest.mark.parametrize("emb, budget", [("hash", 0.25), ("qr", 0.5)])  # qr needs ~2√n rows
def test_baselines_train_within_budget(emb, budget, tiny_config):
    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": emb, "emb_budget": budget})
    assert result["compression"]["ratio"] <= budget
    assert result["test_result"]["recall@10"] >= 0


def test_hashed_rows_are_computed_from_the_id_and_nothing_else_is_stored():
    emb = HashedCodebookEmbedding(50, 7, 4, a=12345, b=678, padding_idx=0)
    ids = np.arange(50, dtype=np.int64)
    expected = (12345 * ids + 678) % HASH_PRIME % 7
    assert torch.equal(emb.codes_of(torch.arange(50)), torch.from_numpy(expected))
    table = emb.weight
    assert torch.equal(table[5], emb.codebook[expected[5]]) and table[0].abs().sum() == 0
    assert list(emb.state_dict()) == ["codebook"]  # no code array in memory or in the checkpoint
    assert emb.stored_bytes() == 7 * 4 * 4


def test_hash_refuses_a_budget_below_one_row(tiny_config):
    with pytest.raises(ValueError, match="emb_budget=0.0001 leaves less than one hash row"):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "hash", "emb_budget": 0.0001})
