"""The two ends every run shares — a single run, a stream, a comparison: RecBole's start (seed, logger,
dataset) and the result written as JSON. Its own module, so the entry points need not import each other."""

import json
import sys
from logging import getLogger

from recbole.data import create_dataset
from recbole.utils import init_logger, init_seed


def json_default(value):
    """NumPy and torch scalars as numbers, anything else as its string."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_result(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=json_default)


def start_run(config):
    """RecBole's start of a run: seed, logger, the command and config in the log, the dataset."""
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    return dataset
