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
from recbole_lightemb.stream.planners import StreamPlanner

PADDING_ID = 0  # RecBole reserves id 0 of users and items for [PAD]: it never interacts
COLD_ROWS = 2  # one shared row per side for entities without training interactions


def codebook_bytes(tables, n_codes, codes_per_entity):
    """Stored bytes of codebook tables: rows of floats plus each entity's int32 codes."""
    return sum(
        n_codes[s.role] * s.embedding_dim * FLOAT_BYTES + s.num_embeddings * codes_per_entity[s.role] * CODE_BYTES
        for s in tables
    )


def codes_per_entity(secondary):
    """int32 codes each user and item stores: users two when they may take a secondary code."""
    return {"user": 2 if secondary else 1, "item": 1}


def rows_within(tables, row_bytes_budget, key, value):
    """Most user+item codebook rows that fit ``row_bytes_budget`` bytes with the two cold rows, counting
    each row at the widest side's bytes so the count is safe whichever side the rows land on."""
    row_bytes = max(sum(s.embedding_dim for s in tables if s.role == role) for role in ("user", "item"))
    max_codes = int(row_bytes_budget // (row_bytes * FLOAT_BYTES)) - COLD_ROWS
    if max_codes < 2:
        raise ValueError(f"{key}={value!r} leaves no room for BACO codebook rows (after the codes' own bytes "
                         "and one cold row per side): raise it")
    return max_codes


def rows_for_budget(tables, budget, secondary):
    """Codebook rows ``emb_budget=budget`` pays for: its share of the full tables' bytes less every
    entity's codes, over one row's bytes."""
    code_bytes = codebook_bytes(tables, {"user": 0, "item": 0}, codes_per_entity(secondary))
    return rows_within(tables, budget * full_bytes(tables) - code_bytes, "emb_budget", budget)


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
        budget = self.config["emb_budget"]
        if budget is None:
            return self.plan_rows(dataset, tables, None)
        plan = self.plan_rows(dataset, tables, rows_for_budget(tables, budget, bool(self.config["baco_secondary"])))
        if plan.meta["stored_bytes"] > budget * full_bytes(tables):
            raise AssertionError(f"BACO plan of {plan.meta['stored_bytes']} bytes is over the budget")  # rows_within
        return plan

    def plan_rows(self, dataset, tables, max_codes):
        """Co-cluster ``dataset``'s interaction graph into at most ``max_codes`` rows plus one cold row
        per side (γ searched), or at ``baco_resolution`` when ``max_codes`` is None."""
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
        options = dict(n_iter=self.config["baco_n_iter"], user_weight=self.config["baco_user_weight"],
                       item_weight=self.config["baco_item_weight"], seed=self.config["seed"], secondary=secondary)
        if max_codes is None:
            result, probes = co_cluster(graph, self.config["baco_resolution"], **options), ()
        else:
            result, probes = fit_codebook_budget(graph, max_codes, resolution=self.config["baco_resolution"],
                                                 **options)
        user_codes, n_user = _with_cold_code(result.user_codes, active_users, result.n_user_codes)
        item_codes, n_item = _with_cold_code(result.item_codes[:, None], active_items, result.n_item_codes)
        n_codes = {"user": n_user, "item": n_item}
        stored = codebook_bytes(tables, n_codes, codes_per_entity(secondary))
        getLogger().info(set_color("BACO", "pink") + f": resolution={result.resolution:.5g}, user rows={n_user}, "
                         f"item rows={n_item}, passes={result.passes}, probes={len(probes)}, "
                         f"objective={result.objective:.5g}")
        return Plan(self.name, {"user_codes": user_codes, "item_codes": item_codes}, {
            "resolution": result.resolution, "objective": result.objective, "passes": result.passes,
            "n_user_codes": n_user, "n_item_codes": n_item, "probes": [list(p) for p in probes],
            "stored_bytes": stored,
        })

    def stream_planner(self):
        return BacoStream(self, self.config)

    def build(self, spec, table, plan):
        generator = torch.Generator().manual_seed(self.config["seed"])
        return CodebookEmbedding(plan[f"{spec.role}_codes"], plan.meta[f"n_{spec.role}_codes"], spec.embedding_dim,
                                 padding_idx=spec.padding_idx, init_from=table.weight, generator=generator)


class BacoStream(StreamPlanner):
    """BACO on a stream: re-cluster each segment's history into the rows ``emb_budget`` of the *seen*
    entities' full floats allows (as ``uniform`` gives every seen entity ``emb_budget · d``), so the
    two are compared at equal floats; the codes' bytes are reported on top."""

    def budget_floats(self, segment, tables_per_side):
        budget = self.config["emb_budget"]
        if budget is None:
            return None
        return int(budget * self.config["embedding_size"] * (segment.users_seen + segment.items_seen)
                   * tables_per_side)

    def plan(self, segment, specs, search=None):
        tables_per_side = max(sum(s.role == "user" for s in specs), 1)
        floats = self.budget_floats(segment, tables_per_side)
        max_codes = None if floats is None else rows_within(specs, floats * FLOAT_BYTES, "emb_budget",
                                                             self.config["emb_budget"])
        return self.method.plan_rows(segment.history, specs, max_codes)
