"""``emb: scall``: SCALL's budgeted variable widths; with ``stream: True`` re-planned per segment.

Without a stream there is no sequence of segments to learn a policy over, so a plain run uses
SCALL's first-segment plan: the budget spread uniformly over the entities of the training data
(entities absent from it stay at width 0 and cost nothing).

At ``emb_bits`` below 32 every row is stored in that many bits per value with a float32 scale, and the
bytes of the float budget buy widths (:func:`~recbole_lightemb.modules.precision.values_within`), trained
on float32 masters or (``emb_master_free``) as stored. Under ``emb_bits_policy: frequency`` each side's
rows take ``emb_bits``' ladder by training interactions (:func:`~recbole_lightemb.scall.widths.ranked_bits`)
and the one width is the widest that those bits' bytes hold.
"""

import numpy as np

from recbole_lightemb.methods.precision import planned_precision, precision_of, training_counts
from recbole_lightemb.registry import EmbeddingMethod, register_method
from recbole_lightemb.scall.planner import ScallPlanner, pair_budget, row_precision, uniform_widths, values_budget
from recbole_lightemb.scall.settings import check_scall_config
from recbole_lightemb.stream.planners import planned_row_bits, widths_plan
from recbole_lightemb.swap import width_rows_table


@register_method("scall")
class Scall(EmbeddingMethod):
    precision = True

    def check_config(self):
        check_scall_config(self.config)
        precision_of(self.config)

    def plan(self, dataset, tables):
        counts = training_counts(dataset)
        seen_users, seen_items = counts["user"] > 0, counts["item"] > 0
        per_side = max(sum(spec.role == "user" for spec in tables), 1)
        dim = max(spec.embedding_dim for spec in tables)  # NeuMF, NNCF, … set no embedding_size
        n_seen = int(seen_users.sum() + seen_items.sum())
        budget = pair_budget(self.config, n_seen, dim)
        bits, policy = precision_of(self.config)
        s_max = self.config["scall_max_width"] or dim
        precision = row_precision((counts["user"], counts["item"]), seen_users, seen_items, bits, policy)
        values = values_budget(budget, seen_users, seen_items, bits, precision, s_max)
        users, items = uniform_widths(seen_users, seen_items, values, self.config["scall_min_width"], s_max, precision)
        return widths_plan(self.name, users, items, budget_floats=budget * per_side, mode=self.config["scall_mode"],
                           bits=bits, row_bits=None if precision is None else tuple(rows for rows, _ in precision))

    def build(self, spec, table, plan):
        """The widths are final in a plain run: packed rows, or master-free groups
        (:func:`~recbole_lightemb.swap.width_rows_table`)."""
        planned_precision(self, plan)  # a reused plan's bits; another emb_bits given is an error
        widths = np.minimum(plan[f"{spec.role}_widths"], spec.embedding_dim)
        return width_rows_table(self.config, spec, widths, table.weight, planned_row_bits(plan, spec))

    def stream_planner(self):
        return ScallPlanner(self, self.config)
