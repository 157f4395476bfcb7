"""Embedding methods by name: ``emb: <name>`` in a config picks one; users may add their own."""

from recbole_lightemb.plan import Plan

_METHODS = {}


class EmbeddingMethod:
    """A way to compress a model's user/item tables: a planner plus a module builder.

    ``check_config`` runs before any data is loaded (bad values fail early);
    ``plan`` reads the training data and the tables to replace and returns a :class:`Plan`;
    ``build`` turns one table into a :class:`~recbole_lightemb.modules.LightEmbedding`
    following the plan. A planner never sees the model, only :class:`TableSpec` s.
    ``trainer`` names a trainer class for methods with a search phase (``None``: RecBole's).
    """

    name = None
    trainer = None

    def __init__(self, config):
        self.config = config

    def check_config(self):
        """Raise ``ValueError`` naming key, value and what is allowed; called before training."""

    def plan(self, dataset, tables):
        raise NotImplementedError

    def build(self, spec, table, plan):
        raise NotImplementedError

    def load_plan(self, path):
        return Plan.load(path, method=self.name)

    def check_plan_setting(self, plan, key, meta_key):
        """A reused plan fixes ``plan.meta[meta_key]``: a different ``key`` the user set is an error, not ignored."""
        given = getattr(self.config, "external_config_dict", {}).get(key)
        if given is not None and meta_key in plan.meta and plan.meta[meta_key] != given:
            raise ValueError(f"{key}={given!r}: the reused plan was made with {key}={plan.meta[meta_key]!r}; "
                             f"drop {key} or make a new plan")


def register_method(name):
    """Class decorator: make ``emb: name`` use this :class:`EmbeddingMethod` subclass."""

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, EmbeddingMethod)):
            raise TypeError(f"register_method({name!r}) expects an EmbeddingMethod subclass, got {cls!r}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def available_methods():
    return sorted(_METHODS)


def get_method(name):
    """The method class registered under ``name``; a clear error lists the known names."""
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"emb={name!r} is not a known method; allowed: {', '.join(available_methods())}") from None
