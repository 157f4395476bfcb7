"""RecBole's own training batches, element for element, built without its per-sample Python loops.

A RecBole training batch spends most of its time in two places that loop in Python over every sample:
``Interaction.__getitem__`` indexes each field with a Python list (torch converts the list again for every
field), and ``AbstractSampler.sample_by_key_ids`` checks each drawn negative against the user's positives
one set lookup at a time. Both are replaced by array operations that make the same random draws, in the
same order and of the same sizes, so every batch, and every weight trained on it, is RecBole's
(``tests/test_batches.py``; ``bench/batch_speed.py`` measures the speed-up). Applied once on import,
like :mod:`recbole_lightemb.compat`; anything outside the cases sped up goes to RecBole's own code.
"""

import contextlib
import itertools

import numpy as np
import torch

_SHIFT = 32
"""Bits of a (key, value) pair's code given to the value: ids are far below 2**32 in any RecBole dataset."""


def _used_pairs(sampler):
    """The sorted codes ``key << 32 | value`` of every pair in ``sampler.used_ids``, built once per
    ``used_ids`` array (a phase copy or a new array gets its own; the array itself is held, so its
    identity cannot be reused)."""
    cached = getattr(sampler, "_lightemb_used_pairs", None)
    if cached is not None and cached[0] is sampler.used_ids:
        return cached[1]
    used = sampler.used_ids
    sizes = np.fromiter(map(len, used), dtype=np.int64, count=len(used))
    values = np.fromiter(itertools.chain.from_iterable(used), dtype=np.int64, count=int(sizes.sum()))
    keys = np.repeat(np.arange(len(used), dtype=np.int64), sizes)
    codes = np.sort((keys << _SHIFT) | values)
    sampler._lightemb_used_pairs = (used, codes)
    return codes


def _is_used(codes, keys, values):
    """Whether each (key, value) pair is among the sorted ``codes``."""
    wanted = (keys << _SHIFT) | values
    at = np.searchsorted(codes, wanted)
    found = np.zeros(len(wanted), dtype=bool)
    inside = at < len(codes)
    found[inside] = codes[at[inside]] == wanted[inside]
    return found


def _sample_by_key_ids(original):
    def sample_by_key_ids(self, key_ids, num):
        keys = np.asarray(key_ids)
        if (keys.ndim != 1 or len(keys) == 0 or keys.dtype.kind not in "iu" or (keys == keys[0]).all()
                or keys.min() < 0 or keys.max() >= len(self.used_ids) or keys.max() >= 2 ** (63 - _SHIFT)):
            return original(self, key_ids, num)
        codes = _used_pairs(self)
        total = len(keys) * num
        keys = np.tile(keys.astype(np.int64), num)
        value_ids = np.zeros(total, dtype=np.int64)
        check = np.arange(total)
        while len(check) > 0:
            value_ids[check] = self.sampling(len(check))
            check = check[_is_used(codes, keys[check], value_ids[check])]
        return torch.tensor(value_ids, dtype=torch.long)

    sample_by_key_ids.__wrapped__ = original
    return sample_by_key_ids


def _as_rows(index):
    """``index`` as one int64 tensor where it is a non-empty 1-D list of integers (RecBole's batches);
    ``None`` for anything else (a name, a slice, booleans, …)."""
    if isinstance(index, torch.Tensor):
        index = index.tolist()  # what RecBole's own code does first
    if not isinstance(index, (list, np.ndarray)) or len(index) == 0:
        return None
    rows = torch.as_tensor(index)
    return rows if rows.dim() == 1 and rows.dtype == torch.int64 else None


def _interaction_getitem(original, interaction_class):
    def getitem(self, index):
        rows = _as_rows(index)
        if rows is None:
            return original(self, index)
        on_device = {}
        fields = {}
        for name, field in self.interaction.items():
            if field.device not in on_device:
                on_device[field.device] = rows.to(field.device)
            fields[name] = field[on_device[field.device]]
        return interaction_class(fields)

    getitem.__wrapped__ = original
    return getitem


def apply():
    """Install both once (a second call finds them installed)."""
    from recbole.data.interaction import Interaction
    from recbole.sampler.sampler import AbstractSampler

    if not hasattr(AbstractSampler.sample_by_key_ids, "__wrapped__"):
        AbstractSampler.sample_by_key_ids = _sample_by_key_ids(AbstractSampler.sample_by_key_ids)
    if not hasattr(Interaction.__getitem__, "__wrapped__"):
        Interaction.__getitem__ = _interaction_getitem(Interaction.__getitem__, Interaction)


@contextlib.contextmanager
def recbole_own():
    """RecBole's own two functions for the duration (to compare against: tests and ``bench/batch_speed.py``)."""
    from recbole.data.interaction import Interaction
    from recbole.sampler.sampler import AbstractSampler

    fast = AbstractSampler.sample_by_key_ids, Interaction.__getitem__
    AbstractSampler.sample_by_key_ids, Interaction.__getitem__ = (getattr(f, "__wrapped__", f) for f in fast)
    try:
        yield
    finally:
        AbstractSampler.sample_by_key_ids, Interaction.__getitem__ = fast
