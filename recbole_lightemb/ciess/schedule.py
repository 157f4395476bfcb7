"""The authors' training per CIESS search step, and the rule that carries it to another dataset.

In the authors' code (``RecSysEnv.py``) every step trains a *fresh* recommender for ``B`` batches of
10 000 (user, positive, negative) samples with Adam at lr 0.03, multiplied by 0.9 after every ``k``
batches down to a floor; ``B``, ``k`` and the floor depend on the model (``AUTHORS_STEP``). On ML-1M
their 50/25/25 per-user split leaves about 500 104 training rows, so a LightGCN step passes over the
training data 2000 × 10 000 / 500 104 ≈ 40 times. The paper mode keeps that on any dataset: a batch
holds the same share of the training rows (``10 000 × rows / 500 104``), so a step keeps the authors'
number of batches, passes and learning-rate path. ``ciess_search_scale`` multiplies the batches and
the decay interval together (the same lr path over a shorter step).
"""

from dataclasses import dataclass

AUTHORS_BATCH = 10_000
AUTHORS_TRAIN_ROWS = 500_104  # half of ML-1M's ratings: the authors' training split
AUTHORS_STEP = {"LightGCN": (2000, 200, 1e-3), "NGCF": (3000, 100, 1e-3), "NeuMF": (1500, 50, 1e-4)}
"""Model: (batches per step, decay every k batches, lr floor); the authors' ``ncf`` is RecBole's NeuMF."""
OTHER_MODELS = "LightGCN"  # a model the authors did not run takes LightGCN's step (the figures)
AUTHORS_TARGET_NOISE = (2.0, 5.0)  # target-smoothing noise: sigma and clip, in widths (Buffer.py)
AUTHORS_BUFFER_STEPS = 100  # replay buffer: 100 transitions per entity of the side (Buffer.py)


def authors_step(model):
    """``(batches, decay_every, lr_min)`` of the authors' step for RecBole model ``model``."""
    return AUTHORS_STEP.get(model, AUTHORS_STEP[OTHER_MODELS])


def authors_batch_size(train_rows):
    """The authors' 10 000-sample batch as the same share of ``train_rows`` training rows (at least 1)."""
    return max(1, round(AUTHORS_BATCH * train_rows / AUTHORS_TRAIN_ROWS))


@dataclass
class LrSchedule:
    """Exponential decay by batches, as the authors' ``train_n_batches``: after every ``every``-th batch of
    a call, ``lr ← max(lr_min, decay · lr)``. The lr carries over between calls (their pre-training rounds);
    a search step starts a new schedule."""

    lr: float
    decay: float
    every: int
    lr_min: float

    def after_batch(self, index):
        """Call after batch ``index`` (0-based, counted within one call); returns the lr of the next batch."""
        if (index + 1) % self.every == 0:
            self.lr = max(self.lr_min, self.decay * self.lr)
        return self.lr


def scaled_count(count, scale):
    """``round(count · scale)``, at least 1: batches per step and the decay interval at a search scale."""
    return max(1, round(count * scale))
