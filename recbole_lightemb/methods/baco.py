"""``emb: baco``: users and items close in the training graph share codebook rows (BACO, SIGIR'26)."""

import heapq
import math
from logging import getLogger

import numpy as np
import torch
from recbole.utils import set_color

from recbole_lightemb.budget import check_fraction, full_bytes
from recbole_lightemb.baco.coclustering import WEIGHT_MODES, WEIGHT_SCHEMES, co_cluster, fit_codebook_budget
from recbole_lightemb.config import model_width
from recbole_lightemb.methods.quantized import BITS as QUANT_BITS
from recbole_lightemb.methods.precision import (apply_bits, master_free_of, planned_precision, precision_meta,
                                                precision_of, shared_row_frequency, training_counts)
from recbole_lightemb.modules import FLOAT_BYTES, CodebookEmbedding
from recbole_lightemb.modules.codebook import CODE_BYTES
from recbole_lightemb.modules.precision import FLOAT_BITS, class_counts, ladder, row_bits, row_bytes
from recbole_lightemb.modules.quantized import class_bytes, rows_bytes
from recbole_lightemb.modules.residual import ResidualEmbedding
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method
from recbole_lightemb.stream.planners import StreamPlanner

PADDING_ID = 0  # RecBole reserves id 0 of users and items for [PAD]: it never interacts
COLD_ROWS = 2  # one shared row per side for entities without training interactions
MIN_CODES = 2
"""The fewest codebook rows besides the cold ones that a plan may have."""
RESIDUAL_BITS = (*QUANT_BITS, FLOAT_BITS)  # private values: quantized as emb=quant stores them, or float32
BUDGET_RULES = ("bytes", "authors")
"""How a budget becomes codebook rows: ``bytes``, every stored byte counted (rows and codes); ``authors``,
the authors' ``K = (B·w − n_u) // w`` rows for a budget of ``B`` full rows (``train.py``), codes not charged."""


def codebook_bytes(tables, n_codes, codes_per_entity, bits=FLOAT_BITS):
    """Stored bytes of codebook tables: rows (float32, or ``bits``-bit values and a float32 scale each) plus each
    entity's int32 codes."""
    return sum(
        n_codes[s.role] * int(row_bytes(s.embedding_dim, bits)) + s.num_embeddings * codes_per_entity[s.role] * CODE_BYTES
        for s in tables
    )


def codes_per_entity(secondary):
    """int32 codes each user and item stores: users two when they may take a secondary code."""
    return {"user": 2 if secondary else 1, "item": 1}


def row_width(tables):
    """Floats of one codebook row, counted at the widest side (a side's tables together), so a row count is
    safe whichever side the rows land on."""
    return max(sum(s.embedding_dim for s in tables if s.role == role) for role in ("user", "item"))


def codebook_row_bytes(tables, bits=FLOAT_BITS):
    """Bytes of one codebook row at ``bits``, counted at the side whose tables take most, so a row count is
    safe whichever side the rows land on."""
    return max(sum(int(row_bytes(s.embedding_dim, bits)) for s in tables if s.role == role) for role in ("user", "item"))


def codebook_rows_bytes(tables, n_rows, bits=FLOAT_BITS, policy="fixed"):
    """Bytes that ``n_rows`` codebook rows in all (both sides, the cold rows included) may cost: under
    ``emb_bits_policy: frequency`` each class of rows (head, torso, tail of each side's rows) at its bits and the
    per-row bit classes, with room for how the two sides' rounding of the classes may differ from the whole's."""
    if policy == "fixed":
        return n_rows * codebook_row_bytes(tables, bits)
    tables_per_side = max(sum(s.role == role for s in tables) for role in ("user", "item"))
    classes = sum(c * codebook_row_bytes(tables, b) for c, b in zip(class_counts(n_rows), ladder(bits)))
    split = 2 * (codebook_row_bytes(tables, ladder(bits)[0]) - codebook_row_bytes(tables, ladder(bits)[2]))
    return classes + split + 2 * tables_per_side * class_bytes(n_rows + 4, True)


def most_codebook_rows(tables, max_bytes, bits=FLOAT_BITS, policy="fixed"):
    """The most codebook rows (both sides, the cold rows included) whose :func:`codebook_rows_bytes` fit."""
    low, high = 0, int(max_bytes // codebook_row_bytes(tables, ladder(bits)[2])) + 1
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if codebook_rows_bytes(tables, mid, bits, policy) <= max_bytes else (low, mid)
    return low


def per_row_bits(codes, counts, n_codes, bits, policy):
    """Bits of each codebook row of one side by the training interactions of the entities that read it."""
    valid = codes >= 0
    frequency = shared_row_frequency(codes[valid], np.broadcast_to(counts[:, None], codes.shape)[valid], n_codes)
    return row_bits(frequency, bits, policy).astype(np.uint8)


def rows_within(tables, row_bytes_budget, key, value, bits=FLOAT_BITS, per_byte=None):
    """Most user+item codebook rows that fit ``row_bytes_budget`` bytes with the two cold rows; too few is
    refused, naming the smallest ``key`` that fits when ``per_byte`` (``key``'s value per byte) is given."""
    max_codes = int(row_bytes_budget // codebook_row_bytes(tables, bits)) - COLD_ROWS
    if max_codes < MIN_CODES:
        short = (COLD_ROWS + MIN_CODES) * codebook_row_bytes(tables, bits) - row_bytes_budget  # bytes missing
        least = "" if per_byte is None else f" to at least {_rounded_up(value + short * per_byte)}"
        raise ValueError(f"{key}={value!r} leaves no room for BACO codebook rows (after the codes' own bytes "
                         f"and one cold row per side): raise it{least}")
    return max_codes


def _rounded_up(value, digits=4):
    """``value`` rounded up to ``digits`` significant digits, so the budget named is one that fits."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return math.ceil(value * scale) / scale


def residual_bytes(tables, width, bits=FLOAT_BITS):
    """Bytes of every entity's private ``width``-wide residual row (``bits`` per value)."""
    return sum(s.num_embeddings for s in tables) * int(row_bytes(width, bits))


def widest_residual(tables, spare_bytes, bits, cap):
    """The widest residual, at most ``cap``, whose rows for every entity fit ``spare_bytes`` (0 if none)."""
    width = cap
    while width > 0 and residual_bytes(tables, width, bits) > spare_bytes:
        width -= 1
    return width


def rows_for_budget(tables, budget, secondary, residual=0, bits=FLOAT_BITS):
    """Codebook rows ``emb_budget=budget`` pays for: its share of the full tables' bytes less every
    entity's codes and private residual, over one row's bytes."""
    return rows_within(tables, budget * full_bytes(tables) - spent_bytes(tables, secondary, residual, bits),
                       "emb_budget", budget, bits, per_byte=1 / full_bytes(tables))


def spent_bytes(tables, secondary, residual=0, bits=FLOAT_BITS):
    """Bytes every entity stores whatever the row count: its codes and its private residual."""
    return codebook_bytes(tables, {"user": 0, "item": 0}, codes_per_entity(secondary)) + \
        residual_bytes(tables, residual, bits)


def authors_rows(tables, row_budget):
    """The authors' codebook rows for a budget of ``row_budget`` full rows: ``(B·w − n_u) // w`` (their
    ``train.py``: one float per user is charged, for its secondary code; no code is charged)."""
    width = row_width(tables)
    n_users = next((s.num_embeddings for s in tables if s.role == "user"), 0)
    return (row_budget * width - n_users) // width


def split_largest(codes, n_codes, extra_rows, order_key):
    """Spend ``extra_rows`` spare codebook rows by halving the most crowded code, again and again.

    The γ search stops at the first labelling within the row budget, and label counts jump between
    passes, so it often lands far below the budget with one code holding most of a side (on ml-100k
    at 25 %: every user in one code, i.e. one vector for all users). Halves keep members that are
    adjacent in ``order_key`` (the secondary code, then the id) together. ``codes`` is changed in place.
    """
    members = {c: np.flatnonzero(codes == c) for c in range(n_codes)}
    heap = [(-len(m), c) for c, m in members.items() if len(m) > 1]
    heapq.heapify(heap)
    for _ in range(extra_rows):
        if not heap:
            break
        _, code = heapq.heappop(heap)
        group = members[code][np.lexsort((members[code], order_key[members[code]]))]
        keep, moved = group[: len(group) // 2], group[len(group) // 2:]
        codes[moved] = n_codes
        members[code], members[n_codes] = keep, moved
        for c in (code, n_codes):
            if len(members[c]) > 1:
                heapq.heappush(heap, (-len(members[c]), c))
        n_codes += 1
    return n_codes


def private_head(codes, n_codes, degrees, n_head):
    """The ``n_head`` most-interacted entities (by ``degrees``) get codes of their own (both of a user's
    codes: its vector is its private row); codes left without members are dropped and the rest renumbered.
    Returns the codes and their count."""
    if n_head == 0:
        return codes, n_codes
    head = np.argsort(-degrees, kind="stable")[:n_head]
    codes = codes.copy()
    own = n_codes + np.arange(n_head)
    codes[head] = own[:, None] if codes.ndim == 2 else own
    held = codes >= 0  # -1: a user without a secondary code
    used, renumbered = np.unique(codes[held], return_inverse=True)
    codes[held] = renumbered
    return codes.astype(np.int32), len(used)


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
    """Balanced co-clustering of the training graph. The budget (``emb_budget``, or ``baco_rows`` full rows)
    becomes codebook rows by ``baco_budget_rule``: ``bytes`` (default) holds the stored bytes, codes counted;
    ``authors`` allows the authors' row count, codes not charged. Both counts, and the honest bytes, are in the
    plan's meta whichever rule picked the rows. γ is searched for the rows (from ``baco_resolution`` when
    given), or with ``baco_search: False`` used as given, the rows only stopping the passes early (the
    authors' procedure, which may end above them: said and recorded, ``within_rows``)."""

    precision = True  # the codebook rows at emb_bits (fixed policy), the private rows at baco_residual_bits
    bits_keys = ("emb_bits", "baco_residual_bits")  # low-bit rows emb_master_free trains

    def check_config(self):
        budget = check_fraction(self.config, "emb_budget")
        bits, policy = precision_of(self.config)
        if (bits != FLOAT_BITS or policy != "fixed") and (self.config["baco_budget_rule"] != "bytes"
                                                          or self.config["stream"]):
            raise ValueError(f"emb_bits={bits!r}, emb_bits_policy={policy!r} with emb=baco, baco_budget_rule="
                             f"{self.config['baco_budget_rule']!r}, stream={self.config['stream']!r}: allowed "
                             "emb_bits below 32 or emb_bits_policy=frequency only with baco_budget_rule=bytes (the "
                             "authors' rule counts float rows) outside a stream")
        rows = self.config["baco_rows"]
        resolution = self.config["baco_resolution"]
        if budget is None and rows is None and resolution is None:
            raise ValueError("emb=baco needs emb_budget (fraction of the full embedding memory in (0, 1]), "
                             "baco_rows (a budget of that many full rows) or baco_resolution (γ > 0)")
        if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, (int, float))
                                       or resolution <= 0):
            raise ValueError(f"baco_resolution={resolution!r}: expected a number > 0")
        if self.config["baco_mode"] not in WEIGHT_MODES:
            raise ValueError(f"baco_mode={self.config['baco_mode']!r}: allowed {', '.join(WEIGHT_MODES)} (paper: "
                             "items weighted as the authors' code does; stated: as the paper's text states)")
        rule = self.config["baco_budget_rule"]
        if rule not in BUDGET_RULES:
            raise ValueError(f"baco_budget_rule={rule!r}: allowed {', '.join(BUDGET_RULES)}")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise ValueError(f"baco_rows={rows!r}: expected an integer >= 1 (a budget of that many full rows)")
        if rows is not None and budget is not None:
            raise ValueError(f"baco_rows={rows!r} and emb_budget={budget!r}: give one budget, not both")
        if rule == "authors" and rows is None and budget is None:
            raise ValueError("baco_budget_rule='authors' needs a budget: baco_rows (the authors' row budget, e.g. "
                             "9000 on Beauty) or emb_budget")
        if self.config["stream"] and (rule != "bytes" or rows is not None):
            raise ValueError(f"baco_budget_rule={rule!r}, baco_rows={rows!r}: not supported with stream=True (a "
                             "stream budgets the seen entities' floats); use emb_budget and baco_budget_rule: bytes")
        if not isinstance(self.config["baco_search"], bool):
            raise ValueError(f"baco_search={self.config['baco_search']!r}: expected True or False")
        if not self.config["baco_search"] and resolution is None:
            raise ValueError("baco_search=False uses γ as given: it needs baco_resolution (e.g. 0.1308, the authors' "
                             "γ on Beauty)")
        if rule == "authors" and self.config["baco_residual"]:
            raise ValueError(f"baco_residual={self.config['baco_residual']!r} needs baco_budget_rule: bytes (the "
                             "private rows are paid from the bytes the codebook leaves; the authors' rule has none)")
        for key in ("baco_user_weight", "baco_item_weight"):
            if self.config[key] not in WEIGHT_SCHEMES:
                raise ValueError(f"{key}={self.config[key]!r}: allowed {', '.join(WEIGHT_SCHEMES)}")
        n_iter = self.config["baco_n_iter"]
        if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
            raise ValueError(f"baco_n_iter={n_iter!r}: expected an integer >= 1")
        residual, dim = self.config["baco_residual"], model_width(self.config)
        if isinstance(residual, bool) or not isinstance(residual, int) or residual < 0 or (
                isinstance(dim, int) and residual >= dim):
            raise ValueError(f"baco_residual={residual!r}: expected an integer in 0..{dim - 1 if isinstance(dim, int) else 'd-1'} "
                             "(private floats per entity added to its shared row; 0 = none)")
        bits = self.config["baco_residual_bits"]
        if bits not in RESIDUAL_BITS or isinstance(bits, bool):
            raise ValueError(f"baco_residual_bits={bits!r}: allowed {', '.join(map(str, RESIDUAL_BITS))} "
                             "(bits per private value; 32 = float32)")
        if bits != FLOAT_BITS and not residual:
            raise ValueError(f"baco_residual_bits={bits!r} needs private rows to store: set baco_residual >= 1, "
                             "or leave baco_residual_bits at 32")
        if not isinstance(self.config["baco_split"], bool):
            raise ValueError(f"baco_split={self.config['baco_split']!r}: expected True or False")
        head = self.config["baco_head_share"]
        if isinstance(head, bool) or not isinstance(head, (int, float)) or not 0 <= head < 1:
            raise ValueError(f"baco_head_share={head!r}: expected a number in [0, 1) (the share of the most-"
                             "interacted users and items that keep private rows; 0 = none)")
        if residual and self.config["stream"]:
            raise ValueError(f"baco_residual={residual!r}: not supported with stream=True (streams re-cluster "
                             "into the seen entities' floats); use baco_residual: 0")

    def plan(self, dataset, tables):
        residual, residual_bits = self.config["baco_residual"], self.config["baco_residual_bits"]
        bits, policy = precision_of(self.config)
        secondary, rule = bool(self.config["baco_secondary"]), self.config["baco_budget_rule"]
        budget_bytes, allowed = self.budget_bytes(tables), None
        if budget_bytes is not None:  # rows in all, the cold rows included, under each rule
            unspent = budget_bytes - spent_bytes(tables, secondary, residual, residual_bits)
            allowed = {"bytes": most_codebook_rows(tables, unspent, bits, policy),
                       "authors": max(authors_rows(tables, self.row_budget(tables)), 0)}
            if allowed[rule] - COLD_ROWS < MIN_CODES:
                key = "emb_budget" if self.config["baco_rows"] is None else "baco_rows"
                raise ValueError(f"{key}={self.config[key]!r} leaves no room for BACO codebook rows under "
                                 f"baco_budget_rule={rule!r} (after one cold row per side"
                                 + (" and the codes' own bytes" if rule == "bytes" else "") + "): raise it to at "
                                 f"least {self._smallest_budget(tables, rule, budget_bytes - unspent, bits, policy)}")
        max_codes = None if allowed is None else allowed[rule] - COLD_ROWS
        plan = self.plan_rows(dataset, tables, max_codes, bits, policy)
        within_rows = None if allowed is None else plan.meta["rows"] <= allowed[rule]
        if within_rows is False:  # only γ used as given (baco_search: False) can end above the rows
            getLogger().warning(f"baco_resolution={self.config['baco_resolution']!r}, baco_search=False: after "
                                f"{plan.meta['passes']} passes the clustering holds {plan.meta['rows']} rows, over the "
                                f"{allowed[rule]} baco_budget_rule={rule!r} allows (the authors' code goes on with "
                                "them, and so does this run; the plan records within_rows: False)")
        if residual and budget_bytes is not None:  # the clustering may leave bytes unused: widen the residual
            spare = budget_bytes - plan.meta["stored_bytes"]
            dim = min(s.embedding_dim for s in tables)
            residual = max(residual, widest_residual(tables, spare, residual_bits, dim - 1))
        plan.meta["residual"], plan.meta["residual_bits"] = residual, residual_bits
        plan.meta["stored_bytes"] += residual_bytes(tables, residual, residual_bits)
        plan.meta.update(precision_meta(bits, policy))
        plan.meta.update(mode=self.config["baco_mode"], budget_rule=rule, row_budget=self.row_budget(tables),
                         max_rows=allowed, within_rows=within_rows, within_bytes=None if budget_bytes is None
                         else plan.meta["stored_bytes"] <= budget_bytes)
        if rule == "bytes" and within_rows and not plan.meta["within_bytes"]:
            raise AssertionError(f"BACO plan of {plan.meta['stored_bytes']} bytes is over the budget")  # rows_within
        if rule == "authors":
            getLogger().info(f"BACO under baco_budget_rule='authors': {plan.meta['rows']} rows of the "
                             f"{allowed['authors']} it allows (the byte budget, codes counted, allows "
                             f"{allowed['bytes']}); stored {plan.meta['stored_bytes']} bytes = "
                             f"{plan.meta['stored_bytes'] / full_bytes(tables):.4f} of full, codes included")
        if budget_bytes is None and plan.meta["stored_bytes"] > full_bytes(tables):
            getLogger().warning(f"baco_resolution={self.config['baco_resolution']!r} gives "
                                f"{plan.meta['stored_bytes'] / full_bytes(tables):.4f} of the full tables' bytes: "
                                "more than storing them uncompressed; lower it or give emb_budget")
        return plan

    def row_budget(self, tables):
        """The budget in full rows, ``B`` of the authors' rule: ``baco_rows``, or ``emb_budget`` of the full
        tables' floats over one row's floats (rounded down); None without a budget."""
        if self.config["baco_rows"] is not None:
            return self.config["baco_rows"]
        budget = self.config["emb_budget"]
        return None if budget is None else int(budget * full_bytes(tables) // (row_width(tables) * FLOAT_BYTES))

    def _smallest_budget(self, tables, rule, spent, bits, policy):
        """The smallest ``baco_rows`` (or ``emb_budget``) that leaves :data:`MIN_CODES` rows besides the cold ones:
        under ``bytes`` every entity's codes and residual (``spent``) plus those rows' bytes; under ``authors``
        ``B`` full rows with ``(B·w − n_u) // w`` of them left."""
        width, rows = row_width(tables), COLD_ROWS + MIN_CODES
        if rule == "authors":
            n_users = next((s.num_embeddings for s in tables if s.role == "user"), 0)
            least_bytes = (rows + -(-n_users // width)) * width * FLOAT_BYTES
        else:
            least_bytes = spent + codebook_rows_bytes(tables, rows, bits, policy)
        if self.config["baco_rows"] is not None:
            return int(-(-least_bytes // (width * FLOAT_BYTES)))
        return _rounded_up(least_bytes / full_bytes(tables))

    def budget_bytes(self, tables):
        """The budget in stored bytes: ``emb_budget`` of the full tables', or ``baco_rows`` full rows'."""
        if self.config["baco_rows"] is not None:
            return self.config["baco_rows"] * row_width(tables) * FLOAT_BYTES
        budget = self.config["emb_budget"]
        return None if budget is None else budget * full_bytes(tables)

    def plan_rows(self, dataset, tables, max_codes, bits=FLOAT_BITS, policy="fixed"):
        """Co-cluster ``dataset``'s interaction graph into at most ``max_codes`` rows plus one cold row
        per side (γ searched), or at ``baco_resolution`` when ``max_codes`` is None or ``baco_search`` is False
        (``max_codes`` then only stops the passes early, as in the authors' code). A model with one
        side's table only (item-only sequential models) still clusters the whole user–item graph and
        keeps that side's codes, splitting its most crowded codes into the rows the other side would use."""
        roles = {s.role for s in tables}
        graph = dataset.inter_matrix(form="csr").astype(np.float32)
        graph.data[:] = 1
        active_users = np.diff(graph.indptr) > 0
        active_items = np.bincount(graph.indices, minlength=graph.shape[1]) > 0
        graph = graph[active_users][:, active_items].tocsr()
        secondary = bool(self.config["baco_secondary"])
        degrees = {"user": np.diff(graph.indptr), "item": np.bincount(graph.indices, minlength=graph.shape[1])}
        share = self.config["baco_head_share"] or 0.0
        n_head = {role: int(round(share * len(degrees[role]))) if role in roles else 0 for role in degrees}
        if max_codes is not None and sum(n_head.values()):
            if max_codes - sum(n_head.values()) < 2:
                raise ValueError(f"baco_head_share={share!r}: its {sum(n_head.values())} private rows leave fewer "
                                 f"than 2 of the {max_codes} codebook rows the budget pays for to share: lower it")
            max_codes -= sum(n_head.values())
        options = dict(n_iter=self.config["baco_n_iter"], user_weight=self.config["baco_user_weight"],
                       item_weight=self.config["baco_item_weight"], mode=self.config["baco_mode"],
                       seed=self.config["seed"], secondary=secondary)
        if max_codes is None or not self.config["baco_search"]:
            result = co_cluster(graph, self.config["baco_resolution"], max_codes=max_codes, **options)
            probes = ()
        else:
            result, probes = fit_codebook_budget(graph, max_codes, resolution=self.config["baco_resolution"],
                                                 **options)
        n_user, n_item = result.n_user_codes, result.n_item_codes
        user_codes, item_codes = result.user_codes.copy(), result.item_codes.copy()
        if max_codes is not None and roles == {"item"}:  # an item-only model (SASRec, …) stores no user rows:
            n_item = split_largest(item_codes, n_item, max_codes - n_item, np.zeros(len(item_codes), int))
        elif max_codes is not None and roles == {"user"}:  # the whole row budget goes to the stored side
            n_user = split_largest(user_codes[:, 0], n_user, max_codes - n_user, user_codes[:, 1])
        elif max_codes is not None and self.config["baco_split"]:
            spare = max_codes - n_user - n_item
            n_user = split_largest(user_codes[:, 0], n_user, spare // 2 + spare % 2, user_codes[:, 1])
            n_item = split_largest(item_codes, n_item, max_codes - n_user - n_item, np.zeros(len(item_codes), int))
        user_codes, n_user = private_head(user_codes, n_user, degrees["user"], n_head["user"])
        item_codes, n_item = private_head(item_codes, n_item, degrees["item"], n_head["item"])
        user_codes, n_user = _with_cold_code(user_codes if secondary else user_codes[:, :1], active_users, n_user)
        item_codes, n_item = _with_cold_code(item_codes[:, None], active_items, n_item)
        n_codes = {"user": n_user, "item": n_item}
        arrays = {"user_codes": user_codes, "item_codes": item_codes}
        stored = codebook_bytes(tables, n_codes, codes_per_entity(secondary), bits)
        if policy != "fixed":  # each row's bits by the interactions of the entities reading it
            counts = training_counts(dataset)
            for role in n_codes:
                arrays[f"{role}_bits"] = per_row_bits(arrays[f"{role}_codes"], counts[role], n_codes[role], bits, policy)
            stored = spent_bytes(tables, secondary) + sum(  # the codes, and the rows at their bits
                rows_bytes(s.embedding_dim, arrays[f"{s.role}_bits"], True) for s in tables)
        getLogger().info(set_color("BACO", "pink") + f": resolution={result.resolution:.5g}, user rows={n_user}, "
                         f"item rows={n_item}, passes={result.passes}, probes={len(probes)}, "
                         f"objective={result.objective:.5g}")
        return Plan(self.name, arrays, {
            "resolution": result.resolution, "objective": result.objective, "passes": result.passes,
            "n_user_codes": n_user, "n_item_codes": n_item, "probes": [list(p) for p in probes],
            "private_users": n_head["user"], "private_items": n_head["item"],
            "rows": n_user + n_item, "stored_bytes": stored,
        })

    def stream_planner(self):
        return BacoStream(self, self.config)

    def build(self, spec, table, plan):
        self.check_plan_setting(plan, "baco_mode", "mode")
        bits, policy = planned_precision(self, plan)
        generator = torch.Generator().manual_seed(self.config["seed"])
        shared = CodebookEmbedding(plan[f"{spec.role}_codes"], plan.meta[f"n_{spec.role}_codes"], spec.embedding_dim,
                                   padding_idx=spec.padding_idx, init_from=table.weight, generator=generator)
        each = bits if policy == "fixed" else plan[f"{spec.role}_bits"]
        shared = apply_bits(self.config, spec, shared, {"codebook": each})
        residual = plan.meta.get("residual", 0)
        if not residual:
            return shared
        plan.meta.setdefault("residual_bits", FLOAT_BITS)  # plans saved before the option stored float32
        self.check_plan_setting(plan, "baco_residual_bits", "residual_bits")
        return ResidualEmbedding(shared, residual, init_from=table.weight, bits=plan.meta["residual_bits"],
                                 master_free=master_free_of(self.config, spec))


class BacoStream(StreamPlanner):
    """BACO on a stream: re-cluster each segment's history into the rows ``emb_budget`` of the *seen*
    entities' full floats allows (as ``uniform`` gives every seen entity ``emb_budget · d``), so the
    two are compared at equal floats; the codes' bytes are reported on top."""

    def budget_floats(self, segment, tables_per_side):
        budget = self.config["emb_budget"]
        if budget is None:
            return None
        return int(budget * model_width(self.config) * (segment.users_seen + segment.items_seen)
                   * tables_per_side)

    def plan(self, segment, specs, search=None):
        tables_per_side = max(sum(s.role == "user" for s in specs), 1)
        floats = self.budget_floats(segment, tables_per_side)
        budget = self.config["emb_budget"]
        max_codes = None if floats is None else rows_within(specs, floats * FLOAT_BYTES, "emb_budget", budget,
                                                             per_byte=budget / (floats * FLOAT_BYTES) if floats else None)
        return self.method.plan_rows(segment.history, specs, max_codes)
