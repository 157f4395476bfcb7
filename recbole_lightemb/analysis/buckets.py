"""Where compression hurts: test Recall@K by how often users and items appear in training.

A table can match another's mean recall while losing its tail users, or its tail items, entirely.
Users are ranked by training interactions into head (top 20 %), torso (next 30 %) and tail (last
50 %); items the same by popularity. User buckets report the mean per-user Recall@K (RecBole's
definition, so the three buckets average back to its figure, weighted by users); item buckets
report the share of a bucket's held-out interactions that reach the user's top K.
"""

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader

SHARES = (("head", 0.2), ("torso", 0.3), ("tail", 0.5))


def frequency_buckets(counts):
    """Bucket name of every id, by descending ``counts`` (ties by id); id 0, RecBole's padding, is ``None``."""
    ids = np.arange(1, len(counts))
    ranked = ids[np.lexsort((ids, -counts[1:]))]
    names = np.empty(len(counts), dtype=object)
    start = 0
    for k, (name, share) in enumerate(SHARES):
        stop = len(ranked) if k == len(SHARES) - 1 else start + int(round(share * len(ranked)))
        names[ranked[start:stop]] = name
        start = stop
    return names


@torch.no_grad()
def bucket_recall(trainer, eval_data, train_dataset, k=20):
    """``{"user": {bucket: recall}, "item": {bucket: recall}}`` of ``trainer.model`` on a full-sort
    ``eval_data``, buckets by frequency in ``train_dataset``; ``None`` for other evaluation modes."""
    if not isinstance(eval_data, FullSortEvalDataLoader):
        return None
    dataset = eval_data._dataset
    users = np.bincount(train_dataset.inter_feat[train_dataset.uid_field].numpy(), minlength=train_dataset.user_num)
    items = np.bincount(train_dataset.inter_feat[train_dataset.iid_field].numpy(), minlength=train_dataset.item_num)
    user_bucket, item_bucket = frequency_buckets(users), frequency_buckets(items)
    trainer.model.eval()
    trainer.tot_item_num = dataset.item_num
    user_recall, item_hits, item_total = {}, {}, {}
    for batch in eval_data:
        interaction, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batch)
        top = scores.topk(k, dim=-1).indices
        positive = torch.zeros_like(scores, dtype=torch.bool)
        positive[positive_u, positive_i] = True
        hit = positive.gather(1, top)
        recall = (hit.sum(1).float() / positive.sum(1).clamp(min=1)).cpu().numpy()
        for user, value in zip(interaction[dataset.uid_field].cpu().numpy(), recall):
            user_recall.setdefault(user_bucket[user], []).append(value)
        reached = torch.zeros_like(positive)
        reached.scatter_(1, top, True)
        found = reached[positive_u, positive_i].cpu().numpy()
        for item, got in zip(positive_i.cpu().numpy(), found):
            name = item_bucket[item]
            item_hits[name] = item_hits.get(name, 0) + int(got)
            item_total[name] = item_total.get(name, 0) + 1
    return {"k": k,
            "user": {name: float(np.mean(user_recall[name])) for name, _ in SHARES if name in user_recall},
            "user_count": {name: len(user_recall[name]) for name, _ in SHARES if name in user_recall},
            "item": {name: item_hits[name] / item_total[name] for name, _ in SHARES if name in item_total}}


def format_buckets(buckets):
    """One log line: users and items, head / torso / tail."""
    return "  ".join(f"{side} " + " ".join(f"{name} {value:.4f}" for name, value in buckets[side].items())
                     for side in ("user", "item"))
