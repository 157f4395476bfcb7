"""A checkpoint is data, and so is everything it names: crafted values run no code, write nowhere, stay small.

Each crafted file is loaded in a child process (``_load_all``) that records what a load must never do: a
marker file created by code, a socket opened, memory beyond a bound. The files are built here, from a
genuine checkpoint of a one-epoch run on the tiny dataset.
"""

import copy
import io
import json
import os
import pickle
import random
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_lightemb import Config, run_recbole_lightemb
from recbole_lightemb.storage.checkpoint import load_checkpoint
from recbole_lightemb.storage.rebuild import BUILD_READS

PEAK_MIB = 1500
"""Peak resident memory of a child that imports RecBole and loads one tiny model (~600 MiB) plus slack:
any table of the 2 GB the crafted files ask for would pass it."""


class _Call:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _genuine(tiny_config, emb="full", **extra):
    """(checkpoint path, its torch.load-ed dict) of a one-epoch BPR run."""
    result = run_recbole_lightemb(model="BPR", config_dict={**tiny_config, "emb": emb, **extra})
    folder = Path(tiny_config["checkpoint_dir"])
    path = sorted(folder.glob("*.pth"))[-1]
    return path, torch.load(path, weights_only=True), result


def _with_config(state, path, **final):
    crafted = copy.deepcopy(state)
    crafted["config"]["final_config_dict"].update(final)
    torch.save(crafted, path)
    return str(path)


def _load_all(files, cwd, data_path, marker):
    """Load each of ``files`` with ``load_data_and_model`` in one child process; return its lines
    (``LOADED`` or ``REFUSED <error class>: <message>`` per file) and its peak memory in MiB."""
    script = textwrap.dedent(f"""
        import resource, socket, sys, torch
        torch.set_num_threads(1)
        def no_socket(*a, **k):
            print("SOCKET", flush=True); raise OSError("no sockets in a load")
        socket.socket.connect = socket.socket.connect_ex = socket.create_connection = no_socket
        from recbole_lightemb import load_data_and_model
        for file in {[str(f) for f in files]!r}:
            try:
                load_data_and_model(file, data_path={str(data_path)!r})
                print("LOADED", flush=True)
            except Exception as error:
                line = str(error)
                print("REFUSED", type(error).__name__ + ":", line.replace(chr(10), " | "), flush=True)
        print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr[-3000:]
    assert not any(line.startswith("SOCKET") for line in lines), lines
    assert not Path(marker).exists(), "code from a crafted file ran"
    peak = int(lines[-1].split()[1])
    assert peak < PEAK_MIB, f"a load peaked at {peak} MiB"
    return [line for line in lines if line.startswith(("LOADED", "REFUSED"))], peak


def test_a_model_that_reads_a_pickled_file_while_built_is_refused(tiny_config, tmp_path):
    """LDiffRec with n_cate > 1 unpickles <data_path>/item_emb.npy: the checkpoint and a dataset folder
    shipped with it would run code."""
    path, state, _ = _genuine(tiny_config)
    marker = tmp_path / "PWNED"
    dataset_folder = Path(tiny_config["data_path"]) / "tiny"
    (dataset_folder / "item_emb.npy").write_bytes(pickle.dumps(_Call(os.system, (f"touch {marker}",))))
    crafted = [_with_config(state, tmp_path / "ldiffrec.pth", model="LDiffRec", n_cate=2, data_path="."),
               _with_config(state, tmp_path / "neumf.pth", model="NeuMF", use_pretrain=True)]
    lines, _ = _load_all(crafted, tmp_path, tiny_config["data_path"], marker)
    assert "LDiffRec would read a file while it is built" in lines[0]
    assert "NeuMF would read a file" in lines[1]


@pytest.mark.parametrize("field, value", [("dataset", "../escape/tiny"), ("dataset", "/proc/self/cwd/tiny"),
                                          ("model", "BPR/../../escape"), ("benchmark_filename", ["../x"])])
def test_names_joined_into_paths_are_refused_before_any_file_is_touched(tiny_config, tmp_path, field, value):
    """``dataset``/``model`` are joined into the paths RecBole unpickles saved datasets from and logs to."""
    path, state, _ = _genuine(tiny_config)
    marker = tmp_path / "PWNED"
    escape = tmp_path / "escape"
    escape.mkdir()
    for name in ("tiny-Dataset.pth", "tiny-for-BPR-dataloader.pth"):  # what RecBole would unpickle
        (escape / name).write_bytes(pickle.dumps(_Call(os.system, (f"touch {marker}",))))
    before = sorted(p.name for p in escape.iterdir())
    lines, _ = _load_all([_with_config(state, tmp_path / "names.pth", **{field: value})], tmp_path,
                         tiny_config["data_path"], marker)
    assert lines[0].startswith("REFUSED CheckpointError") and field in lines[0] and repr(value) in lines[0]
    assert sorted(p.name for p in escape.iterdir()) == before  # no log, no folder written there


def test_where_to_run_comes_from_the_caller_not_the_file(tiny_config, tmp_path):
    """Paths, workers and devices a file names are ignored: the load reads the caller's data, writes its
    log under the caller's folder and starts no worker."""
    path, state, result = _genuine(tiny_config)
    outside = tmp_path / "outside"
    outside.mkdir()
    crafted = _with_config(state, tmp_path / "where.pth", data_path=str(outside), checkpoint_dir=str(outside),
                           worker=64, log_wandb=True, result_file=str(outside / "r.json"), nproc=8)
    from recbole_lightemb import load_data_and_model

    config, model, *_ = load_data_and_model(crafted, data_path=tiny_config["data_path"])
    assert config["worker"] == 0 and not config["log_wandb"] and config["result_file"] is None
    assert config["data_path"] == os.path.join(tiny_config["data_path"], "tiny")
    assert list(outside.iterdir()) == []


def _bzip2_plan(path, declared, body):
    """A ``.plan.npz`` whose member is a bzip2-compressed .npy header declaring ``declared`` values."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (declared,)})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("__meta__.npy", _npy(np.array(json.dumps({"method": "uniform", "widths": {}}))))
        archive.writestr("user_widths.npy", b"\x93NUMPY" + header.getvalue()[6:] + body)
    return path


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_sizes_are_checked_before_anything_is_allocated(tiny_config, tmp_path):
    """Crafted sizes — a plan's widths, a bzip2 bomb in a plan, a huge embedding_size, a DEFLATE bomb in the
    checkpoint — are refused by what they declare, and the child's memory stays far below what they ask."""
    path, state, _ = _genuine(tiny_config, emb="uniform", emb_budget=0.25)
    plan = Path(str(path)[:-4] + ".plan.npz")
    marker = tmp_path / "PWNED"
    files = []
    wide = tmp_path / "wide.pth"  # the plan beside it asks for 2 GB of rows
    _with_config(state, wide)
    meta = json.loads(str(np.load(plan)["__meta__"]))
    meta["widths"] = {name: 10_000_000 for name in meta["widths"]}
    with open(str(wide)[:-4] + ".plan.npz", "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)))
    files.append(wide)
    bomb = tmp_path / "bomb.pth"
    _with_config(state, bomb)
    _bzip2_plan(str(bomb)[:-4] + ".plan.npz", declared=250_000_000, body=b"\0" * 2_000_000)
    files.append(bomb)
    big = tmp_path / "big.pth"
    _with_config(state, big, embedding_size=10_000_000)
    os.link(plan, str(big)[:-4] + ".plan.npz")
    files.append(big)
    deflated = tmp_path / "deflate.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    os.link(plan, str(deflated)[:-4] + ".plan.npz")
    files.append(deflated)
    lines, peak = _load_all(files, tmp_path, tiny_config["data_path"], marker)
    assert "width must be in 1..64, got 10000000" in lines[0]  # the table refuses it before it allocates
    assert "declares 250000000 values" in lines[1]
    assert "builds a model of" in lines[2] and "max_model_bytes" in lines[2]
    assert "is compressed" in lines[3]
    assert all(line.startswith("REFUSED") for line in lines)


def test_other_parameter_restores_only_the_models_own_tensors(tiny_config, tmp_path):
    path, state, _ = _genuine(tiny_config)
    from recbole_lightemb import load_data_and_model
    from recbole_lightemb.storage.checkpoint import CheckpointError

    for other in ({"_forward_pre_hooks": {}}, {"forward": torch.zeros(1)}, {"restore_user_e": "x"}):
        crafted = copy.deepcopy(state)
        crafted["other_parameter"] = other
        torch.save(crafted, tmp_path / "other.pth")
        with pytest.raises(CheckpointError, match="other_parameter"):
            load_data_and_model(str(tmp_path / "other.pth"), data_path=tiny_config["data_path"])


class _RebuiltMember:
    """Pickles as RecBole's ``FeatureType('token')`` followed by new state for that member."""

    def __reduce__(self):
        from recbole.utils import FeatureType

        return FeatureType, ("token",), {"_value_": "float", "_name_": "FLOAT"}


def test_a_trusted_legacy_checkpoint_cannot_change_an_enum(tiny_config, tmp_path):
    from recbole.utils import FeatureType

    path, state, _ = _genuine(tiny_config)
    config = Config(model="BPR", config_dict={**tiny_config, "emb": "full"})
    legacy = copy.deepcopy(state)
    legacy["config"] = copy.copy(config)
    legacy["config"].model_class = None
    legacy["config"].final_config_dict = {**config.final_config_dict, "evil": _RebuiltMember()}
    torch.save(legacy, tmp_path / "legacy.pth", pickle_protocol=2)
    loaded = load_checkpoint(tmp_path / "legacy.pth", trust=True)
    assert FeatureType.TOKEN.value == "token" and FeatureType.TOKEN.name == "TOKEN"
    assert loaded["config"]["evil"] is FeatureType.TOKEN


def test_every_model_that_reads_files_while_built_is_listed():
    """Grep RecBole's model zoo again: a model file that loads, unpickles, opens or evaluates must be listed."""
    import recbole.model

    root = Path(recbole.model.__file__).parent
    readers = set()
    for file in root.rglob("*.py"):
        text = file.read_text()
        if any(call in text for call in ("np.load(", "torch.load(", "eval(f", "pickle.load", "open(")):
            readers |= {line.split("class ")[1].split("(")[0] for line in text.splitlines()
                        if line.startswith("class ") and "Recommender" in line}
    assert readers and readers <= set(BUILD_READS), sorted(readers - set(BUILD_READS))


MUTATIONS = [10**12, -1, 0, float("nan"), "../../outside", "/tmp", "__import__('os').system('touch {marker}')",
             [[[[[[[[[[1]]]]]]]]]], {"a": {"b": 1}}, None, True, "x" * 5000, list(range(200_000))]


def test_fuzzed_checkpoints_and_plans_load_or_fail_with_one_named_line(tiny_config, tmp_path):
    """Random mutations of a genuine checkpoint's config and plan (types, huge numbers, paths, code strings,
    unknown keys): each either loads or is refused in one line; no code runs, no socket, bounded memory."""
    path, state, _ = _genuine(tiny_config, emb="baco", emb_budget=0.25)
    plan = str(path)[:-4] + ".plan.npz"
    marker = tmp_path / "PWNED"
    rng = random.Random(2020)
    keys = sorted(state["config"]["final_config_dict"])
    files = []
    for i in range(24):
        value = rng.choice(MUTATIONS)
        value = value.format(marker=marker) if isinstance(value, str) else value
        crafted = tmp_path / f"fuzz{i}.pth"
        key = rng.choice(keys + ["unknown_key", "emb_unknown"])
        _with_config(state, crafted, **{key: value})
        with np.load(plan) as saved:
            arrays = {k: saved[k] for k in saved.files}
        meta = json.loads(str(arrays["__meta__"]))
        if i % 2:
            target = rng.choice(sorted(meta))
            meta[target] = value if not isinstance(value, float) else 1e30
        else:
            target = rng.choice([k for k in arrays if k != "__meta__"])
            arrays[target] = np.full(rng.choice([1, 7, 10**6]), rng.choice([-5, 0, 10**9]), dtype=np.int64)
        arrays["__meta__"] = np.array(json.dumps(meta))
        with open(str(crafted)[:-4] + ".plan.npz", "wb") as f:
            np.savez_compressed(f, **arrays)
        files.append(crafted)
    lines, _ = _load_all(files, tmp_path, tiny_config["data_path"], marker)
    assert len(lines) == len(files)
    refused = [line for line in lines if line.startswith("REFUSED")]
    assert refused and all(" | " not in line for line in refused), refused  # one line each
    assert all(line.split()[1].rstrip(":") in ("CheckpointError", "ValueError", "FileNotFoundError")
               for line in refused), refused


def test_a_reused_plan_is_sized_before_its_tables_are_built(tiny_config, tmp_path):
    """``emb_plan`` on a run: a plan whose facts ask for a billion codebook rows is refused from its sizes
    (tables built on ``meta`` first), in a child whose memory stays far below the 256 GB it asks for."""
    path, state, result = _genuine(tiny_config, emb="baco", emb_budget=0.25)
    with np.load(result["plan"]["file"]) as saved:
        arrays = {k: saved[k] for k in saved.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["n_user_codes"] = 10**9
    arrays["__meta__"] = np.array(json.dumps(meta))
    crafted = tmp_path / "huge.plan.npz"
    with open(crafted, "wb") as f:
        np.savez(f, **arrays)
    config = {**tiny_config, "emb": "baco", "emb_budget": 0.25, "emb_plan": str(crafted)}
    script = textwrap.dedent(f"""
        import resource, torch
        torch.set_num_threads(1)
        from recbole_lightemb import run_recbole_lightemb
        try:
            run_recbole_lightemb(model="BPR", config_dict={config!r})
            print("RAN")
        except ValueError as error:
            print("REFUSED", str(error).splitlines()[0])
        print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr[-3000:]
    assert lines[0].startswith("REFUSED") and "full tables' bytes" in lines[0], lines
    assert int(lines[-1].split()[1]) < PEAK_MIB


def test_the_size_ceiling_skips_only_the_byte_counts_a_plan_records():
    from recbole_lightemb.storage.checkpoint import CheckpointError
    from recbole_lightemb.storage.rebuild import INT_CEILING, _check_int_ceiling

    huge = INT_CEILING * 1000
    recorded = {"stored_bytes": huge, "search_training_memory": {"training_bytes": huge}, "history": [{"bytes": huge}]}
    _check_int_ceiling(recorded, "plan", recorded=True)  # what the run stored and held: nothing is built from it
    for sizes, where in (({"ref_dim": huge}, True), ({"n_item_codes": [huge]}, True), ({"table_bytes": huge}, False)):
        with pytest.raises(CheckpointError, match=f"a size of {huge}"):
            _check_int_ceiling(sizes, "checkpoint", recorded=where)  # a size, or any key of a config
