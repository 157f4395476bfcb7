"""RecBole's own training batches, element for element, built without its per-sample Python loops.

Most of a RecBole batch's time went to loops in Python over every sample: torch's ``DataLoader`` takes each
position from its sampler and fetches it from RecBole's ``list(range(n))`` one at a time, RecBole's
``collate_fn`` turns the list into an array, ``Interaction.__getitem__`` indexes every field with a Python
list (torch converts it again for each field), and ``AbstractSampler.sample_by_key_ids`` checks each drawn
negative against the user's positives one set lookup at a time. Here the positions come as array slices of
the same permutation (the same draws from the loader's generator, at the same moments), the rows are taken
with one index tensor, and the draws are checked as arrays (the same calls to RecBole's sampler, of the same
sizes, in the same order): every batch, and every weight trained on it, is RecBole's
(``tests/test_batches.py``; ``bench/batch_speed.py`` measures the speed-up). Installed once on import, like
:mod:`recbole_lightemb.compat`; anything outside the cases sped up goes to RecBole's and torch's own code.
"""
import contextlib
import itertools

import numpy as np
import torch

_RECBOLE_OWN = False
"""Set by :func:`recbole_own`: loaders built before it hand out torch's own batches of positions meanwhile."""

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
    """``index`` as one int64 tensor where it is a non-empty 1-D integer array, or a list of Python ints (what
    RecBole's own code makes of a tensor); ``None`` for anything else (a name, a slice, booleans, …)."""
    if isinstance(index, torch.Tensor):
        index = index.tolist()  # what RecBole's own code does first
    if isinstance(index, np.ndarray):
        integers = index.dtype.kind == "i" or (index.dtype.kind == "u" and index.dtype.itemsize < 8)
        if index.ndim != 1 or index.size == 0 or not integers:
            return None
        return torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))
    if isinstance(index, list) and index and all(type(i) is int for i in index):
        return torch.tensor(index, dtype=torch.int64)
    return None


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


class _Positions:
    """Stands for RecBole's ``list(range(n))`` as a loader's dataset: position ``i`` is ``i``, and a batch of
    positions is handed to ``collate_fn`` as it comes (torch's fetcher asks ``__getitems__`` first)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, position):
        return range(self.n)[position]

    def __getitems__(self, positions):
        return positions


class _PositionSlices:
    """The batches of ``batch_sampler`` (torch's, over a random or sequential sampler) as array slices of one
    permutation. Torch's random sampler draws a second, empty permutation when its first is used up, that
    is before the last, partial batch (or, when the batches fill it exactly, when one more is asked for):
    drawn here at the same moment, so the loader's generator is where torch leaves it, even after a pass
    abandoned midway. Any other sampler, or ``drop_last``, goes to torch's own batches."""

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler

    def __len__(self):
        return len(self.batch_sampler)

    def __getattr__(self, name):  # batch_size, sampler, drop_last: the wrapped sampler's
        if name.startswith("__") or name == "batch_sampler":
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)

    def __iter__(self):
        from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

        batches, size = self.batch_sampler, self.batch_sampler.batch_size
        sampler = batches.sampler
        n = len(sampler.data_source) if hasattr(sampler, "data_source") else 0
        random = (type(sampler) is RandomSampler and not sampler.replacement and sampler.generator is not None
                  and sampler.num_samples == n)
        if _RECBOLE_OWN or type(batches) is not BatchSampler or batches.drop_last or n == 0 or not (
                random or type(sampler) is SequentialSampler):
            yield from batches
            return
        if random:
            order = torch.randperm(n, generator=sampler.generator).numpy()
        else:
            order = np.arange(n, dtype=np.int64)
        for start in range(0, n, size):
            if random and start + size > n:
                torch.randperm(n, generator=sampler.generator)
            yield order[start:start + size]
        if random and n % size == 0:
            torch.randperm(n, generator=sampler.generator)


def _loader_init(original):
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        fields = vars(self)
        positions = fields.get("dataset")
        if (type(positions) is list and positions == list(range(len(positions)))
                and fields.get("batch_sampler") is not None):
            object.__setattr__(self, "dataset", _Positions(len(positions)))  # torch refuses a plain assignment
            object.__setattr__(self, "batch_sampler", _PositionSlices(fields["batch_sampler"]))

    init.__wrapped__ = original
    return init


def apply():
    """Install all three once (a second call finds them installed)."""
    from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
    from recbole.data.interaction import Interaction
    from recbole.sampler.sampler import AbstractSampler

    if not hasattr(AbstractDataLoader.__init__, "__wrapped__"):
        AbstractDataLoader.__init__ = _loader_init(AbstractDataLoader.__init__)

    if not hasattr(AbstractSampler.sample_by_key_ids, "__wrapped__"):
        AbstractSampler.sample_by_key_ids = _sample_by_key_ids(AbstractSampler.sample_by_key_ids)
    if not hasattr(Interaction.__getitem__, "__wrapped__"):
        Interaction.__getitem__ = _interaction_getitem(Interaction.__getitem__, Interaction)


@contextlib.contextmanager
def recbole_own():
    """RecBole's and torch's own batch building for the duration (to compare against: tests and
    ``bench/batch_speed.py``), for loaders built before it too."""
    global _RECBOLE_OWN
    from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
    from recbole.data.interaction import Interaction
    from recbole.sampler.sampler import AbstractSampler

    fast = AbstractDataLoader.__init__, AbstractSampler.sample_by_key_ids, Interaction.__getitem__
    (AbstractDataLoader.__init__, AbstractSampler.sample_by_key_ids,
     Interaction.__getitem__) = (getattr(f, "__wrapped__", f) for f in fast)
    _RECBOLE_OWN = True
    try:
        yield
    finally:
        _RECBOLE_OWN = False
        AbstractDataLoader.__init__, AbstractSampler.sample_by_key_ids, Interaction.__getitem__ = fast
