"""Find a RecBole model's user/item embedding tables and replace them with lightweight ones.

A table is either an ``nn.Embedding`` with one row per user or per item (general and sequential
models), or the user/item id rows of a shared token table (``FMEmbedding``: context-aware models,
DIN and DIEN), named ``<table>.embedding[<field>]``.
"""

import re
from dataclasses import dataclass
from logging import getLogger
from types import SimpleNamespace

import torch
from torch import nn

from recbole_lightemb.modules import FLOAT_BYTES, LightEmbedding, VariableWidthEmbedding
from recbole_lightemb.modules.mixed import MixedDimEmbedding
from recbole_lightemb.modules.packed import PackedWidthEmbedding
from recbole_lightemb.modules.row_ranges import RowRangesEmbedding
from recbole_lightemb.plan import reused_plan
from recbole_lightemb.protocol import init_id_tables
from recbole_lightemb.registry import get_method

ROLES = ("user", "item")


@dataclass(frozen=True)
class TableSpec:
    """What a planner may know of a table: its place, its side and its shape (never the model)."""

    name: str
    role: str
    num_embeddings: int
    embedding_dim: int
    padding_idx: int = None
    first_row: int = 0
    """Where the entity rows start in their table (a shared token table holds every field at an offset)."""


NARROW = 8
"""A per-entity table narrower than 1/NARROW of the widest one (a bias, a per-user weight) is left full:
it costs little, and a budget share of it would round to nothing."""

SPECIAL_ROWS = 1
"""Rows past the last entity a table may hold (BERT4Rec's mask token), kept full."""


def _role_by_size(name, table, n_users, n_items):
    fits = [role for role, n in zip(ROLES, (n_users, n_items)) if table.num_embeddings == n]
    if len(fits) == 2:  # as many users as items: only the name can tell
        fits = [role for role in ROLES if role in name.lower()]
    if not fits:  # a few special rows after the entities, in a table named for its side
        fits = [role for role, n in zip(ROLES, (n_users, n_items))
                if n < table.num_embeddings <= n + SPECIAL_ROWS and role in name.lower()]
    return fits[0] if len(fits) == 1 else None


def _ffm_reads(owner, feature, table_field):
    """Whether FFM ever reads ``feature``'s row of field ``table_field``'s table: only to pair it with another
    feature of that field (so a feature alone in its field, RecBole's default, never has its own rows read)."""
    i = owner.feature2id[feature]
    return any(field == table_field for j, field in owner.feature2field.items() if j != i)


def _read_fields(all_fields):
    """``{name: (field, table, first_row, rows)}`` of :func:`_all_field_tables`' entries the model reads."""
    return {name: tuple(entry) for name, (*entry, read) in all_fields.items() if read}


UNREAD = ("never read by the model (FFM reads a feature's row of field k's table only to pair it with another "
          "feature of field k, and this feature is alone in its field)")


def _unread_id_rows(all_fields, dataset):
    """``[{name, dim, why}]``: the user/item id rows of a shared token table the model never reads (FFM: a
    feature's row in its own field's table). Compressing them would spend the budget on nothing; they stay."""
    ids = (dataset.uid_field, dataset.iid_field)
    return [{"name": name, "dim": table.embedding_dim, "why": UNREAD}
            for name, (field, table, *_, read) in all_fields.items() if field in ids and not read]


def _all_field_tables(model, dataset):
    """``{name: (field, table, first_row, rows, read)}`` for every token field of RecBole's shared token tables,
    read off the module that owns each one: ``FMEmbedding``s (``token_field_names``) and FFM's field-aware
    tables (``token_feature_names``, one table per field, each holding every token field); ``read`` is False
    for the rows FFM never reads (see :func:`_ffm_reads`)."""
    from recbole.model.layers import FMEmbedding

    found = {}
    for owner_name, owner in model.named_modules():
        prefix = f"{owner_name}." if owner_name else ""
        fields, tables = getattr(owner, "token_field_names", None), getattr(owner, "token_embedding_table", None)
        groups = []  # (name of the nn.Embedding, the table, its field names, their row offsets)
        if fields is not None and isinstance(tables, nn.ModuleDict):  # DIN, DIEN: one table per side
            groups = [(f"token_embedding_table.{key}.embedding", fm.embedding, fields[key], fm.offsets)
                      for key, fm in tables.items() if isinstance(fm, FMEmbedding)]
        elif fields is not None and isinstance(tables, FMEmbedding):
            groups = [("token_embedding_table.embedding", tables.embedding, fields, tables.offsets)]
        elif getattr(owner, "token_feature_names", None) and isinstance(getattr(owner, "token_embeddings", None),
                                                                        nn.ModuleList):
            groups = [(f"token_embeddings.{k}", table, owner.token_feature_names, owner.token_offsets, k)
                      for k, table in enumerate(owner.token_embeddings)]
        for attr, table, names, offsets, *table_field in groups:
            for field, offset in zip(names, offsets):
                read = not table_field or _ffm_reads(owner, field, table_field[0])
                found[f"{prefix}{attr}[{field}]"] = (field, table, int(offset), dataset.num(field), read)
    return found


def _candidates(model, n_users, n_items, dataset, fields):
    """Every table that could be a side's: ``{name: (role, nn.Embedding, first_row)}`` (``fields``: the
    token fields the model reads)."""
    shared = {id(table) for _, table, _, _ in fields.values()}  # named by field, not by size
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and id(module) not in shared:
            role = _role_by_size(name, module, n_users, n_items)
            if role is not None:
                found[name] = (role, module, 0)
    ids = {dataset.uid_field: "user", dataset.iid_field: "item"}
    for name, (field, table, first_row, _) in fields.items():
        if field in ids:
            found[name] = (ids[field], table, first_row)
    return found


def _explicit_tables(model, explicit, n_users, n_items, all_fields, dataset):
    """The tables ``emb_tables`` names: module names, or ``<table>.embedding[<field>]`` for a field."""
    if not isinstance(explicit, dict) or set(explicit) - set(ROLES):
        raise ValueError(f"emb_tables={explicit!r}: expected a dict with keys from {ROLES}, e.g. "
                         "{user: [user_embedding], item: [item_embedding]}")
    modules = dict(model.named_modules(remove_duplicate=False))  # a tied table answers to each of its names
    fields, unread = _read_fields(all_fields), {u["name"] for u in _unread_id_rows(all_fields, dataset)}
    tables, listed = {}, {}  # listed: (table, first row) -> the name it was listed as
    for role, names in explicit.items():
        for name in [names] if isinstance(names, str) else names:
            field = re.fullmatch(r"(.+)\[(.+)\]", str(name))
            if field:
                if name in unread:
                    raise ValueError(f"emb_tables: {name!r} is {UNREAD}; compressing it would spend the budget on "
                                     "nothing: leave it out")
                if name not in fields:
                    known = [n for n in fields if n.startswith(f"{field.group(1)}[")] or list(fields)
                    raise ValueError(f"emb_tables: {name!r} is not a token field of model {type(model).__name__}; "
                                     f"its token fields are {known}")
                _, table, first_row, rows = fields[name]
            else:
                if not isinstance(modules.get(name), nn.Embedding):
                    found = [n for n, m in modules.items() if isinstance(m, nn.Embedding)] + list(fields)
                    raise ValueError(f"emb_tables: {name!r} is not an nn.Embedding of model "
                                     f"{type(model).__name__}; its embedding tables are {found}")
                table, first_row, rows = modules[name], 0, modules[name].num_embeddings
            wanted = n_users if role == "user" else n_items
            if rows != wanted:
                raise ValueError(f"emb_tables: {name!r} has {rows} rows but the dataset "
                                 f"has {wanted} {role}s; is it listed under the wrong role?")
            first = listed.setdefault((id(table), first_row), name)
            if name in tables or first != name:
                alias = "" if first == name else f" (tied to {first!r}: the same table)"
                raise ValueError(f"emb_tables: {name!r}{alias} is listed twice, under {tables[first][0]!r} and "
                                 f"{role!r}; list each table once, under one role")
            tables[name] = (role, table, first_row)
    return tables


def _split_narrow(found):
    """``found`` split by the :data:`NARROW` rule: (the tables wide enough to compress, ``[{name, dim, why}]``
    for those left full)."""
    widest = max((t.embedding_dim for _, t, _ in found.values()), default=0)
    wide = {name: entry for name, entry in found.items() if entry[1].embedding_dim * NARROW >= widest}
    left = [{"name": n, "dim": t.embedding_dim, "why": f"narrower than 1/{NARROW} of the widest table ({widest})"}
            for n, (_, t, _) in found.items() if n not in wide]
    return wide, left


def _named_tables(model, n_users, n_items, config, dataset):
    """(``{name: (role, table, first_row)}``, ``[{name, dim, why}]`` of the tables left full: narrow ones, id rows
    never read): from ``emb_tables`` when given (nothing left), else by size, name and field."""
    all_fields = _all_field_tables(model, dataset)  # one walk of the model for the shared token tables
    if config["emb_tables"]:
        return _explicit_tables(model, config["emb_tables"], n_users, n_items, all_fields, dataset), []
    tables, narrow = _split_narrow(_candidates(model, n_users, n_items, dataset, _read_fields(all_fields)))
    return tables, narrow + _unread_id_rows(all_fields, dataset)


def find_embedding_tables(model, dataset, config):
    """The tables to compress, with their specs; a clear error when a model has none we can swap."""
    specs, tables, _ = _find(model, dataset, config)
    return specs, tables


def _find(model, dataset, config):
    """``find_embedding_tables``'s specs and tables, and the per-entity tables left full (narrow, or never
    read; with why), from one walk of the model."""
    n_users, n_items = dataset.user_num, dataset.item_num
    if any(isinstance(m, LightEmbedding) for m in model.modules()):
        raise ValueError(f"model {type(model).__name__} already has lightweight embeddings")
    tables, left = _named_tables(model, n_users, n_items, config, dataset)
    if not tables:
        kind = type(model).__mro__[1].__name__
        raise ValueError(
            f"model={type(model).__name__} ({kind}) has no nn.Embedding with one row per user "
            f"({n_users}) or per item ({n_items}) and no user or item id field in a shared token table; it may "
            "have no id embedding at all. Name the tables with emb_tables if it has some."
        )
    entities = {"user": n_users, "item": n_items}
    specs = [TableSpec(name, role, entities[role], t.embedding_dim,
                       _padding_within(t.padding_idx, first_row, entities[role]), first_row)
             for name, (role, t, first_row) in tables.items()]
    return specs, [module for _, module, _ in tables.values()], left


_EMBEDDING_ATTRIBUTES = set(vars(nn.Embedding(1, 1)))


def _carry_model_attributes(old, new):
    """Plain attributes set on a table besides nn.Embedding's own and ``new``'s: the plugin's ``role`` and
    ``table_name``, and a model's (GRU4RecCPR sets ``bias = None`` on the item table it ties to its
    output layer, then reads it)."""
    for key, value in vars(old).items():
        if key not in _EMBEDDING_ATTRIBUTES and not key.startswith("_") and not hasattr(new, key):
            setattr(new, key, value)


def _padding_within(padding_idx, first_row, rows):
    """The table's padding row, counted from the entity rows' start, when it is one of them."""
    if padding_idx is None or not first_row <= padding_idx < first_row + rows:
        return None
    return padding_idx - first_row


def replace_table(model, old, new):
    """Put ``new`` wherever ``old`` is a child (tied tables are replaced everywhere at once)."""
    for parent in model.modules():
        for child_name, child in parent._modules.items():
            if child is old:
                parent._modules[child_name] = new


def swap_embeddings(model, dataset, config, method=None, plan=None, init_seed=None):
    """Replace ``model``'s user/item tables as ``config['emb']`` asks; return the plan used.

    Call it after building a RecBole model and before building its trainer (the optimizer
    must see the new parameters). ``dataset`` is the training dataset (``train_data.dataset``);
    ``init_seed`` seeds ``emb_init: normal`` for a model rebuilt afresh within a run.
    """
    from recbole_lightemb.methods.precision import refuse_unsupported  # the methods package imports this module

    method = method or get_method(config["emb"])(config)
    refuse_unsupported(method, config)  # emb_bits for a method that stores no low-bit rows
    specs, tables, left = _find(model, dataset, config)
    init_id_tables(specs, tables, config, init_seed)  # emb_init: the rows every method builds from
    saved = None
    if plan is None:
        saved = reused_plan(config, method.name)
        plan = method.load_plan(saved) if saved else method.plan(dataset, specs)
    if saved:
        check_plan_fits(plan, specs, saved)
        check_plan_size(_built_on_meta(method, specs, plan), specs, saved)
    built, parts_of = [], {}
    for spec, table in zip(specs, tables):
        whole = spec.num_embeddings == table.num_embeddings
        new = method.build(spec, table if whole else _EntityRows(table, spec), plan)
        new.table_name, new.role = spec.name, spec.role  # trainers (CIESS) and stream planners read them
        built.append(new)
        parts_of.setdefault(table, []).append((spec, new.to(table.weight.device)))
    field_tables = None  # walked once, and only when a table is shared with rows that stay full
    for table, parts in parts_of.items():
        if len(parts) == 1 and parts[0][0].num_embeddings == table.num_embeddings:
            _carry_model_attributes(table, parts[0][1])
            replace_table(model, table, parts[0][1])
        else:  # other fields, a mask token: those rows stay full
            field_tables = _all_field_tables(model, dataset) if field_tables is None else field_tables
            ranges = [(spec.first_row, new) for spec, new in parts]
            labels = _row_labels(field_tables, dataset, table)
            replace_table(model, table, RowRangesEmbedding(table.weight, ranges, labels).to(table.weight.device))
    if saved:
        check_plan_budget(built, specs, config["emb_budget"], saved)
    if left:
        plan.meta["tables_left_full"] = left
        getLogger().info(f"tables left full (not compressed, not in the budget): {left}")
    return plan


def width_rows_table(config, spec, widths, init_from, bits):
    """A table whose rows' widths are final, stored at ``bits`` (one for all, or one per row): packed (``Σ s_e`` values, so parameters and
    optimiser state follow the widths), or with ``emb_master_free`` groups of one width each (``(rows, width)``
    parameters, no projections) whose low-bit codes train as stored. ``config`` None: packed, float32 masters."""
    from recbole_lightemb.methods.precision import apply_bits  # the methods package imports this module

    if config is None or not config["emb_master_free"]:
        table = PackedWidthEmbedding(spec.num_embeddings, spec.embedding_dim, widths, padding_idx=spec.padding_idx,
                                     init_from=init_from)
        table.set_row_bits(bits)
        return table
    table = MixedDimEmbedding(spec.num_embeddings, spec.embedding_dim, widths, padding_idx=spec.padding_idx,
                              init_from=init_from, projection=False)
    return apply_bits(config, spec, table, table.group_bits(widths, bits))


def pack_variable_widths(model, projection=False, config=None):
    """Once widths are fixed, replace every masked ``n × d`` variable-width table with a packed one
    (:func:`width_rows_table`, at the masked table's bits; master-free when ``config`` asks); its rows start
    from the masked table's. With ``projection`` the rows go into mixed-dimension groups instead, one learned
    ``w × d`` projection per width (starting as the prefix embedding). Build the optimiser afterwards. Returns
    the new tables."""
    packed = []
    for old in [m for m in model.modules() if isinstance(m, VariableWidthEmbedding)]:
        widths, init = old.widths.cpu().numpy(), old.master_rows().detach().cpu()
        if projection:
            new = MixedDimEmbedding(old.num_embeddings, old.embedding_dim, widths, padding_idx=old.padding_idx,
                                    init_from=init)
        else:  # a stream's low-bit rows keep their bits (CIESS's masked search tables are float32)
            spec = SimpleNamespace(num_embeddings=old.num_embeddings, embedding_dim=old.embedding_dim,
                                   padding_idx=old.padding_idx, name=old.table_name)
            new = width_rows_table(config, spec, widths, init, old.row_bits())
        _carry_model_attributes(old, new)  # its role and table name, and what the model set (GRU4RecCPR's bias)
        replace_table(model, old, new.to(old.table.device))
        packed.append(new)
    return packed


def _built_on_meta(method, specs, plan):
    """The tables a reused plan asks for, built on PyTorch's ``meta`` device (nothing allocated), so its sizes
    are checked against the budget before real tables exist; ``[]`` where a table reads values while built."""
    try:
        with torch.device("meta"):
            return [method.build(spec, _MetaRows(spec), plan) for spec in specs]
    except Exception:  # noqa: BLE001  (then the budget is checked on the real tables, after they are built)
        return []


class _MetaRows:
    """What a method's ``build`` reads of the table it replaces, as shapes only."""

    def __init__(self, spec):
        self.weight = torch.empty(spec.num_embeddings, spec.embedding_dim, device="meta")
        self.padding_idx = spec.padding_idx


class _EntityRows:
    """What a method's ``build`` reads of the table it replaces (``weight`` for its init): the entity rows only."""

    def __init__(self, table, spec):
        self.weight = table.weight[spec.first_row:spec.first_row + spec.num_embeddings]
        self.padding_idx = spec.padding_idx


def _row_labels(field_tables, dataset, table):
    """``[(label, first_row, rows)]`` naming the row spans of ``table``: its token fields when it is a
    shared token table (``field_tables``: :func:`_all_field_tables` of the model), else the entity rows and
    the special rows past them (BERT4Rec's mask token)."""
    fields = [(field, first, rows) for field, t, first, rows, _ in field_tables.values() if t is table]
    if fields:
        return fields
    n = next(n for n in (dataset.item_num, dataset.user_num) if n < table.num_embeddings <= n + SPECIAL_ROWS)
    return [("entities", 0, n), ("special rows past the last entity", n, table.num_embeddings - n)]


def check_plan_fits(plan, specs, path):
    """A reused plan must have been made for tables of these sizes (another dataset's plan would index
    past its arrays deep inside training)."""
    sizes = {**{s.role: s.num_embeddings for s in specs}, **{s.name: s.num_embeddings for s in specs}}
    for key, array in plan.arrays.items():
        owner = next((name for name in sorted(sizes, key=len, reverse=True) if key.startswith(f"{name}_")), None)
        if owner is not None and len(array) != sizes[owner]:
            raise ValueError(f"emb_plan={path!r}: {key} holds {len(array)} rows but this dataset's {owner} table "
                             f"has {sizes[owner]}; the plan was made on other data")


PLAN_SIZE_LIMIT = 4
"""A reused plan's tables may hold at most this many times the full tables' bytes (quant's float32 masters and
CIESS's masked search table hold more than they store, never this much)."""


def held_bytes(modules):
    """Bytes the parameters and buffers of ``modules`` hold (on ``meta``: would hold, nothing allocated)."""
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def check_plan_size(built, specs, path):
    """Refuse a reused plan whose tables (built on ``meta``) would hold more than :data:`PLAN_SIZE_LIMIT` × full."""
    held = held_bytes(built)
    full = sum(s.num_embeddings * s.embedding_dim for s in specs) * FLOAT_BYTES
    if held > PLAN_SIZE_LIMIT * full:
        raise ValueError(f"emb_plan={path!r}: its tables would hold {held / full:.1f}× the full tables' bytes (at most "
                         f"{PLAN_SIZE_LIMIT}×); the plan was not made for these tables")


def check_plan_budget(built, specs, budget, path):
    """A reused plan is refused when it stores more than ``emb_budget`` allows; a plan under it is logged."""
    if budget is None:
        return
    stored = sum(module.stored_bytes() for module in built)
    full = sum(s.num_embeddings * s.embedding_dim for s in specs) * FLOAT_BYTES
    if stored > budget * full:
        raise ValueError(f"emb_plan={path!r} stores {stored / full:.4f} of the full bytes, over "
                         f"emb_budget={budget!r}: make a new plan, or raise emb_budget")
    getLogger().info(f"reusing plan {path!r}: {stored / full:.4f} of the full bytes, emb_budget={budget!r}")
