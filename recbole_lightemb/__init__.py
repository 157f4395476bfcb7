"""recbole-lightemb: lightweight user/item embeddings for any RecBole model.

Importing the package applies the compatibility fixes RecBole 1.2.1 needs on today's stack
(see :mod:`recbole_lightemb.compat`), builds RecBole's training batches without per-sample Python
loops (:mod:`recbole_lightemb.batches`; the same batches) and registers the built-in methods.
"""

from recbole_lightemb import batches, compat

compat.apply()
batches.apply()

from recbole_lightemb import methods  # noqa: E402,F401  (registers the built-in methods)
from recbole_lightemb.analysis.compare import compare  # noqa: E402
from recbole_lightemb.config import Config  # noqa: E402
from recbole_lightemb.modules import LightEmbedding  # noqa: E402
from recbole_lightemb.plan import Plan  # noqa: E402
from recbole_lightemb.quick_start import load_data_and_model, run, run_recbole_lightemb  # noqa: E402
from recbole_lightemb.registry import EmbeddingMethod, available_methods, get_method, register_method  # noqa: E402
from recbole_lightemb.report import compression_report  # noqa: E402
from recbole_lightemb.swap import TableSpec, find_embedding_tables, swap_embeddings  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Config", "EmbeddingMethod", "compare", "LightEmbedding", "Plan", "TableSpec", "available_methods",
    "compression_report", "find_embedding_tables", "get_method", "load_data_and_model", "register_method", "run",
    "run_recbole_lightemb", "swap_embeddings",
]
