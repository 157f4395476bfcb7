"""The precision axis as the methods see it: ``emb_bits`` and ``emb_bits_policy`` checked, planned and applied.

A method that stores rows joins in four steps: set ``precision = True`` on its class (other methods refuse
``emb_bits``), check the keys in ``check_config`` (:func:`precision_of`), spend the bytes low-bit rows save
on width or rows in ``plan`` (costing rows with :mod:`recbole_lightemb.modules.precision`; per-row bits
from :func:`training_counts` under the ``frequency`` policy), and call
:func:`~recbole_lightemb.modules.precision.apply_precision` on the built table's row parameters in ``build``.
With ``emb_bits: 32`` and the ``fixed`` policy none of this changes a thing: the plan and table are today's.
"""

import zlib

import numpy as np

from recbole_lightemb.modules.master_free import BITS as MASTER_FREE_BITS
from recbole_lightemb.modules.master_free import OPTIMIZERS, TRAIN_BITS, MasterFree
from recbole_lightemb.modules.precision import FLOAT_BITS, apply_precision, check_precision, ladder

DEFAULT = (FLOAT_BITS, "fixed")
WIDTH_ROWS = ("uniform", "scall", "stream-widths")
"""The methods a stream stores low-bit rows for, and ``stream-widths``, the tables their stream planners build;
``WIDTH_ROWS[1:]`` also at bits by frequency (``uniform`` on a stream at one ``emb_bits`` for all rows)."""


def precision_of(config):
    """``(emb_bits, emb_bits_policy)``, checked; a one-line error naming the allowed values."""
    return check_precision(config["emb_bits"], config["emb_bits_policy"])


def refuse_unsupported(method, config):
    """``emb_bits`` / ``emb_bits_policy`` other than the default, for a method that does not store low-bit rows;
    then ``emb_master_free`` (:func:`refuse_master_free`)."""
    asked = tuple(_setting(config, key, default) for key, default in zip(("emb_bits", "emb_bits_policy"), DEFAULT))
    given = f"emb_bits={asked[0]!r}, emb_bits_policy={asked[1]!r}"
    if asked != DEFAULT and _setting(config, "stream", False):
        if method.name not in WIDTH_ROWS:
            raise ValueError(f"{given}: on a stream (stream=True) emb={method.name!r} stores no low-bit rows yet; "
                             "allowed: emb in scall, uniform, or emb_bits=32 and emb_bits_policy=fixed")
    if asked != DEFAULT and not getattr(method, "precision", False):
        raise ValueError(f"{given}: emb={method.name!r} stores no low-bit rows yet; allowed: emb_bits=32 and "
                         "emb_bits_policy=fixed, or emb in baco, freq, hash, qr, scall, uniform (or ciess with "
                         "ciess_projection=True)")
    if asked[1] != "fixed" and _setting(config, "stream", False) and method.name not in WIDTH_ROWS[1:]:
        raise ValueError(f"{given}: on a stream only emb=scall stores rows at bits by frequency; allowed: emb=scall, "
                         "or emb_bits_policy=fixed")
    refuse_master_free(method, config)


def refuse_master_free(method, config):
    """``emb_master_free`` checked before any training: a bool, a row-wise optimiser it can size, a positive
    learning rate, trained codes of at least the stored bits, and a method whose rows are all stored in 2, 4 or
    8 bits (per-row bits included)."""
    master_free = _setting(config, "emb_master_free", False)
    if not isinstance(master_free, bool):
        raise ValueError(f"emb_master_free={master_free!r}: allowed True, False")
    if not master_free:
        given = getattr(config, "external_config_dict", {})
        for key, default in (("emb_master_free_optimizer", "rowwise_rmsprop"), ("emb_master_free_lr", None),
                             ("emb_master_free_bits", None)):
            if given.get(key, default) not in (None, default):
                raise ValueError(f"{key}={given[key]!r}: used only with emb_master_free=True; allowed: set "
                                 f"emb_master_free=True, or drop {key}")
        return
    optimizer = _setting(config, "emb_master_free_optimizer", "rowwise_rmsprop")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"emb_master_free_optimizer={optimizer!r}: allowed "
                         + ", ".join(f"{name} (state: {state})" for name, state in OPTIMIZERS.items()))
    lr = _setting(config, "emb_master_free_lr", None)
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise ValueError(f"emb_master_free_lr={lr!r}: allowed a positive number, or None for learning_rate")
    train_bits = _setting(config, "emb_master_free_bits", None)
    if train_bits is not None and (isinstance(train_bits, bool) or train_bits not in TRAIN_BITS):
        raise ValueError(f"emb_master_free_bits={train_bits!r}: allowed {', '.join(map(str, TRAIN_BITS))} (at least "
                         "the stored rows' bits), or None for the stored rows' bits")
    keys = getattr(method, "bits_keys", ("emb_bits",))
    bits = {key: _setting(config, key, FLOAT_BITS) for key in keys}
    policy = _setting(config, "emb_bits_policy", "fixed")
    stream = _setting(config, "stream", False)
    if stream and method.name in WIDTH_ROWS:  # a segment's packed tables train as stored; the search's stay masked
        if not (_setting(config, "stream_packed_training", True) and _setting(config, "single_spec", True)):
            raise ValueError("emb_master_free=True: a stream trains low-bit rows without masters in its packed "
                             "segment tables; allowed: stream_packed_training=True in a single-process run")
    elif not (getattr(method, "precision", False) or hasattr(type(method), "bits_keys")) or stream:
        raise ValueError(f"emb_master_free=True: emb={method.name!r} trains no low-bit rows without masters here; "
                         "allowed: emb in baco, freq, hash, qr, quant, scall, uniform (or ciess with ciess_projection=True) "
                         "with emb_bits in 2, 4, 8, or on a stream emb in scall, uniform")
    top = {key: ladder(b)[0] if policy == "frequency" and b in MASTER_FREE_BITS else b for key, b in bits.items()}
    low_bit = [b in MASTER_FREE_BITS for b in top.values()]
    if not any(low_bit) or not all(low or b == FLOAT_BITS for low, b in zip(low_bit, bits.values())):
        given = ", ".join(f"{key}={b!r}" for key, b in bits.items())
        raise ValueError(f"emb_master_free=True with {given}, emb_bits_policy={policy!r}: rows trained without "
                         f"masters need {' or '.join(keys)} in {', '.join(map(str, MASTER_FREE_BITS))} (the others "
                         "32), and in 2 or 4 under emb_bits_policy=frequency (its head rows one step up)")
    finer = [f"{key}={bits[key]!r}" for key, b in top.items()
             if b != FLOAT_BITS and train_bits is not None and train_bits < b]
    if finer:
        raise ValueError(f"emb_master_free_bits={train_bits!r}: below the rows stored with {', '.join(finer)}, "
                         f"emb_bits_policy={policy!r}; allowed: the trained codes hold at least the stored rows' "
                         f"bits, {', '.join(map(str, TRAIN_BITS))}")


def master_free_of(config, spec):
    """How table ``spec``'s low-bit rows train without masters, or None (``emb_master_free: False``); its
    stochastic rounding is seeded from the run's ``seed`` and the table's name."""
    if not _setting(config, "emb_master_free", False):
        return None
    seed = (int(config["seed"]) * 1_000_003 + zlib.crc32(spec.name.encode())) % 2 ** 63
    lr = config["emb_master_free_lr"]
    return MasterFree(config["emb_master_free_optimizer"], config["learning_rate"] if lr is None else lr, seed,
                      _setting(config, "emb_master_free_bits", None))


def apply_bits(config, spec, module, bits):
    """:func:`~recbole_lightemb.modules.precision.apply_precision` on a built table, master-free when
    ``emb_master_free`` asks."""
    return apply_precision(module, bits, master_free_of(config, spec))


def _setting(config, key, default):
    try:
        value = config[key]
    except KeyError:
        return default
    return default if value is None else value


def precision_meta(bits, policy):
    """What a plan records of its precision: nothing for float32 rows (today's plans, unchanged)."""
    return {} if (bits, policy) == DEFAULT else {"bits": bits, "bits_policy": policy}


def planned_precision(method, plan):
    """A plan's ``(bits, policy)``; an ``emb_bits`` / ``emb_bits_policy`` the user set that differs is an error."""
    planned = {"emb_bits": plan.meta.get("bits", FLOAT_BITS), "emb_bits_policy": plan.meta.get("bits_policy", "fixed")}
    given = getattr(method.config, "external_config_dict", {})
    for key, value in planned.items():
        if given.get(key) is not None and given[key] != value:
            raise ValueError(f"{key}={given[key]!r}: the reused plan was made with {key}={value!r}; "
                             f"drop {key} or make a new plan")
    return planned["emb_bits"], planned["emb_bits_policy"]


def training_counts(dataset):
    """Training interactions of every user and item: the frequency the ``frequency`` policy ranks rows by."""
    return {"user": np.bincount(dataset.inter_feat[dataset.uid_field].numpy(), minlength=dataset.user_num),
            "item": np.bincount(dataset.inter_feat[dataset.iid_field].numpy(), minlength=dataset.item_num)}


def shared_row_frequency(rows_read, counts, n_rows):
    """Frequency of shared rows: the training interactions of every entity reading each (``rows_read[e]``)."""
    return np.bincount(rows_read, weights=counts.astype(np.float64), minlength=n_rows)
