"""``emb: scall``: SCALL's budgeted variable widths; with ``stream: True`` re-planned per segment.

Without a stream there is no sequence of segments to learn a policy over, so a plain run uses
SCALL's first-segment plan: the budget spread uniformly over the entities of the training data
(entities absent from it stay at width 0 and cost nothing).

At ``emb_bits`` below 32 every row is stored in that many bits per value with a float32 scale, and the
bytes of the float budget buy widths (:func:`~recbole_lightemb.modules.precision.values_within`): one
``emb_bits`` for all rows, trained on float32 masters or (``emb_master_free``) as stored.
"""

import numpy as np

from recbole_lightemb.methods.precision import planned_precision, precision_of
from recbole_lightemb.modules.precision import values_within
from recbole_lightemb.registry import EmbeddingMethod, register_method
from recbole_lightemb.scall.planner import ScallPlanner, pair_budget, uniform_widths
from recbole_lightemb.scall.settings import check_scall_config
from recbole_lightemb.stream.planners import widths_plan
from recbole_lightemb.swap import width_rows_table


@register_method("scall")
class Scall(EmbeddingMethod):
    precision = True  # one emb_bits for every row (refuse_unsupported)

    def check_config(self):
        check_scall_config(self.config)
        precision_of(self.config)

    def plan(self, dataset, tables):
        seen_users = np.bincount(dataset.inter_feat[dataset.uid_field].numpy(), minlength=dataset.user_num) > 0
        seen_items = np.bincount(dataset.inter_feat[dataset.iid_field].numpy(), minlength=dataset.item_num) > 0
        per_side = max(sum(spec.role == "user" for spec in tables), 1)
        dim = max(spec.embedding_dim for spec in tables)  # NeuMF, NNCF, … set no embedding_size
        n_seen = int(seen_users.sum() + seen_items.sum())
        budget = pair_budget(self.config, n_seen, dim)
        bits, _ = precision_of(self.config)
        s_max = self.config["scall_max_width"] or dim
        users, items = uniform_widths(seen_users, seen_items, values_within(budget, n_seen, bits),
                                      self.config["scall_min_width"], s_max)
        return widths_plan(self.name, users, items, budget_floats=budget * per_side, mode=self.config["scall_mode"],
                           bits=bits)

    def build(self, spec, table, plan):
        """The widths are final in a plain run: packed rows, or master-free groups
        (:func:`~recbole_lightemb.swap.width_rows_table`)."""
        bits, _ = planned_precision(self, plan)  # a reused plan's bits; another emb_bits given is an error
        widths = np.minimum(plan[f"{spec.role}_widths"], spec.embedding_dim)
        return width_rows_table(self.config, spec, widths, table.weight, bits)

    def stream_planner(self):
        return ScallPlanner(self, self.config)
