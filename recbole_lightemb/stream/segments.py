"""Cut a time-ordered interaction log into stream segments, on plain numpy arrays.

The core works on ``users``, ``items``, ``times`` arrays (no per-entity Python objects), so the
same code segments ml-100k through RecBole and a 10M-interaction synthetic stream in the
scale benchmark. :mod:`recbole_lightemb.stream.loader` wraps it for RecBole datasets.

Segment ``t`` of the sorted log is split in time order: the first ``train_ratio`` of it is its
training part, the rest is split ``valid_share`` / ``1 - valid_share`` into validation and test
(``stream_split: time``, SCALL's protocol). On a log where users arrive, rate and leave within a
few hours (ml-100k) the segment's last fifth holds mostly users not seen yet, whom no model can
score, so ``stream_split: user`` cuts each user's own interactions of the segment in time order
instead: every user active in the segment can be tested.
Training adds a seeded sample of earlier segments (only users active in the training part), the
reservoir. Validation and test keep only users and items already *seen*, i.e. present in the
history (all earlier segments plus this segment's training part).
"""

from dataclasses import dataclass

import numpy as np

STREAM_DEFAULTS = {
    "stream": False,
    "stream_segments": None,
    "stream_new_entities": None,
    "stream_window": None,
    "stream_train_ratio": 0.8,
    "stream_valid_share": 0.5,
    "stream_reservoir": 0.2,
    "stream_stopping_step": 3,
    "stream_packed_training": True,
    "stream_split": "time",
}
"""Defaults of the stream keys (also in ``properties/stream.yaml``), used when a config lacks them."""

CUT_KEYS = ("stream_segments", "stream_new_entities", "stream_window")
SPLITS = ("time", "user")


def stream_value(config, key):
    """``config[key]``, or its stream default when the config does not define it."""
    value = config[key]
    return STREAM_DEFAULTS[key] if value is None else value


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_stream_config(config):
    """Validate the stream keys; return ``(cut_key, cut_value)``. Raises naming key, value, allowed."""
    given = {k: config[k] for k in CUT_KEYS if config[k] is not None}
    if len(given) > 1:
        raise ValueError(f"stream: give only one of {', '.join(CUT_KEYS)}; got {given}")
    key, value = next(iter(given.items())) if given else ("stream_segments", 5)
    if key in ("stream_segments", "stream_new_entities"):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key}={value!r}: expected a positive integer")
    elif not _is_number(value) or value <= 0:
        raise ValueError(f"{key}={value!r}: expected a positive time span in the time field's units")
    for ratio_key in ("stream_train_ratio", "stream_valid_share"):
        ratio = stream_value(config, ratio_key)
        if not _is_number(ratio) or not 0 < ratio < 1:
            raise ValueError(f"{ratio_key}={ratio!r}: expected a number in the open interval (0, 1)")
    reservoir = stream_value(config, "stream_reservoir")
    if not _is_number(reservoir) or reservoir < 0:
        raise ValueError(f"stream_reservoir={reservoir!r}: expected a number >= 0 "
                         "(reservoir size as a fraction of the segment)")
    split = stream_value(config, "stream_split")
    if split not in SPLITS:
        raise ValueError(f"stream_split={split!r}: allowed {', '.join(map(repr, SPLITS))}")
    packed = stream_value(config, "stream_packed_training")
    if not isinstance(packed, bool):
        raise ValueError(f"stream_packed_training={packed!r}: expected True or False")
    patience = stream_value(config, "stream_stopping_step")
    if not isinstance(patience, (int, np.integer)) or isinstance(patience, bool) or patience < 1:
        raise ValueError(f"stream_stopping_step={patience!r}: expected a positive integer")
    return key, value


def _first_seen_flags(ids, order):
    """``new[j]`` is True where ``ids[order[j]]`` appears for the first time in ``order``."""
    sorted_ids = ids[order]
    _, first = np.unique(sorted_ids, return_index=True)
    new = np.zeros(order.size, dtype=bool)
    new[first] = True
    return new


def segment_bounds(users, items, times, key, value):
    """Sort by time (stable) and cut; return ``(order, bounds)`` with segment ``t`` =
    ``order[bounds[t]:bounds[t + 1]]``.

    ``stream_segments``: ``value`` segments of equal interaction counts. ``stream_new_entities``:
    a new segment each time ``value`` new users+items have appeared (SCALL's rule); a trailing
    segment with fewer than ``value`` new entities is merged into the one before. ``stream_window``:
    one segment per time span ``value`` (empty spans are skipped).
    """
    n = len(times)
    if n == 0:
        raise ValueError("stream: the dataset has no interactions to segment")
    order = np.argsort(times, kind="stable")
    if key == "stream_segments":
        if value > n:
            raise ValueError(f"stream_segments={value}: more segments than interactions ({n})")
        bounds = np.linspace(0, n, value + 1).round().astype(np.int64)
    elif key == "stream_new_entities":
        new = _first_seen_flags(users, order).astype(np.int64) + _first_seen_flags(items, order)
        before = np.cumsum(new) - new  # new entities strictly before each interaction
        seg = before // value
        starts = np.flatnonzero(np.diff(seg)) + 1
        bounds = np.concatenate([[0], starts, [n]])
        if len(bounds) > 2 and new[bounds[-2]:].sum() < value:
            bounds = np.delete(bounds, -2)
    elif key == "stream_window":
        sorted_times = np.asarray(times)[order].astype(np.float64)
        seg = np.floor((sorted_times - sorted_times[0]) / value).astype(np.int64)
        starts = np.flatnonzero(np.diff(seg)) + 1
        bounds = np.concatenate([[0], starts, [n]])
    else:
        raise ValueError(f"stream cut key {key!r}: allowed {', '.join(CUT_KEYS)}")
    return order, bounds.astype(np.int64)


@dataclass
class SegmentSplit:
    """Row indices (into the original arrays) of one segment's parts, plus who is seen so far."""

    segment: int
    train: np.ndarray       # this segment's training part + reservoir, time order
    valid: np.ndarray
    test: np.ndarray
    history: np.ndarray     # every earlier interaction + this segment's training part
    reservoir: np.ndarray   # the reservoir rows alone (a subset of ``train``)
    seen_users: np.ndarray  # bool (n_users,)
    seen_items: np.ndarray  # bool (n_items,)
    user_freq: np.ndarray   # int64 (n_users,): interactions in the history
    item_freq: np.ndarray
    user_segment_freq: np.ndarray  # int64 (n_users,): interactions in ``train`` only (this segment's own
    item_segment_freq: np.ndarray  # training part + its reservoir): SCALL's frequency (the authors' ImplicitCF.py)


def _only_seen(rows, users, items, seen_users, seen_items):
    """The rows whose user and item are both seen already (evaluation cannot score strangers)."""
    return rows[seen_users[users[rows]] & seen_items[items[rows]]]


def _cut(rows, users, train_ratio, valid_share, split):
    """``(train, valid, test)`` rows of one segment (``rows`` in time order), each kept in time order.

    ``time``: the segment's first ``train_ratio`` trains, the rest is cut ``valid_share`` / rest.
    ``user``: the same cut applied to each user's own rows (at least one training row per user).
    """
    if split == "time":
        n_train = min(max(1, int(np.floor(train_ratio * rows.size))), rows.size)
        rest = rows[n_train:]
        n_valid = int(np.floor(valid_share * rest.size))
        return rows[:n_train], rest[:n_valid], rest[n_valid:]
    owner = users[rows]
    by_user = np.argsort(owner, kind="stable")  # each user's rows together, still in time order
    _, first, count = np.unique(owner[by_user], return_index=True, return_counts=True)
    rank = np.empty(rows.size, dtype=np.int64)
    rank[by_user] = np.arange(rows.size) - np.repeat(first, count)
    total = np.empty(rows.size, dtype=np.int64)
    total[by_user] = np.repeat(count, count)
    n_train = np.maximum(1, np.floor(train_ratio * total).astype(np.int64))
    n_valid = np.floor(valid_share * (total - n_train)).astype(np.int64)
    return rows[rank < n_train], rows[(rank >= n_train) & (rank < n_train + n_valid)], rows[rank >= n_train + n_valid]


def split_segments(users, items, order, bounds, n_users, n_items, train_ratio=0.8, valid_share=0.5,
                   reservoir=0.2, seed=0, split="time"):
    """Yield a :class:`SegmentSplit` per segment, in time order (``split``: see :func:`_cut`).

    ``n_users``/``n_items`` size the global id space. Frequencies and the seen masks accumulate
    incrementally (one ``bincount`` per segment), so the cost per segment is O(interactions).
    """
    users = np.asarray(users)
    items = np.asarray(items)
    rng = np.random.default_rng(seed)
    user_freq = np.zeros(n_users, dtype=np.int64)
    item_freq = np.zeros(n_items, dtype=np.int64)
    for t in range(len(bounds) - 1):
        start, stop = int(bounds[t]), int(bounds[t + 1])
        rows = order[start:stop]
        own_train, valid, test = _cut(rows, users, train_ratio, valid_share, split)
        rest = np.concatenate([valid, test])

        user_freq += np.bincount(users[own_train], minlength=n_users)
        item_freq += np.bincount(items[own_train], minlength=n_items)
        seen_users, seen_items = user_freq > 0, item_freq > 0

        earlier = order[:start]
        pool = np.zeros(0, dtype=order.dtype)
        if earlier.size and reservoir > 0:
            active = np.zeros(n_users, dtype=bool)
            active[users[own_train]] = True
            pool = earlier[active[users[earlier]]]
        size = min(int(round(reservoir * rows.size)), pool.size)
        picked = np.sort(rng.choice(pool, size=size, replace=False)) if size else pool[:0]
        # earlier rows come first in time, so the reservoir goes before the segment's own rows
        train = np.concatenate([picked, own_train])

        yield SegmentSplit(
            segment=t, train=train,
            valid=_only_seen(valid, users, items, seen_users, seen_items),
            test=_only_seen(test, users, items, seen_users, seen_items),
            history=np.concatenate([order[:start], own_train]), reservoir=picked,
            seen_users=seen_users, seen_items=seen_items,
            user_freq=user_freq.copy(), item_freq=item_freq.copy(),
            user_segment_freq=np.bincount(users[train], minlength=n_users),
            item_segment_freq=np.bincount(items[train], minlength=n_items),
        )
        # the rest of the segment joins the history of later segments
        user_freq += np.bincount(users[rest], minlength=n_users)
        item_freq += np.bincount(items[rest], minlength=n_items)
