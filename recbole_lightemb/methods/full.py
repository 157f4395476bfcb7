"""``emb: full``: RecBole's own tables, untouched, only measured."""

from torch import nn

from recbole_lightemb.modules import FullEmbedding
from recbole_lightemb.plan import Plan
from recbole_lightemb.registry import EmbeddingMethod, register_method


@register_method("full")
class Full(EmbeddingMethod):
    def plan(self, dataset, tables):
        return Plan(self.name)

    def build(self, spec, table, plan):
        if not isinstance(table, nn.Embedding):  # the id rows of a shared table: a copy, the same values
            table = nn.Embedding.from_pretrained(table.weight.detach().clone(), freeze=False,
                                                 padding_idx=spec.padding_idx)
        return FullEmbedding(table)
