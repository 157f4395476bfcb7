"""What every benchmark shares: where results go, how they are written, and how epochs are timed."""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
BEAUTY = {"dataset": "beauty", "benchmark_filename": ["train", "valid", "test"],
          "load_col": {"inter": ["user_id", "item_id"]}}
"""RecBole's keys for the BACO authors' Beauty split (``data_path`` is the folder holding ``beauty/``)."""


def timing_arguments(doc, rounds, data=False, parser=None):
    """Parse a timing benchmark's command line (``--rounds`` unless ``rounds`` is None, ``--threads``, with ``data``
    ``--data``; ``parser`` may hold the script's own), set torch's threads, and clear the command line (RecBole's
    ``Config`` reads it)."""
    parser = parser or argparse.ArgumentParser(description=doc.splitlines()[0])
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared 2-core machine: 1)")
    if data:
        parser.add_argument("--data", default=str(SHARED_DATA), help="folder holding beauty/ (skipped when absent)")
    args = parser.parse_args()
    sys.argv[1:] = []
    import torch

    torch.set_num_threads(args.threads)
    return args


def ml100k_and_beauty(data):
    """``(name, RecBole dataset, extra config)`` for ml-100k, and for Beauty where ``data`` holds it."""
    datasets = [("ml-100k", "ml-100k", {})]
    if (Path(data) / "beauty" / "beauty.train.inter").is_file():
        datasets.append(("beauty", "beauty", {**BEAUTY, "data_path": str(data)}))
    return datasets


def save_results(name, data):
    """Write ``data`` as ``bench/results/<name>.json`` (numpy scalars as numbers); return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")
    return path


def machine():
    """The software a timing was measured with, for the results JSON."""
    import torch

    import recbole_lightemb
    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "recbole_lightemb": recbole_lightemb.__version__}


def epoch_seconds(trainer, train_data):
    """Wall seconds of one training epoch through RecBole's trainer."""
    start = time.perf_counter()
    trainer._train_epoch(train_data, 0, show_progress=False)
    return time.perf_counter() - start


def evaluation_seconds(trainer, loader):
    """Wall seconds and metrics of one evaluation through RecBole's trainer (the model as it stands)."""
    start = time.perf_counter()
    result = trainer.evaluate(loader, load_best_model=False, show_progress=False)
    return time.perf_counter() - start, dict(result)


def alternate(timers, rounds):
    """Seconds of each timer (name -> callable returning seconds), called in turn once per round.

    One warm-up call each comes first (graph building, allocator, caches). Taking the forms in turn,
    side by side, makes a slow spell of this shared machine hit every form of a round alike.
    """
    for timer in timers.values():
        timer()
    seconds = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            seconds[name].append(timer())
    return seconds


def time_and_memory(runs, rounds):
    """Side by side: epoch seconds of each ``(trainer, train_data)`` by name, taken in turn (:func:`alternate`),
    and the bytes each holds while training afterwards (``compression.training``'s figures)."""
    from recbole_lightemb.report import training_memory

    times = alternate({name: (lambda t=trainer, d=data: epoch_seconds(t, d)) for name, (trainer, data) in runs.items()},
                      rounds)
    return times, {name: training_memory(trainer.model, trainer.optimizer) for name, (trainer, _) in runs.items()}
