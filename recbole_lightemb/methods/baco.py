"""``emb: baco``: users and items close in the training graph share codebook rows (BACO, SIGIR'26)."""

from logging import getLogger

import numpy as np
import torch
from recbole.utils import set_color

from recbole_lightemb.budget import check_fraction, full_bytes
from recbole_lightemb.coclustering import WEIGHT_SCHEMES, co_cluster, fit_codebook_budget
from recbole_lightemb.modules import FLOAT_BYTES, CodebookEmbedding
from recbole_lightemb.modules.codebook import CODE_BYTES
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method

PADDING_ID = 0  # RecBole reserves id 0 of users and items for [PAD]: it never interacts


def codebook_bytes(tables, n_codes, codes_per_entity):
    """Stored bytes of codebook tables: rows of floats plus each entity's int32 codes."""
    return sum(
        n_codes[s.role] * s.embedding_dim * FLOAT_BYTES + s.num_embeddings * codes_per_entity[s.role] * CODE_BYTES
        for s in tables
    )


def _with_cold_code(codes, active, n_codes):
    """Entities without training interactions share one extra "cold" row; the padding id gets none."""
    full = np.full((len(active),) + codes.shape[1:], -1, dtype=np.int32)
    full[active] = codes
    cold = ~active
    cold[PADDING_ID] = False
    if cold.any():
        full[cold, 0] = n_codes
        n_codes += 1
    return full, n_codes


@register_method("baco")
class BACO(EmbeddingMethod):
    """Balanced co-clustering of the training graph; γ found for ``emb_budget`` unless
    ``baco_resolution`` is given. The plan is checked against the budget in stored bytes."""

    def check_config(self):
        budget = check_fraction(self.config, "emb_budget")
        resolution = self.config["baco_resolution"]
        if budget is None and resolution is None:
            raise ValueError("emb=baco needs emb_budget (fraction of the full embedding memory in (0, 1]) "
                             "or baco_resolution (γ > 0)")
        if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, (int, float))
                                       or resolution <= 0):
            raise ValueError(f"baco_resolution={resolution!r}: expected a number > 0")
        for key in ("baco_user_weight", "baco_item_weight"):
            if self.config[key] not in WEIGHT_SCHEMES:
                raise ValueError(f"{key}={self.config[key]!r}: allowed {', '.join(WEIGHT_SCHEMES)}")
        n_iter = self.config["baco_n_iter"]
        if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
            raise ValueError(f"baco_n_iter={n_iter!r}: expected an integer >= 1")

    def plan(self, dataset, tables):
        roles = {s.role for s in tables}
        if roles != {"user", "item"}:
            raise ValueError(f"emb=baco co-clusters users with items and needs both tables; model={self.config['model']} "
                             f"has only {sorted(roles)} tables: use emb=hash, qr or uniform for it")
        graph = dataset.inter_matrix(form="csr").astype(np.float32)
        graph.data[:] = 1
        active_users = np.diff(graph.indptr) > 0
        active_items = np.bincount(graph.indices, minlength=graph.shape[1]) > 0
        graph = graph[active_users][:, active_items].tocsr()
        secondary = bool(self.config["baco_secondary"])
        per_entity = {"user": 2 if secondary else 1, "item": 1}
        options = dict(n_iter=self.config["baco_n_iter"], user_weight=self.config["baco_user_weight"],
                       item_weight=self.config["baco_item_weight"], seed=self.config["seed"], secondary=secondary)

        budget = self.config["emb_budget"]
        if budget is None:
            result, probes = co_cluster(graph, self.config["baco_resolution"], **options), ()
        else:
            budget_bytes = budget * full_bytes(tables)
            max_codes = self._max_codes(tables, budget_bytes, per_entity, cold_rows=2)
            result, probes = fit_codebook_budget(graph, max_codes, resolution=self.config["baco_resolution"],
                                                 **options)
        user_codes, n_user = _with_cold_code(result.user_codes, active_users, result.n_user_codes)
        item_codes, n_item = _with_cold_code(result.item_codes[:, None], active_items, result.n_item_codes)
        n_codes = {"user": n_user, "item": n_item}
        stored = codebook_bytes(tables, n_codes, per_entity)
        if budget is not None and stored > budget * full_bytes(tables):
            raise AssertionError(f"BACO plan of {stored} bytes is over the budget")  # _max_codes guarantees not
        getLogger().info(set_color("BACO", "pink") + f": resolution={result.resolution:.5g}, user rows={n_user}, "
                         f"item rows={n_item}, passes={result.passes}, probes={len(probes)}, "
                         f"objective={result.objective:.5g}")
        return Plan(self.name, {"user_codes": user_codes, "item_codes": item_codes}, {
            "resolution": result.resolution, "objective": result.objective, "passes": result.passes,
            "n_user_codes": n_user, "n_item_codes": n_item, "probes": [list(p) for p in probes],
            "stored_bytes": stored,
        })

    @staticmethod
    def _max_codes(tables, budget_bytes, per_entity, cold_rows):
        """Most user+item rows that fit: the budget less the codes' bytes, over the bytes of one row
        (the widest side's, so the count is safe whichever side the rows land on)."""
        code_bytes = codebook_bytes(tables, {"user": 0, "item": 0}, per_entity)
        row_bytes = max(sum(s.embedding_dim for s in tables if s.role == role) for role in ("user", "item"))
        max_codes = int((budget_bytes - code_bytes) // (row_bytes * FLOAT_BYTES)) - cold_rows
        if max_codes < 2:
            raise ValueError(f"emb_budget={budget_bytes / full_bytes(tables):.4g} leaves no room for codebook "
                             "rows after the codes' own bytes: raise emb_budget")
        return max_codes

    def build(self, spec, table, plan):
        generator = torch.Generator().manual_seed(self.config["seed"])
        return CodebookEmbedding(plan[f"{spec.role}_codes"], plan.meta[f"n_{spec.role}_codes"], spec.embedding_dim,
                                 padding_idx=spec.padding_idx, init_from=table.weight, generator=generator)
