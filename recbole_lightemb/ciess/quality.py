"""Per-entity quality for CIESS: each user's Recall/NDCG on held-out data, each item's via its users.

``q_u`` = mean of Recall@k and NDCG@k (k in ``ks``, paper: 5, 10, 20) from RecBole's full-sort
ranking of the validation data (history masked exactly as RecBole's evaluator masks it).
``q_i`` = mean ``q_u`` over the users who interacted with ``i`` in training: one sparse
matrix product. Users RecBole does not evaluate (no validation items) and items without
training users get quality 0: nothing is known of them, so only the memory term of the
reward speaks for them.
"""

import numpy as np
import scipy.sparse as sp
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import set_color
from tqdm import tqdm


def ranking_quality(hits, n_pos, ks):
    """Per-row mean of Recall@k and NDCG@k over ``ks``.

    ``hits``: ``(B, max(ks))`` 0/1 tensor, whether the item ranked ``j`` is a positive;
    ``n_pos``: ``(B,)`` number of positives per row (RecBole's ``pos_len``).
    """
    hits = hits.float()
    kmax = max(ks)
    discount = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float32, device=hits.device))
    ideal = torch.cumsum(discount, 0)
    n_pos = n_pos.float().clamp(min=1)
    metrics = []
    for k in ks:
        metrics.append(hits[:, :k].sum(1) / n_pos)
        dcg = (hits[:, :k] * discount[:k]).sum(1)
        metrics.append(dcg / ideal[torch.clamp(n_pos.long(), max=k) - 1])
    return torch.stack(metrics, 1).mean(1)


@torch.no_grad()
def user_quality(trainer, valid_data, ks, show_progress=False):
    """``(n_users,)`` quality of every user id under the trainer's current model."""
    if not isinstance(valid_data, FullSortEvalDataLoader):
        raise ValueError("emb=ciess measures per-user quality by full ranking: set eval_args "
                         "mode to 'full' for validation (got a sampled evaluation loader)")
    model = trainer.model
    model.eval()
    dataset = valid_data._dataset
    trainer.tot_item_num = dataset.item_num
    if trainer.item_tensor is None:
        trainer.item_tensor = dataset.get_item_feature().to(trainer.device)
    uid_field = trainer.config["USER_ID_FIELD"]
    quality = torch.zeros(dataset.user_num)
    batches = valid_data
    if show_progress:
        batches = tqdm(valid_data, total=len(valid_data), ncols=100, desc=set_color("CIESS quality", "pink"))
    for batch in batches:
        interaction, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batch)
        positives = torch.zeros_like(scores, dtype=torch.bool)
        positives[positive_u, positive_i] = True
        top = scores.topk(max(ks), dim=1).indices
        q = ranking_quality(positives.gather(1, top), positives.sum(1), ks)
        quality[interaction[uid_field].cpu()] = q.cpu()
    return quality.numpy()


def item_quality(user_q, interactions):
    """``(n_items,)`` mean quality of each item's users; ``interactions`` is the ``n_users × n_items``
    training matrix (any scipy sparse form)."""
    binary = (sp.csr_matrix(interactions) > 0).astype(np.float64)
    users_per_item = np.asarray(binary.sum(0)).ravel()
    total = binary.T @ np.asarray(user_q, dtype=np.float64)
    return np.divide(total, users_per_item, out=np.zeros_like(total), where=users_per_item > 0)
