"""emb=quant: low-precision rows, wider for the same bytes, counted with their scales."""

import pytest
import torch

from recbole_lightemb import run_recbole_lightemb
from recbole_lightemb.modules import UniformEmbedding
from recbole_lightemb.modules.packed_file import table_arrays
from recbole_lightemb.modules.precision import apply_precision
from recbole_lightemb.modules.quantized import fake_quantize, quantized_width, row_bytes, unpack


def quantized_table(n, dim, width, bits, padding_idx=None):
    """What ``emb: quant`` builds: a uniform table whose rows are ``bits``-bit values."""
    return apply_precision(UniformEmbedding(n, dim, width, padding_idx=padding_idx), {"table": bits})


def test_values_sit_on_the_stored_grid_and_gradients_pass_through():
    rows = torch.randn(5, 16, requires_grad=True)
    out = fake_quantize(rows, 4)
    scale = rows.detach().abs().amax(1, keepdim=True) / 7
    steps = out.detach() / scale
    assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= 7 + 1e-4
    assert (out - rows).abs().max() <= scale.max() / 2 + 1e-6
    out.sum().backward()
    assert torch.equal(rows.grad, torch.ones_like(rows))  # straight through the rounding


@pytest.mark.parametrize("budget, bits", [(0.1, 4), (0.1, 8), (0.25, 8), (0.25, 2), (0.05, 16)])
def test_the_width_is_the_widest_that_fits(budget, bits):
    per_row = budget * 64 * 4
    width = quantized_width(per_row, bits, 64)
    assert row_bytes(width, bits) <= per_row
    assert width == 64 or row_bytes(width + 1, bits) > per_row


def test_stored_bytes_count_packed_values_and_scales():
    table = quantized_table(10, 64, 42, 4, padding_idx=0)
    assert table.stored_bytes() == 10 * (21 + 4)
    assert (table.full_table()[0] == 0).all() and (table.full_table()[:, 42:] == 0).all()


def test_trains_through_recbole_within_the_budget(tiny_config):
    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "quant", "emb_budget": 0.1})
    assert result["compression"]["ratio"] <= 0.1 and result["plan"]["widths"]["user_embedding"] == 42
    assert result["compression"]["training"]["param_bytes"] == 4 * 42 * sum(
        t["entities"] for t in result["compression"]["tables"])  # float32 masters while training


@pytest.mark.parametrize("extra, match", [({"quant_bits": 3}, "quant_bits=3: allowed 2, 4, 8, 16"),
                                          ({"emb_budget": 0.01}, "emb_budget=0.01 cannot pay")])
def test_bad_values_are_named(tiny_config, extra, match):
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "quant", "emb_budget": 0.1, **extra})


@pytest.mark.parametrize("bits, width", [(4, 42), (8, 21), (2, 64), (16, 5)])
def test_the_written_rows_are_the_counted_bytes_and_give_back_the_trained_values(bits, width):
    table = quantized_table(30, 64, width, bits, padding_idx=0)
    arrays = table_arrays(table)
    assert set(arrays) == {f"table.bits{bits}", f"table.scale{bits}"}
    assert sum(a.nbytes for a in arrays.values()) == table.stored_bytes()
    restored = unpack(arrays[f"table.bits{bits}"], width, bits).float() * torch.from_numpy(arrays[f"table.scale{bits}"])[:, None]
    assert torch.allclose(restored, table.full_table()[:, :width].detach(), atol=1e-6)


def test_a_reused_plan_refuses_a_different_bit_width(tiny_config):
    first = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "quant", "emb_budget": 0.1})
    with pytest.raises(ValueError, match="quant_bits=8: the reused plan was made with quant_bits=4"):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "quant", "emb_budget": 0.1,
                                                       "quant_bits": 8, "emb_plan": first["plan"]["file"]})
