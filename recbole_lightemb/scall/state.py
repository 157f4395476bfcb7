"""SCALL's fixed-length state: the same size whether 1 000 or 1 000 000 entities are seen.

Two definitions of the same ``2·groups + 2 + 2·d + 2`` numbers: :class:`AuthorsState` follows the
authors' ``State.py`` (paper mode), :func:`build_state` is the plugin's own (fast mode).
"""

import math

import numpy as np
import torch


def pooled_profile(freq, groups):
    """Seen frequencies sorted (largest first), min-max normalised, mean-pooled into ``groups``
    equal-rank bins; bins left empty when there are fewer entities than groups are interpolated."""
    values = np.sort(np.asarray(freq, dtype=np.float64))[::-1]
    if values.size == 0:
        return np.zeros(groups)
    span = values[0] - values[-1]
    values = (values - values[-1]) / span if span > 0 else np.zeros_like(values)
    bins = (np.arange(values.size) * groups) // values.size
    counts = np.bincount(bins, minlength=groups)
    sums = np.bincount(bins, weights=values, minlength=groups)
    filled = counts > 0
    centres = np.arange(groups)
    return np.interp(centres, centres[filled], sums[filled] / counts[filled])


def width_spread(widths, dim):
    """Standard deviation of the seen entities' widths, in units of the full width."""
    widths = widths[widths > 0]
    return float(widths.std() / dim) if widths.size else 0.0


def build_state(user_freq, item_freq, seen_users, seen_items, last_reward, user_mean, item_mean,
                user_widths, item_widths, groups):
    """``[user profile (groups), item profile (groups), last reward, user share,
    mean user embedding (d), mean item embedding (d), user width spread, item width spread]``."""
    n_u, n_i = int(seen_users.sum()), int(seen_items.sum())
    dim = len(user_mean)
    return np.concatenate([
        pooled_profile(user_freq[seen_users], groups),
        pooled_profile(item_freq[seen_items], groups),
        [last_reward, n_u / max(n_u + n_i, 1)],
        np.asarray(user_mean, dtype=np.float64),
        np.asarray(item_mean, dtype=np.float64),
        [width_spread(user_widths, dim), width_spread(item_widths, dim)],
    ]).astype(np.float32)


def state_size(groups, dim):
    return 2 * groups + 2 + 2 * dim + 2


def authors_profile(freq, groups):
    """``State.py``'s profile: frequencies sorted largest first, min-max scaled (all equal: all ones), cut
    into ``groups`` windows of ``ceil(n / groups)`` entities, each window's mean; a window that is empty
    (fewer entities than windows) or sums to zero gives 0."""
    values = np.sort(np.asarray(freq, dtype=np.float64))[::-1]
    if values.size == 0:
        return np.zeros(groups)
    span = values[0] - values[-1]
    values = (values - values[-1]) / span if span > 0 else np.ones_like(values)
    length = math.ceil(values.size / groups)
    window = np.arange(values.size) // length
    sums = np.bincount(window, weights=values, minlength=groups)[:groups]
    counts = np.bincount(window, minlength=groups)[:groups]
    return np.divide(sums, counts, out=np.zeros(groups), where=(counts > 0) & (sums != 0))


class AuthorsState:
    """SCALL's state as ``State.py`` keeps it: fields that the authors' ``Engine.py`` updates on its own events.

    ``[user profile, item profile, reward, user share, mean user embedding, mean item embedding,
    user size spread, item size spread]``, where the reward is the last search step's unscaled ratio
    (0.5 before any), and a side's size spread is ``ρ · (max p - min p) · budget / (s_max - s_min)`` with
    ``p`` the last tried action's shape on that side and ``ρ`` its user share, which a new segment resets to
    the users' share of the seen entities (``Engine.init_dataset``).
    """

    def __init__(self, dim, groups, s_min, s_max):
        self.groups, self.size_range = groups, max(s_max - s_min, 1)
        self.reward, self.ratio, self.p_range = 0.5, 0.5, (0.0, 0.0)
        self.means = (np.zeros(dim), np.zeros(dim))
        self.profiles, self.share, self.budget = (np.zeros(groups), np.zeros(groups)), 0.5, 0

    def new_segment(self, user_freq, item_freq, seen_users, seen_items, budget):
        """``init_dataset``: this segment's frequencies over the seen entities, its user share, its budget."""
        n_u, n_i = int(seen_users.sum()), int(seen_items.sum())
        self.profiles = (authors_profile(user_freq[seen_users], self.groups),
                         authors_profile(item_freq[seen_items], self.groups))
        self.share = self.ratio = n_u / max(n_u + n_i, 1)
        self.budget = budget

    def after_step(self, rho, user_p_range, item_p_range, ratio, means):
        """``update_state`` after a search step: its action, its unscaled reward, the tried model's embeddings."""
        self.ratio, self.p_range, self.reward = float(rho), (user_p_range, item_p_range), float(ratio)
        self.means = means

    def after_training(self, means):
        """``update_mean_embs``: the mean embeddings of the segment's trained model."""
        self.means = means

    def data(self):
        """The fields, as data (a stream's state file holds them)."""
        def tensors(arrays):
            return [torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in arrays]

        return {"reward": self.reward, "ratio": self.ratio, "p_range": [float(v) for v in self.p_range],
                "share": self.share, "budget": int(self.budget), "means": tensors(self.means),
                "profiles": tensors(self.profiles)}

    def load(self, data):
        means, profiles = [m.numpy() for m in data["means"]], [p.numpy() for p in data["profiles"]]
        if [len(m) for m in means] != [len(m) for m in self.means] or [len(p) for p in profiles] != [self.groups] * 2:
            raise ValueError("state fields of another width or number of groups")
        self.reward, self.ratio, self.share = float(data["reward"]), float(data["ratio"]), float(data["share"])
        self.p_range, self.budget = tuple(float(v) for v in data["p_range"]), int(data["budget"])
        self.means, self.profiles = tuple(means), tuple(profiles)

    def vector(self):
        spread = [self.ratio * self.p_range[0], (1 - self.ratio) * self.p_range[1]]
        return np.concatenate([
            *self.profiles, [self.reward, self.share],
            *(np.asarray(m, dtype=np.float64) for m in self.means),
            np.asarray(spread) * self.budget / self.size_range,
        ]).astype(np.float32)
