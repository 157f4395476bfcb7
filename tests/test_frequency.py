"""emb=freq: frequency-ranked mixed-dimension rows, packed while training, with optional projections."""

import numpy as np
import pytest
import torch

from recbole_lightemb import run_recbole_lightemb
from recbole_lightemb.methods.frequency import fit_widths
from recbole_lightemb.modules.mixed import mixed_bytes
from recbole_lightemb.modules import MixedDimEmbedding


def test_widths_grow_with_frequency_and_fit_the_bytes():
    counts = np.array([0, 1, 3, 10, 30, 100, 300, 1000] * 50, dtype=np.float64)
    for projection in (False, True):
        widths = fit_widths(counts, 64, 0.2 * len(counts) * 64 * 4, 0.5, 1, projection, padding_idx=0)
        assert widths[0] == 0 and mixed_bytes(widths, 64, projection) <= 0.2 * len(counts) * 64 * 4
        order = np.argsort(counts[1:], kind="stable")
        assert np.all(np.diff(widths[1:][order]) >= 0)  # never narrower for a more frequent entity
        assert len(set(widths[1:])) > 1
    flat = fit_widths(counts, 64, 0.2 * len(counts) * 64 * 4, 0.0, 1, False)
    assert len(set(flat)) == 1  # alpha = 0: one width for all


def test_projection_lets_a_narrow_row_reach_every_coordinate():
    widths = np.array([0, 2, 2, 8, 64])
    table = MixedDimEmbedding(5, 64, widths, padding_idx=0, projection=True)
    assert torch.equal(table(torch.tensor([1]))[0, 2:], torch.zeros(62))  # starts as the prefix row
    with torch.no_grad():
        for p in table.projections:
            p.normal_()
    out = table.full_table()
    assert (out[1, 2:] != 0).all() and (out[0] == 0).all()
    assert table.stored_floats() == 2 * 2 + 8 + 64 + (2 + 8) * 64
    assert sum(p.numel() for p in table.parameters()) == table.stored_floats()  # packed while training
    plain = MixedDimEmbedding(5, 64, widths, padding_idx=0, projection=False)
    assert (plain.full_table()[1, 2:] == 0).all() and plain.stored_floats() == 2 * 2 + 8 + 64
    assert torch.equal(plain.widths(), torch.from_numpy(widths))


@pytest.mark.parametrize("projection", [False, True])
def test_trains_through_recbole_within_the_budget(tiny_config, projection):
    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "freq", "emb_budget": 0.5,
                                                            "freq_projection": projection})
    assert result["compression"]["ratio"] <= 0.5 and result["test_result"]["recall@10"] >= 0
    tables = result["compression"]["tables"]
    assert all(t["stored_bytes"] <= 0.5 * t["entities"] * t["dim"] * 4 for t in tables)


@pytest.mark.parametrize("key,value,match", [("freq_alpha", -1, "freq_alpha=-1"),
                                             ("freq_min_width", 0, "freq_min_width=0"),
                                             ("freq_projection", "maybe", "freq_projection='maybe'"),
                                             ("emb_budget", 0.001, "emb_budget >= ")])
def test_bad_values_are_named(tiny_config, key, value, match):
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "freq", "emb_budget": 0.5, key: value})
