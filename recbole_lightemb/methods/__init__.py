"""The built-in methods; importing this module registers them."""

from recbole_lightemb.methods import baco, frequency, full, hashing, quantized, quotient_remainder, uniform  # noqa: F401
from recbole_lightemb.methods import ciess  # noqa: F401
from recbole_lightemb.methods import scall  # noqa: F401
