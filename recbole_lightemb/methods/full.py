"""``emb: full``: RecBole's own tables, untouched, only measured."""

from recbole_lightemb.modules import FullEmbedding
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method


@register_method("full")
class Full(EmbeddingMethod):
    def plan(self, dataset, tables):
        return Plan(self.name)

    def build(self, spec, table, plan):
        return FullEmbedding(table)
