"""Training-protocol choices RecBole's config cannot express: how the id tables start, which items a negative
may be.

Published methods are measured under their authors' protocol; the BACO authors' code, for one, starts every
id table at ``nn.Embedding``'s default N(0, 1) (RecBole's models use Xavier) and draws each negative uniformly
from all items, the user's positives included (RecBole's sampler redraws those). ``emb_init`` and
``emb_neg_sampling`` reproduce both for any RecBole model; the defaults leave RecBole's behaviour unchanged.
"""

import numpy as np
import torch
from recbole.sampler import Sampler

EMB_INITS = ("recbole", "normal")
"""``recbole``: the model's own initialisation; ``normal``: every id table N(0, 1), as ``nn.Embedding``'s default."""

NEG_SAMPLINGS = ("exclude_positives", "uniform_all")
"""``exclude_positives``: RecBole's sampler, which redraws a user's training positives; ``uniform_all``: any item."""


def check_protocol(config):
    """One-line errors for the protocol keys, before any data is loaded."""
    if config["emb_init"] not in EMB_INITS:
        raise ValueError(f"emb_init={config['emb_init']!r}: allowed recbole (the model's own initialisation), "
                         "normal (every id table N(0, 1), as nn.Embedding's default)")
    sampling = config["emb_neg_sampling"]
    if sampling not in NEG_SAMPLINGS:
        raise ValueError(f"emb_neg_sampling={sampling!r}: allowed exclude_positives (RecBole's sampler), "
                         "uniform_all (any item, the user's positives included)")
    if not isinstance(config["emb_test_curve"], bool):
        raise ValueError(f"emb_test_curve={config['emb_test_curve']!r}: expected True or False")
    if config["emb_test_curve"] and config["stream"]:
        raise ValueError("emb_test_curve=True: not supported with stream=True (each segment reports its own test "
                         "result); use False")
    if sampling == "uniform_all":
        args = config["train_neg_sample_args"]
        distribution = args.get("distribution") if isinstance(args, dict) else None
        if distribution != "uniform":
            raise ValueError(f"emb_neg_sampling='uniform_all' needs uniformly sampled training negatives, but "
                             f"train_neg_sample_args={args!r}; set its distribution to uniform")
        if config["stream"]:
            raise ValueError("emb_neg_sampling='uniform_all': not supported with stream=True (each segment "
                             "builds its own samplers); use exclude_positives")


def init_id_tables(specs, tables, config, seed=None):
    """``emb_init: normal``: draw the entity rows of every table to be swapped from N(0, 1) (the padding row stays
    zero), seeded with ``seed`` (default ``config['seed']``; a model rebuilt afresh within a run, as CIESS's
    search steps, passes its own). Every method builds its rows from the table it replaces (``full`` keeps it),
    so its tables start from these values."""
    if config["emb_init"] != "normal":
        return
    generator = torch.Generator().manual_seed(config["seed"] if seed is None else seed)
    with torch.no_grad():
        for spec, table in zip(specs, tables):
            rows = table.weight[spec.first_row:spec.first_row + spec.num_embeddings]
            rows.copy_(torch.randn(tuple(rows.shape), generator=generator))
            if spec.padding_idx is not None:
                rows[spec.padding_idx] = 0


def use_negative_sampling(train_data, config):
    """``emb_neg_sampling: uniform_all``: the training sampler forgets every user's positives, so each negative
    is drawn uniformly from all items (RecBole's ids ``1..n-1``) and may be a positive of the user, as in the
    BACO authors' ``torch.randint`` over all items. The validation and test samplers are separate copies and
    keep masking what they mask."""
    if config["emb_neg_sampling"] != "uniform_all":
        return
    sampler = getattr(train_data, "_sampler", None)
    if type(sampler) is not Sampler:
        raise ValueError(f"emb_neg_sampling='uniform_all' works on RecBole's user-item Sampler; this training "
                         f"data samples with {type(sampler).__name__}")
    sampler.used_ids = np.array([set() for _ in range(sampler.user_num)])
