"""Per-segment RecBole data loaders over one global id space.

The RecBole ``Dataset`` is built once (so ids are the whole dataset's remapped ids and model
tables never change shape); each segment is a set of ``dataset.copy`` views of its rows. The
negative sampler and the full-sort evaluators see the segment's *history* (all earlier
interactions plus this segment's training part) as the first phase, so training never samples
a known positive as a negative and evaluation masks every interaction seen before.
"""

from dataclasses import dataclass

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.data.utils import create_samplers, get_dataloader
from recbole.utils import FeatureType

from recbole_lightemb.stream.segments import SegmentSplit, check_stream_config, segment_bounds, split_segments, \
    stream_value


@dataclass
class Segment:
    """One segment's loaders and facts; ``history`` is a RecBole dataset (graph models are built on it)."""

    index: int
    train_data: object
    valid_data: object
    test_data: object
    history: object
    split: SegmentSplit

    @property
    def users_seen(self):
        return int(self.split.seen_users.sum())

    @property
    def items_seen(self):
        return int(self.split.seen_items.sum())


def _rows(inter, rows):
    index = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))
    return Interaction({field: values[index] for field, values in inter.interaction.items()})


def stream_arrays(dataset):
    """``(users, items, times)`` of a RecBole dataset; a clear error when it has no time field."""
    if not isinstance(dataset.inter_feat, Interaction):
        dataset._change_feat_format()
    time_field = dataset.time_field
    if time_field is None or time_field not in dataset.inter_feat.interaction:
        raise ValueError(
            f"stream=True needs interaction times: TIME_FIELD={time_field!r} is not a loaded column of "
            f"dataset={dataset.dataset_name!r}; set TIME_FIELD and add it to load_col "
            "(e.g. load_col: {inter: [user_id, item_id, timestamp]})")
    if dataset.field2type[time_field] != FeatureType.FLOAT:
        raise ValueError(
            f"stream=True: TIME_FIELD={time_field!r} is a {dataset.field2type[time_field].value} field, so its values "
            "are ids in order of first appearance, not times; declare it as a number in the .inter header "
            f"({time_field}:float)")
    inter = dataset.inter_feat
    return (inter[dataset.uid_field].numpy(), inter[dataset.iid_field].numpy(),
            inter[time_field].numpy())


def stream_segments(config, dataset):
    """Yield a :class:`Segment` per stream segment of ``dataset`` (a RecBole ``Dataset`` from
    ``create_dataset``), cut as the ``stream_*`` keys say; loaders are built lazily."""
    key, value = check_stream_config(config)
    users, items, times = stream_arrays(dataset)
    order, bounds = segment_bounds(users, items, times, key, value)
    splits = split_segments(
        users, items, order, bounds, dataset.user_num, dataset.item_num,
        train_ratio=stream_value(config, "stream_train_ratio"),
        valid_share=stream_value(config, "stream_valid_share"),
        reservoir=stream_value(config, "stream_reservoir"), seed=config["seed"],
        split=stream_value(config, "stream_split"))
    inter = dataset.inter_feat
    for split in splits:
        for part in ("valid", "test"):
            if getattr(split, part).size == 0:
                raise ValueError(
                    f"stream segment {split.segment} has no {part} users seen in training "
                    f"({key}={value!r}, {len(bounds) - 1} segments): use fewer or larger segments, "
                    "or a smaller stream_train_ratio")
        history, train, valid, test = (dataset.copy(_rows(inter, getattr(split, part)))
                                       for part in ("history", "train", "valid", "test"))
        train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, [history, valid, test])
        yield Segment(
            index=split.segment,
            train_data=get_dataloader(config, "train")(config, train, train_sampler, shuffle=config["shuffle"]),
            valid_data=get_dataloader(config, "valid")(config, valid, valid_sampler, shuffle=False),
            test_data=get_dataloader(config, "test")(config, test, test_sampler, shuffle=False),
            history=history, split=split)

