"""Embedding tables that stand in for ``nn.Embedding``."""

from recbole_lightemb.modules.base import FLOAT_BYTES, LightEmbedding
from recbole_lightemb.modules.codebook import CodebookEmbedding
from recbole_lightemb.modules.full import FullEmbedding
from recbole_lightemb.modules.mixed import MixedDimEmbedding
from recbole_lightemb.modules.quotient_remainder import QuotientRemainderEmbedding
from recbole_lightemb.modules.uniform import UniformEmbedding
from recbole_lightemb.modules.variable import VariableWidthEmbedding

__all__ = [
    "FLOAT_BYTES", "LightEmbedding", "CodebookEmbedding", "FullEmbedding", "MixedDimEmbedding", "QuotientRemainderEmbedding",
    "UniformEmbedding", "VariableWidthEmbedding",
]
