"""Find a RecBole model's user/item embedding tables and replace them with lightweight ones."""

from dataclasses import dataclass
from logging import getLogger

from torch import nn

from recbole_lightemb.modules import FLOAT_BYTES, LightEmbedding
from recbole_lightemb.modules.extra_rows import ExtraRowsEmbedding
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


def _named_tables(model, n_users, n_items, config):
    """``{name: (role, module)}`` from ``emb_tables`` when given, else by size and name."""
    explicit = config["emb_tables"]
    modules = dict(model.named_modules())
    if explicit:
        if not isinstance(explicit, dict) or set(explicit) - set(ROLES):
            raise ValueError(f"emb_tables={explicit!r}: expected a dict with keys from {ROLES}, e.g. "
                             "{user: [user_embedding], item: [item_embedding]}")
        tables = {}
        for role, names in explicit.items():
            for name in [names] if isinstance(names, str) else names:
                if not isinstance(modules.get(name), nn.Embedding):
                    found = [n for n, m in modules.items() if isinstance(m, nn.Embedding)]
                    raise ValueError(f"emb_tables: {name!r} is not an nn.Embedding of model "
                                     f"{type(model).__name__}; its embedding tables are {found}")
                wanted = n_users if role == "user" else n_items
                if modules[name].num_embeddings != wanted:
                    raise ValueError(f"emb_tables: {name!r} has {modules[name].num_embeddings} rows but the dataset "
                                     f"has {wanted} {role}s; is it listed under the wrong role?")
                tables[name] = (role, modules[name])
        return tables
    tables = {}
    for name, module in modules.items():
        if isinstance(module, nn.Embedding):
            role = _role_by_size(name, module, n_users, n_items)
            if role is not None:
                tables[name] = (role, module)
    widest = max((t.embedding_dim for _, t in tables.values()), default=0)
    return {name: (role, t) for name, (role, t) in tables.items() if t.embedding_dim * NARROW >= widest}


def narrow_tables_left_full(model, dataset, config):
    """The per-entity tables the automatic finder leaves alone because they are narrow (with why)."""
    if config["emb_tables"]:
        return []
    modules = {n: m for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    found = {n: m for n, m in modules.items() if _role_by_size(n, m, dataset.user_num, dataset.item_num)}
    widest = max((m.embedding_dim for m in found.values()), default=0)
    return [{"name": n, "dim": m.embedding_dim, "why": f"narrower than 1/{NARROW} of the widest table ({widest})"}
            for n, m in found.items() if m.embedding_dim * NARROW < widest]


def find_embedding_tables(model, dataset, config):
    """The tables to compress, with their specs; a clear error when a model has none we can swap."""
    n_users, n_items = dataset.user_num, dataset.item_num
    if any(isinstance(m, LightEmbedding) for m in model.modules()):
        raise ValueError(f"model {type(model).__name__} already has lightweight embeddings")
    tables = _named_tables(model, n_users, n_items, config)
    if not tables:
        kind = type(model).__mro__[1].__name__
        hint = ("context-aware models keep ids inside a shared FMEmbedding and are not supported"
                if "Context" in kind else "it may have no id embedding at all")
        raise ValueError(
            f"model={type(model).__name__} ({kind}) has no nn.Embedding with one row per user "
            f"({n_users}) or per item ({n_items}); {hint}. Name the tables with emb_tables if it has some."
        )
    entities = {"user": n_users, "item": n_items}
    specs = [TableSpec(name, role, entities[role], t.embedding_dim, t.padding_idx)
             for name, (role, t) in tables.items()]
    return specs, [module for _, module in tables.values()]


def replace_table(model, old, new):
    """Put ``new`` wherever ``old`` is a child (tied tables are replaced everywhere at once)."""
    for parent in model.modules():
        for child_name, child in parent._modules.items():
            if child is old:
                parent._modules[child_name] = new


def swap_embeddings(model, dataset, config, method=None, plan=None):
    """Replace ``model``'s user/item tables as ``config['emb']`` asks; return the plan used.

    Call it after building a RecBole model and before building its trainer (the optimizer
    must see the new parameters). ``dataset`` is the training dataset (``train_data.dataset``).
    """
    method = method or get_method(config["emb"])(config)
    specs, tables = find_embedding_tables(model, dataset, config)
    saved = None
    if plan is None:
        saved = config[f"{method.name}_plan"] or config["emb_plan"]
        plan = method.load_plan(saved) if saved else method.plan(dataset, specs)
    if saved:
        check_plan_fits(plan, specs, saved)
    left = narrow_tables_left_full(model, dataset, config)
    built = []
    for spec, table in zip(specs, tables):
        special = table.num_embeddings > spec.num_embeddings and method.name != "full"
        new = method.build(spec, _EntityRows(table, spec.num_embeddings) if special else table, plan)
        new.table_name, new.role = spec.name, spec.role  # trainers (CIESS) and stream planners read them
        if special:  # rows past the entities (a mask token) stay full
            new = ExtraRowsEmbedding(new, table.weight[spec.num_embeddings:])
            new.table_name, new.role = spec.name, spec.role
        new = new.to(table.weight.device)
        replace_table(model, table, new)
        built.append(new)
    if saved:
        check_plan_budget(built, specs, config["emb_budget"], saved)
    if left:
        plan.meta["tables_left_full"] = left
        getLogger().info(f"tables left full (not compressed, not in the budget): {left}")
    return plan


class _EntityRows:
    """What a method's ``build`` reads of the table it replaces (``weight`` for its init): the entity rows only."""

    def __init__(self, table, n):
        self.weight = table.weight[:n]
        self.padding_idx = table.padding_idx


def check_plan_fits(plan, specs, path):
    """A reused plan must have been made for tables of these sizes (another dataset's plan would index
    past its arrays deep inside training)."""
    sizes = {**{s.role: s.num_embeddings for s in specs}, **{s.name: s.num_embeddings for s in specs}}
    for key, array in plan.arrays.items():
        owner = next((name for name in sorted(sizes, key=len, reverse=True) if key.startswith(f"{name}_")), None)
        if owner is not None and len(array) != sizes[owner]:
            raise ValueError(f"emb_plan={path!r}: {key} holds {len(array)} rows but this dataset's {owner} table "
                             f"has {sizes[owner]}; the plan was made on other data")


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
