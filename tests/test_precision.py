"""Precision as an axis (emb_bits, emb_bits_policy): low-bit rows for uniform, freq, hash and qr, counted as
written, written as counted, and read back to the same metrics."""

import os

import numpy as np
import pytest
import torch
from recbole.utils import get_trainer

from recbole_lightemb import Plan, load_data_and_model, run_recbole_lightemb
from recbole_lightemb.modules import UniformEmbedding
from recbole_lightemb.modules.packed_file import OVERHEAD_PER_ARRAY, packed_path, read_packed, write_packed
from recbole_lightemb.modules.precision import (apply_precision, has_low_bit_rows, ladder, most_rows, row_bits,
                                                table_bytes)


def checkpoint_of(config):
    files = [f for f in os.listdir(config["checkpoint_dir"]) if f.endswith(".pth")]
    return os.path.join(config["checkpoint_dir"], sorted(files)[-1])


def test_the_frequency_policy_gives_the_head_more_bits_and_the_tail_fewer():
    frequency = np.arange(100)[::-1].astype(float)  # row 0 the most read
    bits = row_bits(frequency, 4, "frequency")
    assert ladder(4) == (8, 4, 2) and ladder(2) == (4, 2, 2) and ladder(32) == (32, 32, 8)
    assert (bits[:20] == 8).all() and (bits[20:50] == 4).all() and (bits[50:] == 2).all()
    assert (row_bits(frequency, 4, "fixed") == 4).all()


def test_per_row_bits_round_each_row_to_its_own_grid_and_pass_gradients_through():
    table = UniformEmbedding(6, 16, 16)
    bits = np.array([2, 4, 8, 32, 4, 2])
    apply_precision(table, {"table": bits})
    master = table._parameters["table"]
    rows = table.full_table()
    for row, b in enumerate(bits):
        if b == 32:
            assert torch.equal(rows[row], master[row])
            continue
        levels = 2 ** (b - 1) - 1
        steps = rows[row].detach() / (master[row].detach().abs().max() / levels)
        assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= levels + 1e-4
    rows.sum().backward()
    assert torch.equal(master.grad, torch.ones_like(master))
    assert list(table.state_dict()) == ["table"]  # the parameter keeps its name: checkpoints are the float table's


def test_32_bits_leave_a_table_exactly_as_it_was():
    table = UniformEmbedding(6, 16, 8)
    assert apply_precision(table, {"table": 32}) is table and type(table) is UniformEmbedding
    assert not has_low_bit_rows(table) and table.stored_bytes() == 6 * 8 * 4


def test_row_counts_and_widths_fit_the_bytes_they_are_given():
    for bits, policy in [(2, "fixed"), (4, "frequency"), (8, "frequency"), (32, "fixed")]:
        rows = most_rows(10_000, 64, bits, policy)
        assert table_bytes(rows, 64, bits, policy) <= 10_000 < table_bytes(rows + 1, 64, bits, policy)


@pytest.mark.parametrize("emb, budget, extra", [
    ("uniform", 0.25, {"emb_bits": 4}),
    ("uniform", 0.1, {"emb_bits": 4, "emb_bits_policy": "frequency"}),
    ("freq", 0.5, {"emb_bits": 4}),
    ("freq", 0.5, {"emb_bits": 8, "emb_bits_policy": "frequency", "freq_projection": True}),
    ("hash", 0.25, {"emb_bits": 2, "emb_bits_policy": "frequency"}),
    ("qr", 0.5, {"emb_bits": 4, "emb_bits_policy": "frequency"}),
])
def test_a_low_bit_run_writes_what_it_counts_and_reloads_to_the_same_metrics(tiny_config, emb, budget, extra):
    config = {**tiny_config, "emb": emb, "emb_budget": budget, **extra}
    result = run_recbole_lightemb(model="BPR", config_dict=config)
    report = result["compression"]
    assert report["ratio"] <= budget and report["training_ratio"] == report["training"]["ratio"]
    packed = report["packed_file"]
    assert packed["file"] == packed_path(checkpoint_of(tiny_config)) and os.path.isfile(packed["file"])
    assert packed["array_bytes"] == report["stored_bytes"]  # what is counted is what is written
    assert report["stored_bytes"] < packed["bytes"] <= report["stored_bytes"] + OVERHEAD_PER_ARRAY * packed["arrays"]
    checkpoint = torch.load(checkpoint_of(tiny_config), weights_only=True)  # the float32 masters: scrambled, so
    checkpoint["state_dict"] = {k: torch.randn_like(v) if v.is_floating_point() else v  # the rows can only come
                                for k, v in checkpoint["state_dict"].items()}  # from the packed file
    torch.save(checkpoint, checkpoint_of(tiny_config))
    loaded, model, _, _, _, test_data = load_data_and_model(checkpoint_of(tiny_config),
                                                             data_path=tiny_config["data_path"])
    trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(result["test_result"])


def test_scall_rows_in_low_bits_are_wider_within_the_same_bytes_and_reload_to_the_same_metrics(tiny_config):
    """Without a stream SCALL gives every training entity the same width; at 4 bits the bytes of 0.1 of a
    64-wide float row (6.4 floats) keep 41 values beside the row's scale and a byte of slack."""
    config = {**tiny_config, "emb": "scall", "emb_budget": 0.1}
    runs = {bits: run_recbole_lightemb(model="BPR", config_dict={**config, "emb_bits": bits,
                                                                 "checkpoint_dir": f"{tiny_config['checkpoint_dir']}{bits}"})
            for bits in (32, 4)}
    widths = {bits: Plan.load(run["plan"]["file"], method="scall")["user_widths"] for bits, run in runs.items()}
    assert set(widths[32][widths[32] > 0].tolist()) == {6} and set(widths[4][widths[4] > 0].tolist()) == {41}
    assert np.array_equal(widths[4] > 0, widths[32] > 0) and runs[4]["plan"]["bits"] == 4
    report = runs[4]["compression"]
    plan = Plan.load(runs[4]["plan"]["file"], method="scall")
    stored_rows = int((plan["user_widths"] > 0).sum() + (plan["item_widths"] > 0).sum())  # a width byte each
    assert report["stored_bytes"] - stored_rows <= 4 * runs[4]["plan"]["budget_floats"]  # the floats' bytes
    unstored = int((plan["user_widths"] == 0).sum() + (plan["item_widths"] == 0).sum())  # a width byte each
    assert report["packed_file"]["array_bytes"] == report["stored_bytes"] + unstored
    checkpoint_file = report["packed_file"]["file"].replace(".packed.npz", ".pth")
    checkpoint = torch.load(checkpoint_file, weights_only=True)  # scrambled masters: rows only from the packed file
    checkpoint["state_dict"] = {k: torch.randn_like(v) if v.is_floating_point() else v
                                for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, checkpoint_file)
    loaded, model, _, _, _, test_data = load_data_and_model(checkpoint_file, data_path=tiny_config["data_path"])
    trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(runs[4]["test_result"])


def test_scall_rows_at_bits_by_frequency_hold_the_bytes_and_reload_to_the_same_metrics(tiny_config):
    """Mixed precision on SCALL: the most frequent fifth of each side's training entities at 8 bits, the least
    frequent half at 2; the one width is the widest those bits' bytes hold, and the file holds what is counted."""
    config = {**tiny_config, "emb": "scall", "emb_budget": 0.1, "emb_bits": 4, "emb_bits_policy": "frequency"}
    result = run_recbole_lightemb(model="BPR", config_dict=config)
    plan = Plan.load(result["plan"]["file"], method="scall")
    bits_sum, n_seen, classes = 0, 0, 0
    for role in ("user", "item"):
        widths, bits = plan[f"{role}_widths"], plan[f"{role}_bits"]
        seen = widths > 0
        assert len(set(widths[seen].tolist())) == 1 and sorted(set(bits[seen].tolist())) == [2, 4, 8]
        head, tail = (bits[seen] == 8).sum(), (bits[seen] == 2).sum()
        assert head == round(0.2 * seen.sum()) and tail == seen.sum() - head - round(0.3 * seen.sum())
        bits_sum, n_seen = bits_sum + int(bits[seen].sum()), n_seen + int(seen.sum())
        classes += -(-len(widths) // 4) + 63  # 2 bits a row, in up to 64 width groups
    width = int(plan["user_widths"].max())  # the widest whose bits fit the bytes left beside scales and classes
    spare_bits = 8 * (4 * result["plan"]["budget_floats"] - 5 * n_seen - classes)
    assert width * bits_sum <= spare_bits < (width + 1) * bits_sum
    report = result["compression"]
    assert result["plan"]["bits_policy"] == "frequency" and report["ratio"] <= 0.1
    stored_rows = int((plan["user_widths"] > 0).sum() + (plan["item_widths"] > 0).sum())  # a width byte each
    assert report["stored_bytes"] - stored_rows <= 4 * result["plan"]["budget_floats"]
    unstored = int((plan["user_widths"] == 0).sum() + (plan["item_widths"] == 0).sum())
    assert report["packed_file"]["array_bytes"] == report["stored_bytes"] + unstored
    checkpoint = torch.load(checkpoint_of(tiny_config), weights_only=True)  # scrambled masters
    checkpoint["state_dict"] = {k: torch.randn_like(v) if v.is_floating_point() else v
                                for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, checkpoint_of(tiny_config))
    loaded, model, _, _, _, test_data = load_data_and_model(checkpoint_of(tiny_config), data_path=tiny_config["data_path"])
    trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(result["test_result"])


def test_scall_low_bit_rows_train_without_masters_and_reload_to_the_same_metrics(tiny_config):
    config = {**tiny_config, "emb": "scall", "emb_budget": 0.1, "emb_bits": 4}
    masters = run_recbole_lightemb(model="BPR", config_dict={**config, "checkpoint_dir": "masters"})
    free = run_recbole_lightemb(model="BPR", config_dict={**config, "emb_master_free": True})
    assert masters["compression"]["training"]["param_bytes"] == 4 * masters["compression"]["stored_floats"]  # packed
    assert free["compression"]["training_ratio"] < 0.5 * masters["compression"]["training_ratio"]
    assert free["compression"]["training"]["row_grad_bytes"] > 0  # the codes trained in place
    report = free["compression"]
    assert report["packed_file"]["array_bytes"] == report["stored_bytes"]  # grouped rows: every row indexed
    loaded, model, _, _, _, test_data = load_data_and_model(checkpoint_of(tiny_config), data_path=tiny_config["data_path"])
    trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(free["test_result"])


def test_the_bytes_saved_buy_width_or_rows(tiny_config):
    """At 0.1 of a 64-wide float row (25.6 bytes) 4-bit values fill 42 coordinates beside their scale, against 6
    floats; a 4-bit hash row takes 36 bytes instead of 256, so the same bytes hold about 7 times the rows."""
    base = {**tiny_config, "epochs": 1}
    wide = run_recbole_lightemb(model="BPR", config_dict={**base, "emb": "uniform", "emb_budget": 0.1, "emb_bits": 4})
    assert wide["plan"]["widths"] == {"user_embedding": 42, "item_embedding": 42}
    runs = {bits: run_recbole_lightemb(model="BPR", config_dict={**base, "emb": "hash", "emb_budget": 0.25,
                                                                 "emb_bits": bits}) for bits in (32, 4)}
    users = runs[32]["compression"]["tables"][0]["entities"]
    assert runs[32]["plan"]["user"]["n_codes"] == int(0.25 * users)
    assert runs[4]["plan"]["user"]["n_codes"] == int(0.25 * users * 64 * 4 // (64 * 4 // 8 + 4))
    assert all(r["compression"]["ratio"] <= 0.25 for r in runs.values())


def test_quant_is_uniform_with_its_bits(tiny_config):
    quant = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "quant", "emb_budget": 0.1})
    uniform = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "uniform", "emb_budget": 0.1,
                                                             "emb_bits": 4})
    assert dict(quant["test_result"]) == dict(uniform["test_result"])
    assert quant["compression"]["stored_bytes"] == uniform["compression"]["stored_bytes"]


@pytest.mark.parametrize("emb, budget", [("uniform", 0.25), ("freq", 0.5), ("hash", 0.25), ("qr", 0.5)])
def test_32_bits_are_the_float_methods_and_write_no_packed_file(tiny_config, emb, budget):
    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": emb, "emb_budget": budget,
                                                            "emb_bits": 32, "epochs": 1})
    assert "bits" not in result["plan"] and result["compression"]["packed_file"] is None
    assert result["compression"]["training"]["param_bytes"] == result["compression"]["stored_floats"] * 4


@pytest.mark.parametrize("extra, match", [
    ({"emb": "uniform", "emb_bits": 3}, "emb_bits=3: allowed 2, 4, 8, 32"),
    ({"emb": "hash", "emb_bits_policy": "head"}, "emb_bits_policy='head': allowed fixed, frequency"),
    ({"emb": "uniform", "emb_bits": 4, "emb_budget": 0.01}, r"allowed: emb_budget >= 0.01953"),
    ({"emb": "hash", "emb_bits": 8, "emb_budget": 0.001}, "leaves less than one hash row .* allowed: emb_budget >= "),
    ({"emb": "full", "emb_bits": 4, "emb_budget": None}, "emb='full' stores no low-bit rows"),
    ({"emb": "baco", "emb_bits": 4, "emb_bits_policy": "frequency", "baco_budget_rule": "authors"},
     "emb_bits_policy=frequency only with baco_budget_rule=bytes"),
    ({"emb": "quant", "emb_bits": 4}, "emb=quant takes its bits from quant_bits"),
])
def test_bad_precision_settings_are_named_before_training(tiny_config, extra, match):
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb_budget": 0.25, **extra})


def test_the_packed_file_is_data_checked_against_what_the_model_stores(tmp_path):
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.user_embedding = apply_precision(UniformEmbedding(20, 16, 12), {"table": 4})

    model, path = Model(), tmp_path / "run.packed.npz"
    write_packed(model, path)
    stored = model.user_embedding.full_table().detach().clone()
    with torch.no_grad():
        model.user_embedding._parameters["table"].normal_()
    assert torch.equal(read_packed(model, path).user_embedding.full_table(), stored)
    with np.load(path) as data:
        arrays = dict(data)
    for name, bad in [("pickled", {**arrays, "user_embedding/table.scale4": np.array([object()] * 20)}),
                      ("shape", {**arrays, "user_embedding/table.scale4": np.zeros(19, np.float32)}),
                      ("extra", {**arrays, "user_embedding/evil": np.zeros(1)})]:
        crafted = tmp_path / f"{name}.packed.npz"
        np.savez(crafted, **bad)
        with pytest.raises(ValueError, match=f"packed tables '{crafted}'"):
            read_packed(model, crafted)


@pytest.mark.parametrize("emb, bits_policy", [("hash", {"emb_bits_policy": "frequency"}), ("scall", {})])
def test_a_reused_plan_keeps_its_precision_and_refuses_another(tiny_config, emb, bits_policy):
    config = {**tiny_config, "emb": emb, "emb_budget": 0.25}
    first = run_recbole_lightemb(model="BPR", config_dict={**config, "emb_bits": 4, **bits_policy})
    again = run_recbole_lightemb(model="BPR", config_dict={**config, "emb_plan": first["plan"]["file"]})
    assert again["compression"]["stored_bytes"] == first["compression"]["stored_bytes"]  # 4 bits, as planned
    with pytest.raises(ValueError, match="emb_bits=8: the reused plan was made with emb_bits=4"):
        run_recbole_lightemb(model="BPR", config_dict={**config, "emb_bits": 8, "emb_plan": first["plan"]["file"]})


def test_baco_stores_codebook_and_private_rows_in_low_bits_and_reloads_to_the_same_metrics(tiny_config):
    base = {**tiny_config, "emb": "baco", "emb_budget": 0.5}
    floats = run_recbole_lightemb(model="BPR", config_dict=base)
    config = {**base, "emb_bits": 4, "baco_residual": 2, "baco_residual_bits": 4}
    low = run_recbole_lightemb(model="BPR", config_dict=config)
    assert low["plan"]["max_rows"]["bytes"] > 4 * floats["plan"]["max_rows"]["bytes"]  # 36 bytes a row, not 256
    report = low["compression"]
    assert report["ratio"] <= 0.5 and report["stored_bytes"] == low["plan"]["stored_bytes"]
    packed = report["packed_file"]  # codes packed in the smallest integer type, counted as int32
    assert os.path.isfile(packed["file"]) and packed["array_bytes"] <= report["stored_bytes"]
    loaded, model, _, _, _, test_data = load_data_and_model(checkpoint_of(tiny_config),
                                                             data_path=tiny_config["data_path"])
    trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(low["test_result"])
    for finer in ({}, {"emb_master_free_bits": 16}):  # the stored codes themselves, and 16-bit codes read on them
        free = run_recbole_lightemb(model="BPR", config_dict={**config, "emb_master_free": True, **finer})
        assert free["compression"]["stored_bytes"] == report["stored_bytes"]
        assert free["compression"]["training"]["training_bytes"] < 0.5 * report["training"]["training_bytes"]
    loaded, model, _, _, _, test_data = load_data_and_model(checkpoint_of(tiny_config),
                                                             data_path=tiny_config["data_path"])
    trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(free["test_result"])


def test_baco_low_bit_rows_need_the_bytes_rule(tiny_config):
    config = {**tiny_config, "emb": "baco", "emb_budget": 0.5, "emb_bits": 4, "baco_budget_rule": "authors"}
    with pytest.raises(ValueError, match="emb_bits below 32 or emb_bits_policy=frequency only with baco_budget_rule"):
        run_recbole_lightemb(model="BPR", config_dict=config)


def test_ciess_groups_store_low_bit_rows_wider_within_the_same_budget_and_reload(tiny_config):
    """emb_bits with ciess_projection: the search and the final groups count 4-bit rows, so the same budget buys
    wider groups (filled to the budget here; the paper mode keeps a step's widths as found, and low-bit rows widen
    which steps are eligible); per-row bits by frequency too; what is counted is written, and the packed rows
    reload to the same metrics."""
    search = {"emb": "ciess", "ciess_pretrain_epochs": 1, "ciess_episodes": 1, "ciess_steps": 2, "ciess_step_batches": 2,
              "ciess_updates_per_step": 2, "ciess_batch_size": 64, "ciess_hidden": 16, "epochs": 1,
              "emb_budget": 0.5, "ciess_projection": True, "ciess_fill_budget": True}

    def reloads_as_trained(result):
        loaded, model, _, train_data, _, test_data = load_data_and_model(checkpoint_of(tiny_config),
                                                                          data_path=tiny_config["data_path"])
        trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
        runs_as_trained[result["plan"]["file"]] = train_data._dataset
        return has_low_bit_rows(model) and dict(trainer.evaluate(test_data, load_best_model=False)) == \
            dict(result["test_result"])

    runs_as_trained = {}

    runs = {}
    for name, extra in (("32", {"emb_bits": 32}), ("4", {"emb_bits": 4}), ("4, master-free", {"emb_bits": 4,
                        "emb_master_free": True}), ("8-4-2", {"emb_bits": 4, "emb_bits_policy": "frequency"})):
        runs[name] = result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, **search, **extra})
        report = result["compression"]
        assert report["stored_bytes"] == result["plan"]["stored_bytes"] <= 0.5 * report["full_bytes"]
        if name != "32":
            assert report["packed_file"]["array_bytes"] == report["stored_bytes"]  # counted is written
            assert reloads_as_trained(result)
    width = {name: np.mean([side["median"] for side in r["plan"]["final_widths"].values()]) for name, r in runs.items()}
    assert width["4"] > 2 * width["32"]  # the bytes 4-bit rows save buy width
    free, masters = runs["4, master-free"]["compression"], runs["4"]["compression"]  # the same search and groups,
    assert free["stored_bytes"] == masters["stored_bytes"]  # trained as stored: no float32 masters
    assert free["training"]["training_bytes"] < 0.5 * masters["training"]["training_bytes"]
    bits = Plan.load(runs["8-4-2"]["plan"]["file"], method="ciess")["item_bits"]
    dataset = runs_as_trained[runs["8-4-2"]["plan"]["file"]]
    counts = np.bincount(dataset.inter_feat[dataset.iid_field].numpy(), minlength=len(bits))
    assert counts[bits == 8].min() >= counts[bits == 4].max() >= counts[bits == 4].min() >= counts[bits == 2].max()


@pytest.mark.parametrize("extra, match", [
    ({}, "emb_bits=4: emb=ciess stores low-bit rows in its grouped tables only"),
    ({"ciess_projection": True, "emb_bits": 32, "emb_master_free": True}, "rows trained without masters need"),
])
def test_ciess_low_bit_rows_outside_their_form_are_refused_before_training(tiny_config, extra, match):
    with pytest.raises(ValueError, match=match):
        run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": "ciess", "emb_budget": 0.1, "emb_bits": 4,
                                                       **extra})


def test_baco_codebook_rows_take_bits_by_the_interactions_that_read_them(tiny_config):
    """emb_bits_policy: frequency on BACO: each side's codebook rows ranked by the training interactions of the
    entities reading them, 8 / 4 / 2 bits for head / torso / tail, within the byte budget, and reloaded as trained."""
    from recbole_lightemb.modules.precision import class_counts

    config = {**tiny_config, "emb": "baco", "emb_budget": 0.5, "emb_bits": 4, "emb_bits_policy": "frequency"}
    result = run_recbole_lightemb(model="BPR", config_dict=config)
    report, plan = result["compression"], Plan.load(result["plan"]["file"], method="baco")
    assert report["ratio"] <= 0.5 and report["stored_bytes"] == plan.meta["stored_bytes"]
    for role in ("user", "item"):
        bits, codes = plan[f"{role}_bits"], plan[f"{role}_codes"]
        assert len(bits) == plan.meta[f"n_{role}_codes"]
        assert sorted(np.bincount(bits, minlength=9)[[8, 4, 2]]) == sorted(class_counts(len(bits)))
        reads = np.bincount(codes[codes >= 0], minlength=len(bits))
        assert reads[bits == 8].mean() >= reads[bits == 2].mean()  # the head rows are read by more entities
    loaded, model, _, _, _, test_data = load_data_and_model(checkpoint_of(tiny_config),
                                                             data_path=tiny_config["data_path"])
    trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(result["test_result"])
    two_per_side = run_recbole_lightemb(model="NeuMF", config_dict=config)  # MF and MLP tables of two widths a side
    assert two_per_side["compression"]["ratio"] <= 0.5 and two_per_side["plan"]["within_bytes"]
    assert two_per_side["compression"]["stored_bytes"] == two_per_side["plan"]["stored_bytes"]
    free = run_recbole_lightemb(model="BPR", config_dict={**config, "emb_master_free": True})  # rows of 8/4/2 bits
    assert free["compression"]["stored_bytes"] == report["stored_bytes"]  # trained as stored, no float32 masters
    assert free["compression"]["training"]["training_bytes"] < 0.5 * report["training"]["training_bytes"]


def test_ciess_costs_at_per_row_bits_are_what_its_groups_store_and_fitting_holds_them():
    from recbole_lightemb.ciess.widths import fit_to_budget, mixed_plan_bytes, plan_bytes, to_mixed
    from recbole_lightemb.modules.mixed import MixedDimEmbedding

    rng = np.random.default_rng(0)
    n, d = 50, 16
    bits, widths, dims = {"item": rng.choice([2, 4, 8], n)}, {"item": rng.integers(1, d + 1, n)}, {"item": [d]}
    grouped = to_mixed(widths, dims, d, 10 ** 9, bits=bits)["item"]
    table = MixedDimEmbedding(n, d, grouped)
    apply_precision(table, {f"values.{g}": bits["item"][table.group_members(grouped, g)]
                            for g in range(len(table.group_widths))})
    assert table.stored_bytes() == mixed_plan_bytes({"item": grouped}, dims, d, bits)
    budget = 3 * plan_bytes(widths, dims, d, bits) // 4
    fitted = fit_to_budget(widths, dims, d, budget, bits=bits)
    assert plan_bytes(fitted, dims, d, bits) <= budget < plan_bytes(widths, dims, d, bits)
    assert plan_bytes(widths, dims, d, bits) < plan_bytes(widths, dims, d)  # low-bit rows cost less than floats
