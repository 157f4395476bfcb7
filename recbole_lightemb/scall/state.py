"""SCALL's fixed-length state: the same size whether 1 000 or 1 000 000 entities are seen."""

import numpy as np


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
