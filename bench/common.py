"""What every benchmark shares: where results go and how they are written."""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save_results(name, data):
    """Write ``data`` as ``bench/results/<name>.json`` (numpy scalars as numbers); return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")
    return path
