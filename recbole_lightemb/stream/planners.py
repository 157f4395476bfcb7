"""What each method does at a stream segment: the widths (or plan) for the entities seen so far.

Width-based planners (``uniform``, ``scall``) return per-entity widths over the global id space,
unseen entities at width 0, so the tables never change shape and unseen rows cost nothing.
A method without stream support is re-planned from scratch on each segment's history.
"""

import numpy as np

from recbole_lightemb.budget import check_fraction, check_positive_int
from recbole_lightemb.config import model_width
from recbole_lightemb.modules import VariableWidthEmbedding
from recbole_lightemb.modules.base import FLOAT_BYTES
from recbole_lightemb.modules.precision import config_bits
from recbole_lightemb.modules.quantized import FLOAT_BITS, quantized_width, row_bytes
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod


def planned_row_bits(plan, spec):
    """The bits of table ``spec``'s rows in a widths plan: one for all, or with per-row bits (mixed precision)
    its side's array."""
    if plan.meta.get("bits_policy", "fixed") == "frequency":
        return np.asarray(plan[f"{spec.role}_bits"][:spec.num_embeddings], dtype=np.int64)
    return plan.meta.get("bits", FLOAT_BITS)


def plan_row_bits(plan):
    """``(user bits, item bits)``, one per row, of a widths plan with bits by frequency; None for one for all."""
    if plan.meta.get("bits_policy", "fixed") != "frequency":
        return None
    return plan["user_bits"], plan["item_bits"]


def build_variable(spec, table, plan):
    """A :class:`VariableWidthEmbedding` with the plan's widths for the table's side (clipped to
    the table's width), initialised from the model's own table, its rows in the plan's bits."""
    widths = np.minimum(plan[f"{spec.role}_widths"], spec.embedding_dim)
    module = VariableWidthEmbedding(spec.num_embeddings, spec.embedding_dim, widths,
                                    padding_idx=spec.padding_idx, init_from=table.weight)
    module.set_row_bits(planned_row_bits(plan, spec))
    return module


class VariableWidths(EmbeddingMethod):
    """Builds variable-width tables from a plan holding ``user_widths`` / ``item_widths``."""

    name = "stream-widths"
    precision = True  # at the plan's bits

    def build(self, spec, table, plan):
        return build_variable(spec, table, plan)


def widths_plan(method, user_widths, item_widths, bits=FLOAT_BITS, row_bits=None, **meta):
    """A plan of per-entity widths, the rows stored at ``bits`` (recorded below 32), or with ``row_bits``
    (``(user bits, item bits)``, one per row) at bits by frequency around ``bits``."""
    from recbole_lightemb.methods.precision import precision_meta  # the methods package imports this module

    arrays = {"user_widths": np.asarray(user_widths, dtype=np.int64),
              "item_widths": np.asarray(item_widths, dtype=np.int64)}
    if row_bits is not None:
        arrays.update({"user_bits": np.asarray(row_bits[0], dtype=np.uint8),
                       "item_bits": np.asarray(row_bits[1], dtype=np.uint8)})
    return Plan(method, arrays=arrays,
                meta={**meta, **precision_meta(bits, "fixed" if row_bits is None else "frequency")})


class StreamPlanner:
    """``widths_based`` planners get a search handle and return a widths plan; others return
    their method's plan, built by the method itself."""

    widths_based = False

    def __init__(self, method, config):
        self.method = method
        self.config = config

    def budget_floats(self, segment, tables_per_side):
        """Floats allowed at this segment (summed over tables), or ``None`` when not budgeted."""
        return None

    def plan(self, segment, specs, search=None):
        raise NotImplementedError

    def observe(self, fitness, model, result=None):
        """Told the converged validation fitness, the trained model and its validation result after each segment."""

    def saved_state(self):
        """What the planner carries from one segment to the next, as data (a resumed stream restores it)."""
        return {}

    def restore(self, state, previous):
        """Go on from :meth:`state`'s values; ``previous`` is the last segment planned before the stop."""


class GenericStream(StreamPlanner):
    """``full``, and any method without stream support: plan afresh on the segment's history (all
    ids); the runner copies every parameter whose name and shape still match from the previous
    segment's model (for ``full``: the whole table)."""

    def plan(self, segment, specs, search=None):
        return self.method.plan(segment.history, specs)


class UniformStream(StreamPlanner):
    """Every seen entity the same width ``emb_width`` (or the widest ``emb_budget`` pays for, ``floor(emb_budget · d)``
    floats, or at ``emb_bits`` below 32 the widest row of low-bit values and its scale in those floats' bytes);
    unseen 0."""

    widths_based = True

    def width(self):
        width = check_positive_int(self.config, "emb_width")
        if width is None:
            fraction = check_fraction(self.config, "emb_budget")
            width = stored_width(self.budget_width(), model_width(self.config), self.bits) if fraction else None
        if not width:
            raise ValueError("emb=uniform with stream=True needs emb_width or an emb_budget that leaves "
                             f"at least one value per row (got emb_width={self.config['emb_width']!r}, "
                             f"emb_budget={self.config['emb_budget']!r}, emb_bits={self.bits!r})")
        return width

    @property
    def bits(self):
        return config_bits(self.config)

    def budget_width(self):
        """Floats per seen entity the budget allows: ``floor(emb_budget · d)``, or what ``emb_width`` stores."""
        fraction = check_fraction(self.config, "emb_budget")
        if fraction:
            return int(fraction * model_width(self.config))
        return -(-int(row_bytes(self.width(), self.bits)) // FLOAT_BYTES)

    def budget_floats(self, segment, tables_per_side):
        return self.budget_width() * (segment.users_seen + segment.items_seen) * tables_per_side

    def plan(self, segment, specs, search=None):
        width = self.width()
        split = segment.split
        return widths_plan("uniform", split.seen_users * width, split.seen_items * width,
                           segment=segment.index, width=width, bits=self.bits)


def stored_width(floats, dim, bits):
    """The widest row at ``bits`` stored in the bytes of ``floats`` float32 values (and its scale). A stream's budget
    is whole floats per seen entity, so this floors first (0.1 of 64: 6 floats, 40 four-bit values; off the stream
    ``uniform`` spends 6.4 floats' bytes, 42)."""
    return floats if bits == FLOAT_BITS else quantized_width(floats * FLOAT_BYTES, bits, dim)


def stream_planner(method, config):
    """The stream planner for ``method``: its own ``stream_planner(config)`` when it has one."""
    if hasattr(method, "stream_planner"):
        return method.stream_planner()
    if method.name == "uniform":
        return UniformStream(method, config)
    return GenericStream(method, config)
