"""Low-bit rows trained without float32 masters (emb_master_free): the codes are the only copy, updates land on
the grid unbiased, the bytes held while training follow the budget, and a run reloads to the same metrics."""

import os

import numpy as np
import pytest
import torch
from recbole.utils import get_trainer

from recbole_lightemb import load_data_and_model, run_recbole_lightemb
from recbole_lightemb.modules import UniformEmbedding
from recbole_lightemb.modules.master_free import MasterFree, pack_codes, unpack_codes
from recbole_lightemb.modules.packed_file import OVERHEAD_PER_ARRAY
from recbole_lightemb.modules.precision import apply_precision
from recbole_lightemb.report import state_per_float


def master_free_table(n, width, bits, optimizer="sgd", lr=1.0, padding_idx=None, device="cpu", train_bits=None):
    table = UniformEmbedding(n, width, width, padding_idx=padding_idx)
    return apply_precision(table, {"table": bits}, MasterFree(optimizer, lr, seed=7, bits=train_bits)).to(device)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_codes_pack_several_to_a_byte_and_come_back(bits):
    levels = 2 ** (bits - 1) - 1
    codes = torch.randint(-levels, levels + 1, (5, 13)).float()
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (5, -(-13 * bits // 8))
    assert torch.equal(unpack_codes(packed, 13, bits), codes)


def test_a_read_of_no_rows_trains_nothing_and_does_not_fail():
    table = master_free_table(10, 16, 4)
    before = table.low_bit_rows.table.codes.clone()
    rows = table(torch.zeros(0, dtype=torch.long))  # a width group none of a batch's ids falls in (freq)
    (rows.sum() + table(torch.tensor([3])).sum()).backward()
    changed = (table.low_bit_rows.table.codes != before).any(1).tolist()
    assert rows.shape == (0, 16) and changed == [False] * 3 + [True] + [False] * 6


def test_the_codes_are_the_only_copy_of_the_rows_and_a_read_trains_only_what_it_read(device):
    _, where = device
    table = master_free_table(10, 16, 4, padding_idx=0, device=where)
    assert [name for name, _ in table.named_parameters()] == ["low_bit_rows.table.log_step"]  # no float32 rows
    store = table.low_bit_rows.table
    before = store.codes.clone()
    rows = table(torch.tensor([0, 1, 1, 3], device=where))
    levels = 7
    step = store.step_sizes()
    assert torch.allclose(rows[1, :16], store.integer_codes(torch.tensor([1], device=where))[0] * step[1])
    rows.pow(2).sum().backward()
    changed = (store.codes != before).any(1).cpu()
    assert changed.tolist() == [False, True, False, True] + [False] * 6  # the padding row stays as it was
    assert store.integer_codes().abs().max() <= levels
    assert table.low_bit_rows.table.log_step.grad[[1, 3]].abs().min() > 0  # the step sizes learn too


def test_stochastic_rounding_lands_on_the_grid_with_the_exact_update_on_average():
    table = master_free_table(20_000, 4, 8, optimizer="sgd", lr=1.0)
    store = table.low_bit_rows.table
    with torch.no_grad():
        store.codes.copy_(pack_codes(torch.zeros(20_000, 4), 8))
        store.log_step.fill_(0.0)  # step size 1: an update of 0.3 is 0.3 of a code
    ids = torch.arange(20_000)
    table(ids).mul(torch.full((20_000, 4), -0.3)).sum().backward()  # gradient -0.3: the update is +0.3
    codes = store.integer_codes()
    assert set(codes.unique().tolist()) == {0.0, 1.0}
    assert abs(codes.mean().item() - 0.3) < 0.01  # 80 000 draws: the standard error is 0.0016


@pytest.mark.parametrize("train_bits", [8, 16])
def test_finer_trained_codes_are_read_on_the_stored_grid(train_bits):
    table = master_free_table(40, 16, 4, train_bits=train_bits)
    store = table.low_bit_rows.table
    rows = table(torch.arange(40)).detach()
    codes = rows / store.step_sizes().unsqueeze(1)
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.round().abs().max() == 7  # 4-bit, as stored
    assert torch.equal(rows, store.integer_codes() * store.step_sizes().unsqueeze(1))
    assert store.codes.element_size() * store.codes.shape[1] == 16 * train_bits // 8  # the trained codes' bytes
    assert store.trained_codes().abs().max() > 7  # ... on the finer grid


def test_per_row_bits_train_one_grid_and_read_each_row_on_its_own():
    bits = np.array([8] * 4 + [4] * 6 + [2] * 10)  # emb_bits: 4 under the frequency policy
    table = master_free_table(20, 16, bits)
    store = table.low_bit_rows.table
    assert store.train_bits == 8 and store.codes.shape == (20, 16)  # one byte a value for every row
    codes, step = store.integer_codes(), store.step_sizes()
    assert codes[:4].abs().max() == 127 and codes[4:10].abs().max() == 7 and codes[10:].abs().max() == 1
    assert torch.equal(table(torch.arange(20)).detach(), codes * step.unsqueeze(1))
    assert store.stored_bytes(None) == 4 * (16 + 4) + 6 * (8 + 4) + 10 * (4 + 4) + 5  # + a 2-bit class a row
    store.load_stored(codes, step)  # the stored form taken back reads as it was
    assert torch.equal(store.integer_codes(), codes) and torch.allclose(store.step_sizes(), step)


def test_finer_trained_codes_grow_and_shrink_their_step_to_keep_their_largest_code_near_the_top():
    table = master_free_table(2, 8, 4, train_bits=16, lr=1.0)
    store = table.low_bit_rows.table
    codes = torch.tensor([[7, -3, 2, 0, 1, -7, 5, 4], [-7, 6, 1, 0, -2, 3, 7, -1]], dtype=torch.float32)
    store.load_stored(codes, torch.tensor([0.1, 0.2]))  # trained codes that read back exactly as these rows
    before = store.log_step.detach().exp().clone()
    rows = table(torch.arange(2))
    assert torch.allclose(rows.detach(), codes * torch.tensor([[0.1], [0.2]]))
    gradient = torch.stack([torch.full((8,), -5.0), 0.9 * rows[1].detach()])  # row 0: +5, past the grid's edge;
    rows.mul(gradient).sum().backward()  # row 1: to a tenth of itself
    after, peaks = store.log_step.detach().exp(), store.trained_codes().abs().amax(1)
    assert peaks.min() > 32767 / 2 and peaks.max() <= 32767
    assert (after[0] / before[0]).item() == pytest.approx((0.7 + 5) / 0.7, rel=1e-4)
    assert (after[1] / before[1]).item() == pytest.approx(0.1, rel=1e-4)


def test_full_tables_are_counted_with_the_optimisers_state_even_where_no_parameter_holds_any():
    param = torch.nn.Parameter(torch.zeros(3))
    assert state_per_float(torch.optim.Adam([param])) == 2 and state_per_float(torch.optim.SGD([param], lr=0.1)) == 0
    assert state_per_float(torch.optim.SGD([param], lr=0.1, momentum=0.9)) == 1
    adagrad = torch.optim.Adagrad([param])
    param.grad = torch.ones(3)
    adagrad.step()
    assert state_per_float(adagrad) == 1  # measured: its running sum


def test_finer_trained_codes_follow_small_updates_that_4_bit_codes_only_meet_on_average():
    """Many small updates of one sign: 16-bit codes land within a few of their fine steps of the exact sum,
    4-bit codes scatter by their coarse steps (stochastic rounding's noise shrinks with the grid's step)."""
    errors = {}
    for train_bits in (4, 16):
        table = master_free_table(200, 8, 4, optimizer="sgd", lr=0.002, train_bits=train_bits)
        store = table.low_bit_rows.table
        store.load_stored(torch.zeros(200, 8), torch.full((200,), 0.05))  # every value 0, stored step 0.05
        for _ in range(30):
            table(torch.arange(200)).sum().backward()  # gradient 1 everywhere: each step moves every value -0.002
        trained = store.trained_codes() * store.log_step.detach().exp().unsqueeze(1)
        errors[train_bits] = (trained + 30 * 0.002).abs().mean().item()
    assert errors[16] < 0.05 * errors[4]


def test_the_row_wise_state_is_one_float_per_row_and_follows_its_rule():
    for optimizer, expected in [("rowwise_adagrad", 2 * 4.0), ("rowwise_rmsprop", 0.999 * 4.0 + 0.001 * 4.0)]:
        table = master_free_table(6, 8, 4, optimizer=optimizer, lr=0.01)
        store = table.low_bit_rows.table
        assert store.sq.shape == (6,)
        for _ in range(2):
            table(torch.tensor([2])).mul(2.0).sum().backward()  # every coordinate's gradient is 2: mean square 4
        assert store.sq[2].item() == pytest.approx(expected) and store.sq[[0, 1, 3, 4, 5]].abs().sum() == 0
    assert not hasattr(master_free_table(6, 8, 4).low_bit_rows.table, "sq")  # sgd holds none


def checkpoint_of(config):
    files = [f for f in os.listdir(config["checkpoint_dir"]) if f.endswith(".pth")]
    return os.path.join(config["checkpoint_dir"], sorted(files)[-1])


@pytest.mark.parametrize("emb, extra", [
    ("quant", {}),
    ("quant", {"emb_master_free_bits": 16}),
    ("uniform", {"emb_bits": 4, "emb_bits_policy": "frequency"}),
    ("uniform", {"emb_bits": 2}),
    ("freq", {"emb_bits": 4}),
    ("hash", {"emb_bits": 8}),
    ("qr", {"emb_bits": 4}),
])
def test_a_master_free_run_holds_far_less_while_training_and_reloads_to_the_same_metrics(tiny_config, device, emb,
                                                                                        extra):
    keys, _ = device
    free = {key: value for key, value in extra.items() if key.startswith("emb_master_free")}
    config = {**tiny_config, **keys, "emb": emb, "emb_budget": 0.25, "epochs": 2,
              **{key: value for key, value in extra.items() if key not in free}}
    masters = run_recbole_lightemb(model="BPR", config_dict=config)["compression"]
    result = run_recbole_lightemb(model="BPR", config_dict={**config, "emb_master_free": True, **free})
    report = result["compression"]
    assert report["stored_bytes"] == masters["stored_bytes"] and report["ratio"] <= 0.25
    training = report["training"]
    # Per stored row only its packed codes, its step size (with gradient and Adam's two moments) and one float of
    # row-wise state: at most 20 bytes more than it stores (no table here has more rows than entities).
    rows = sum(t["entities"] for t in report["tables"])
    learned = extra.get("emb_bits_policy", "fixed") == "fixed" and not free  # step sizes learned by RecBole's Adam
    if learned:
        assert training["grad_bytes"] == training["param_bytes"]
        assert training["optimizer_bytes"] == 2 * training["param_bytes"]
    else:  # finer trained codes than stored: step sizes kept by the rule, no gradient, no Adam state
        assert training["grad_bytes"] == training["optimizer_bytes"] == 0
    assert training["full_training_bytes"] == masters["training"]["full_training_bytes"]  # full with Adam either way
    if learned:
        assert report["stored_bytes"] < training["training_bytes"] <= report["stored_bytes"] + 20 * rows
    else:  # trained codes finer than some stored rows (16 bits for 4-bit rows; 8 bits for 8-4-2 per row): their
        # buffer outgrows the stored rows, by at most 16 / 4 = 8 / 2 = 4 times
        assert report["stored_bytes"] < training["buffer_bytes"]
        assert training["training_bytes"] <= 4 * report["stored_bytes"] + 20 * rows
    assert training["training_bytes"] < 0.5 * masters["training"]["training_bytes"]
    assert training["row_grad_bytes"] > 0  # measured by the hook: the training did update the codes
    packed = report["packed_file"]
    assert packed["array_bytes"] == report["stored_bytes"]
    assert packed["bytes"] <= report["stored_bytes"] + OVERHEAD_PER_ARRAY * packed["arrays"]
    loaded, model, _, _, _, test_data = load_data_and_model(checkpoint_of(tiny_config),
                                                             data_path=tiny_config["data_path"])
    trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(result["test_result"])


def test_a_master_free_run_is_seeded():
    table_a, table_b = (master_free_table(50, 8, 4, lr=0.01) for _ in range(2))
    table_b.load_state_dict(table_a.state_dict())
    for table in (table_a, table_b):
        table(torch.arange(50)).sum().backward()
    assert torch.equal(table_a.low_bit_rows.table.codes, table_b.low_bit_rows.table.codes)


@pytest.mark.parametrize("extra, match", [
    ({"emb": "uniform", "emb_bits": 32}, r"emb_master_free=True with emb_bits=32.*need emb_bits in 2, 4, 8"),
    ({"emb": "quant", "quant_bits": 16}, r"quant_bits=16.*need quant_bits in 2, 4, 8"),
    ({"emb": "uniform", "emb_bits": 8, "emb_bits_policy": "frequency"},
     r"emb_bits=8, emb_bits_policy='frequency'.*in 2 or 4 under emb_bits_policy=frequency"),
    ({"emb": "uniform", "emb_bits": 4, "emb_bits_policy": "frequency", "emb_master_free_bits": 4},
     r"emb_master_free_bits=4: below the rows stored with emb_bits=4, emb_bits_policy='frequency'"),
    ({"emb": "quant", "emb_master_free_optimizer": "adam"},
     r"emb_master_free_optimizer='adam': allowed rowwise_adagrad .*rowwise_rmsprop .*sgd \(state: none\)"),
    ({"emb": "quant", "emb_master_free_lr": 0}, "emb_master_free_lr=0: allowed a positive number, or None"),
    ({"emb": "full", "emb_budget": None}, "emb='full' trains no low-bit rows without masters here"),
    ({"emb": "ciess", "emb_bits": 4}, "emb_bits=4: emb=ciess stores low-bit rows in its grouped tables only"),
    ({"emb": "quant", "emb_master_free": "maybe"}, "emb_master_free='maybe'"),
    ({"emb": "quant", "emb_master_free": False, "emb_master_free_lr": 0.01},
     "emb_master_free_lr=0.01: used only with emb_master_free=True"),
    ({"emb": "quant", "emb_master_free_bits": 12}, r"emb_master_free_bits=12: allowed 2, 4, 8, 16"),
    ({"emb": "quant", "quant_bits": 8, "emb_master_free_bits": 4},
     r"emb_master_free_bits=4: below the rows stored with quant_bits=8.*allowed: the trained codes hold at least"),
    ({"emb": "quant", "emb_master_free": False, "emb_master_free_bits": 16},
     "emb_master_free_bits=16: used only with emb_master_free=True"),
])
def test_bad_master_free_settings_are_named_before_training(tiny_config, extra, match):
    config = {**tiny_config, "emb_budget": 0.25, "emb_master_free": True, **extra}
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict=config)
    assert not os.path.isdir(tiny_config["checkpoint_dir"]) or not os.listdir(tiny_config["checkpoint_dir"])


def test_masters_and_master_free_store_the_same_bytes_for_every_bit_width():
    for bits in (2, 4, 8):
        masters = apply_precision(UniformEmbedding(30, 64, 40), {"table": bits})
        free = apply_precision(UniformEmbedding(30, 64, 40), {"table": bits}, MasterFree("sgd", 0.1, 0))
        assert free.stored_bytes() == masters.stored_bytes() == 30 * (int(np.ceil(40 * bits / 8)) + 4)
