"""CIESS exploration: a short random walk over nearby widths, the critic picks, then Gaussian noise.

Widths form a graph where ``s`` links to every width within ``±radius`` (inside
``[s_min, s_max]``); a step goes to a neighbour with probability ∝ ``1 / distance``, so the
walk mostly tries close widths but sometimes jumps. Everything is vectorised over entities.
The noise is the caller's: in the authors' code one scalar per step, added to every user's and
every item's width (``CIESS.py``); the fast mode draws one per entity here.
"""

import numpy as np


def _offsets(radius):
    return np.concatenate([np.arange(-radius, 0), np.arange(1, radius + 1)])


def _step_weights(current, offsets, s_min, s_max):
    """Unnormalised step weights ``(n, 2·radius)``: ``1/distance`` for in-bounds neighbours, else 0."""
    targets = current[:, None] + offsets[None, :]
    return targets, np.where((targets >= s_min) & (targets <= s_max), 1.0 / np.abs(offsets), 0.0)


def neighbour_probabilities(width, s_min, s_max, radius):
    """``(neighbours, probs)`` of one walk step from ``width``."""
    targets, weights = _step_weights(np.array([width]), _offsets(radius), s_min, s_max)
    return targets[0], weights[0] / weights[0].sum()


def random_walk(start, rng, s_min, s_max, steps=5, radius=5):
    """Widths visited by one walk per entity: ``(steps + 1, n)``, the start row first."""
    offsets = _offsets(radius)
    current = np.asarray(start, dtype=np.int64)
    visited = [current]
    for _ in range(steps):
        targets, weights = _step_weights(current, offsets, s_min, s_max)
        cumulative = np.cumsum(weights, axis=1)
        draws = rng.random(len(current)) * cumulative[:, -1]
        choice = np.minimum((cumulative <= draws[:, None]).sum(axis=1), len(offsets) - 1)
        current = targets[np.arange(len(current)), choice]
        visited.append(current)
    return np.stack(visited)


def explore(proposed, score, rng, s_min, s_max, steps=5, radius=5, sigma=6.0, noise=None):
    """Exploratory widths from the actor's ``proposed`` widths.

    ``score(candidates)`` rates an ``(k, n)`` array of widths (the critic, higher is better);
    the best walk width per entity gets ``noise`` (a scalar for all, or ``None``: one ``N(0, sigma²)``
    draw per entity), is rounded and clipped.
    """
    start = np.clip(np.rint(proposed), s_min, s_max).astype(np.int64)
    if s_max == s_min:
        return start
    candidates = random_walk(start, rng, s_min, s_max, steps, radius)
    best = candidates[np.argmax(score(candidates), axis=0), np.arange(candidates.shape[1])]
    noisy = best + (rng.normal(0.0, sigma, size=best.shape) if noise is None else noise)
    return np.clip(np.rint(noisy), s_min, s_max).astype(np.int64)
