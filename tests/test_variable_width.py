"""VariableWidthEmbedding: masking, in-place width changes, accounting, packed checkpoints."""

import io

import numpy as np
import pytest
import torch

from recbole_lightemb.modules import VariableWidthEmbedding
from recbole_lightemb.modules.base import index_bytes


def make(n=50, d=16, widths=None, **kwargs):
    rng = np.random.default_rng(0)
    widths = rng.integers(1, d + 1, n) if widths is None else widths
    torch.manual_seed(0)
    return VariableWidthEmbedding(n, d, widths, **kwargs)


def test_rows_are_masked_to_their_widths_and_gradients_stay_inside():
    emb = make()
    ids = torch.arange(50)
    out = emb(ids)
    for e in range(50):
        w = int(emb.widths[e])
        assert torch.all(out[e, w:] == 0)
        assert torch.all(out[e, :w] == emb.table[e, :w])
    assert torch.equal(emb.weight, out)
    out.sum().backward()
    assert torch.equal(emb.table.grad != 0, emb.mask.bool())


def test_set_widths_keeps_parameter_and_values_that_fit():
    emb = make(widths=np.full(50, 16))
    param, before = emb.table, emb.table.detach().clone()
    opt = torch.optim.Adam(emb.parameters(), lr=0.1)
    emb(torch.arange(50)).pow(2).sum().backward()
    opt.step()
    trained = emb.table.detach().clone()
    assert not torch.equal(trained, before)
    emb.set_widths(np.full(50, 4))
    assert emb.table is param and opt.state[param]  # optimizer state survives
    assert torch.equal(emb.weight[:, :4], trained[:, :4]) and torch.all(emb.weight[:, 4:] == 0)
    emb.set_widths(np.full(50, 8))  # reopened coordinates resume from what the parameter holds
    assert torch.equal(emb.weight[:, :8], trained[:, :8])


def test_accounting_counts_floats_and_width_indices():
    widths = np.array([0, 3, 16, 5, 0, 1])
    emb = VariableWidthEmbedding(6, 16, widths)
    assert emb.stored_floats() == 25
    assert emb.index_bytes() == 4 * index_bytes(16)
    assert emb.stored_bytes() == 25 * 4 + 4
    wide = VariableWidthEmbedding(3, 300, [300, 1, 2])
    assert wide.index_bytes() == 3 * 2  # 300 needs int16


def test_padding_row_is_never_stored():
    emb = make(n=10, widths=np.full(10, 16), padding_idx=0)
    assert int(emb.widths[0]) == 0 and emb.stored_floats() == 9 * 16
    assert torch.all(emb(torch.tensor([0])) == 0)


def test_bad_widths_fail():
    with pytest.raises(ValueError, match="0..16"):
        make(n=3, widths=[1, 17, 2])
    with pytest.raises(ValueError, match="shape"):
        make(n=3, widths=[1, 2])
    with pytest.raises(ValueError, match="whole"):
        make(n=3, widths=np.array([1.5, 2.0, 3.0]))


def test_state_dict_round_trip_is_packed_and_exact():
    emb = make(n=200, d=32)
    state = emb.state_dict()
    assert set(state) == {"values", "widths"}
    assert state["values"].numel() == emb.stored_floats()
    assert state["widths"].dtype == torch.int8
    other = make(n=200, d=32, widths=np.full(200, 32))
    other.load_state_dict(state)
    assert torch.equal(other.widths, emb.widths)
    assert torch.equal(other.weight, emb.weight)
    assert torch.all(other.table[~other.mask.bool()] == 0)


def test_checkpoint_on_disk_is_about_the_kept_fraction():
    n, d = 2000, 64
    rng = np.random.default_rng(1)
    full = VariableWidthEmbedding(n, d, np.full(n, d))
    small = VariableWidthEmbedding(n, d, rng.integers(1, 13, n))  # mean width 6.5 of 64: ~10 %

    def size(module):
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        return buffer.tell()

    kept = small.stored_floats() / (n * d)
    assert 0.08 < kept < 0.12
    assert size(small) < 1.3 * kept * size(full)
    assert size(small) >= small.stored_bytes()


def test_load_rejects_inconsistent_checkpoint():
    emb = make(n=10, d=8, widths=np.full(10, 8))
    state = emb.state_dict()
    state["values"] = state["values"][:-1]
    with pytest.raises(RuntimeError, match="values"):
        emb.load_state_dict(state)


def test_inside_a_model_device_moves_and_load_through_parent():
    model = torch.nn.Module()
    model.user_embedding = make(n=20, d=8)
    model.item_embedding = make(n=30, d=8)
    state = model.state_dict()
    assert set(state) == {"user_embedding.values", "user_embedding.widths",
                          "item_embedding.values", "item_embedding.widths"}
    model2 = torch.nn.Module()
    model2.user_embedding = make(n=20, d=8, widths=np.ones(20, dtype=int))
    model2.item_embedding = make(n=30, d=8, widths=np.ones(30, dtype=int))
    model2.load_state_dict(state)
    model2.to(torch.float64).to("cpu")
    assert torch.allclose(model2.user_embedding.weight.float(), model.user_embedding.weight)


def test_packed_table_kept_in_evaluation_follows_every_change():
    """The table kept for evaluation is rebuilt after an optimiser step, a load, a move or cast of the values, a
    new parameter and a write into the kept table itself; it is never kept in training mode, with gradients on
    or in inference mode, and training drops it."""
    from recbole_lightemb.modules.packed import PackedWidthEmbedding

    table = PackedWidthEmbedding(6, 4, widths=[4, 2, 0, 1, 3, 4])
    optimizer = torch.optim.Adam(table.parameters(), lr=0.5)

    def fresh():
        return table._table().detach().clone()

    table.eval()
    with torch.no_grad():
        first = table.weight
        assert table.weight is first and torch.equal(first, fresh())  # kept
    table(torch.tensor([0, 1, 4])).sum().backward()  # still in evaluation mode: nothing drops the kept table
    optimizer.step()
    with torch.no_grad():
        assert torch.equal(table.weight, fresh()) and not torch.equal(table.weight, first)
        table.weight[0] = 100.0  # a caller writing into the table it was handed
        assert torch.equal(table.weight, fresh())
        table.load_state_dict({"values": torch.zeros_like(table.values), "widths": table.widths})
        assert table.weight.abs().sum() == 0
        table.values.data = torch.ones_like(table.values)
        assert torch.equal(table.weight, fresh()) and table.weight.abs().sum() > 0
        table.values = torch.nn.Parameter(torch.full_like(table.values, 2.0))
        assert torch.equal(table.weight, fresh()) and table.weight.max() == 2
        table.double()
        assert table.weight.dtype == torch.float64
        kept = table.weight
    with torch.inference_mode():
        assert table.weight is not kept and table.weight is not table.weight
    with torch.no_grad():
        table.train()
        assert table._kept_table is None and table.weight is not table.weight  # training mode: built each time
    table.eval()
    assert table.weight is not table.weight  # gradients on: built each time
