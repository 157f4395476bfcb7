"""RecBole's training batches built without per-sample loops (`recbole_lightemb.batches`) are RecBole's own."""

import itertools

import numpy as np
import pytest
import torch

from recbole_lightemb import Config
from recbole_lightemb.batches import recbole_own


def _loader(tiny_config, model="BPR", **extra):
    from recbole.data import create_dataset, data_preparation

    config = Config(model=model, config_dict={**tiny_config, "train_batch_size": 64, **extra})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return config, train_data


def _passes(config, train_data, own, batch_size):
    """Batches of four passes over a fresh loader: a whole one, one given up after two batches, one given up
    right after its last batch (before asking for another), a whole one."""
    from recbole_lightemb.batches import _PositionSlices

    def run():
        loader = type(train_data)(config, train_data._dataset, train_data._sampler, shuffle=True)
        assert (type(loader.batch_sampler) is _PositionSlices) != own  # the plugin's path, or RecBole's
        np.random.seed(7)
        passes = [list(loader), list(itertools.islice(loader, 2)), list(itertools.islice(loader, len(loader)))]
        return [batch for one in passes + [list(loader)] for batch in one]

    config["train_batch_size"] = batch_size  # what the loader is built with
    if own:
        with recbole_own():
            return run()
    return run()


@pytest.mark.parametrize("fills_exactly", [False, True])
@pytest.mark.parametrize("model", ["BPR", "SASRec"])
def test_passes_of_batches_are_recboles_own(tiny_config, model, fills_exactly):
    """The same batches pass after pass, passes given up midway and at the end included, whether or not the
    last batch is partial (torch draws its second permutation at a moment that depends on it)."""
    config, train_data = _loader(tiny_config, model=model)
    rows = len(train_data._dataset)
    size = next(b for b in range(40, rows) if rows % b == 0) if fills_exactly else 64
    assert (rows % size == 0) == fills_exactly
    recbole, plugin = _passes(config, train_data, True, size), _passes(config, train_data, False, size)
    assert len(recbole) == len(plugin) > 8
    assert all(_same(a, b) for a, b in zip(recbole, plugin))
    # and a different draw is told apart
    other = _passes(config, train_data, False, size + 1)
    assert not all(torch.equal(a["item_id"], b["item_id"]) for a, b in zip(plugin, other))


@pytest.mark.parametrize("mode", ["full", "uni10"])
def test_evaluation_batches_are_recboles_own(tiny_config, mode):
    from recbole.data import create_dataset, data_preparation

    eval_args = {**tiny_config["eval_args"], "mode": mode}
    config = Config(model="BPR", config_dict={**tiny_config, "eval_args": eval_args, "eval_batch_size": 200})
    with recbole_own():
        np.random.seed(3)
        recbole = [list(loader) for loader in data_preparation(config, create_dataset(config))[1:]]
    np.random.seed(3)
    plugin = [list(loader) for loader in data_preparation(config, create_dataset(config))[1:]]
    assert [len(r) for r in recbole] == [len(p) for p in plugin] and min(len(p) for p in plugin) > 1
    assert all(_same(a, b) for r, p in zip(recbole, plugin) for a, b in zip(r, p))


def _same(a, b):
    """Equal batches: interactions, tensors, and tuples of them (a full-sort batch's history and positives)."""
    from recbole.data.interaction import Interaction

    if isinstance(a, Interaction):
        return a.interaction.keys() == b.interaction.keys() and all(torch.equal(a[k], b[k]) for k in a.interaction)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_sampled_negatives_match_recbole_where_most_draws_collide(tiny_config):
    """Users whose positives are most of the items: many redraws, each of RecBole's sizes and order."""
    from recbole.sampler.sampler import AbstractSampler

    _, train_data = _loader(tiny_config)
    sampler = train_data._sampler
    n_items = sampler.item_num
    crowded = np.array([{*range(1, n_items - 2)}, {1, 2}, set(), {*range(2, n_items)}], dtype=object)
    sampler.used_ids = crowded
    keys = np.array([0, 1, 2, 3, 0, 3, 3], dtype=np.int64)
    np.random.seed(3)
    recbole = AbstractSampler.sample_by_key_ids.__wrapped__(sampler, keys, 5)
    np.random.seed(3)
    plugin = sampler.sample_by_key_ids(keys, 5)
    assert torch.equal(recbole, plugin)
    for key, value in zip(np.tile(keys, 5), plugin.tolist()):
        assert value not in crowded[key]
    sampler.used_ids = np.array([{1}, {2}, {1, 2}, set()], dtype=object)  # a new array: its pairs, not the old ones
    np.random.seed(3)
    recbole = AbstractSampler.sample_by_key_ids.__wrapped__(sampler, keys, 5)
    np.random.seed(3)
    assert torch.equal(recbole, sampler.sample_by_key_ids(keys, 5))


def test_an_unknown_user_is_still_recboles_error(tiny_config):
    _, train_data = _loader(tiny_config)
    sampler = train_data._sampler
    with pytest.raises(ValueError, match="user_id"):
        sampler.sample_by_user_ids(np.array([1, sampler.user_num + 5]), np.array([1, 1]), 1)


@pytest.mark.parametrize("index", [[3, 0, 3, 1], np.array([2, 1]), torch.tensor([1, 1, 0]), [True, False, True, False],
                                   slice(1, 3), [], np.array([2, 0], dtype=np.int32), np.arange(4)[::-1],
                                   np.array([0, 2], dtype=np.uint8), np.array(2), [np.int64(1), 2], [-1, 0]])
def test_interaction_rows_are_recboles_own(index):
    from recbole.data.interaction import Interaction

    rows = Interaction({"user_id": torch.tensor([5, 6, 7, 8]), "seq": torch.arange(12.0).view(4, 3)})
    with recbole_own():
        recbole = rows[index]
    plugin = rows[index]
    assert type(plugin) is Interaction and plugin.interaction.keys() == recbole.interaction.keys()
    assert all(torch.equal(recbole[k], plugin[k]) for k in recbole.interaction)
    assert rows["user_id"] is rows.interaction["user_id"]  # a name still gives the field
