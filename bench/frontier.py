"""The frontier benchmark: every method against the ``uniform`` curve at equal bytes, trained to convergence.

For a setting (model, dataset, protocol) it trains ``full``, ``uniform`` at 0.05, 0.1, 0.25 and 0.5
of the full tables' bytes, and every requested arm, over N seeds, through the comparison's own
``run_arm`` (the arms differ in ``emb`` and its keys only). Early stopping on validation Recall@20
with a patience of 10 evaluations ends each run; the epoch cap is set far above where the runs stop,
and a run that reaches it anyway is marked *not converged* in the table and the plot.

Each finished run is written at once to ``bench/results/frontier/<setting>/<arm>-seed<k>.json``
and a later invocation skips runs already there, so a stopped session loses nothing. After the
runs (or with ``--report``), the runs are gathered into ``bench/results/frontier/<setting>.json``,
a Markdown table ``<setting>.md`` (mean ± std, bytes / full, Δ vs uniform at the same bytes with
the sign per seed, convergence) and a plot ``<setting>.png``.

    python bench/frontier.py --setting bpr-ml100k --seeds 3 --workers 2
    python bench/frontier.py --setting lightgcn-beauty --data ../shared/datasets --arms full uniform-0.25 baco-0.25
    python bench/frontier.py --setting bpr-ml100k --report          # tables and plot from the runs so far
    python bench/frontier.py --setting lightgcn-beauty --snapshot   # runs still going: their best so far
    python bench/frontier.py --summary      # per budget over every reported setting: the arm to use
    python bench/frontier.py --setting lightgcn-beauty-authors --epochs 2 --out /tmp/check   # a quick check

``--report`` also prints the runs still missing and the minutes they would take at the pace of the setting's
finished runs. ``--summary`` reads every ``<setting>.json`` and writes ``which-method.md`` and ``.json``: per
budget of a setting's uniform curve, the best arm within those bytes, ``uniform`` there, and the best of the
papers' methods (BACO, CIESS, SCALL), each with its seeds and convergence.

A run longer than a session keeps its checkpoint and plan in ``$TMPDIR/frontier-work/<setting>/<arm>-seed<k>/``
while it trains; stopped, it resumes there from its best epoch at the next invocation (``resume_checkpoint``;
the samplers' random state is not in a checkpoint, so the run is not bit-identical to an unstopped one, and
its JSON says where it resumed); a CIESS search stopped after an episode goes on after it (``ciess_resume_search``;
the plan records the episodes it resumed at), and a stream stopped after a segment after that one (``stream_resume``).
A state the plugin refuses (one an older plugin wrote, say) fails the run, and its recorded error names the folder
to remove before ``--retry_failed`` runs it afresh. A run another live process is training (a second
frontier, say) is skipped, and a run's process ends once the frontier that started it is gone. ``--snapshot`` tests the best checkpoint so far of each of this setting's
runs there, running or stopped (read as data only), and writes it to ``<setting>/unfinished/<arm>-seed<k>.json``,
marked *not converged*. The report shows such a run for an arm and seed that has no finished run, and drops
it once one is there.
"""

import argparse
import fcntl
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BEAUTY, RESULTS  # noqa: E402

OUT = RESULTS / "frontier"
WORK = Path(tempfile.gettempdir()) / "frontier-work"
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"
UNIFORM_BUDGETS = (0.05, 0.1, 0.25, 0.5)
METHOD_BUDGETS = (0.1, 0.25)
METRIC = "recall@20"

PROTOCOL = {
    "embedding_size": 64, "learning_rate": 0.001, "train_batch_size": 2048, "eval_batch_size": 409600,
    "metrics": ["Recall", "NDCG"], "topk": [20], "valid_metric": "Recall@20",
    "stopping_step": 10, "show_progress": False, "state": "WARNING",
}
"""Shared by every arm of every setting; a setting adds its own cap, evaluation step and model keys."""

PRECISION_ARMS = [
    ("quant-0.05", "quant", 0.05, {}),
    ("quant-0.05[2 bits]", "quant", 0.05, {"quant_bits": 2}),
    ("uniform-0.05[8-4-2 bits by frequency]", "uniform", 0.05, {"emb_bits": 4, "emb_bits_policy": "frequency"}),
    ("uniform-0.1[8-4-2 bits by frequency]", "uniform", 0.1, {"emb_bits": 4, "emb_bits_policy": "frequency"}),
    ("freq-0.1[4 bits]", "freq", 0.1, {"emb_bits": 4}),
    ("baco-0.25[4 bits, residual@4bit]", "baco", 0.25, {"emb_bits": 4, "baco_residual": 8, "baco_residual_bits": 4})]
"""Issue 33's precision axis: fewer bits at 5 %, mixed precision by frequency, frequency widths in 4 bits, BACO's
codebook and private residual in 4 bits."""

MASTER_FREE_ARMS = [
    ("quant-0.1[master-free]", "quant", 0.1, {"emb_master_free": True}),
    ("quant-0.05[master-free]", "quant", 0.05, {"emb_master_free": True}),
    ("freq-0.1[4 bits, master-free]", "freq", 0.1, {"emb_bits": 4, "emb_master_free": True}),
    ("quant-0.25[8 bits, master-free]", "quant", 0.25, {"quant_bits": 8, "emb_master_free": True}),
    ("quant-0.1[master-free, 16-bit codes]", "quant", 0.1, {"emb_master_free": True, "emb_master_free_bits": 16}),
    ("quant-0.05[master-free, 16-bit codes]", "quant", 0.05, {"emb_master_free": True, "emb_master_free_bits": 16}),
    ("quant-0.25[8 bits, master-free, 16-bit codes]", "quant", 0.25,
     {"quant_bits": 8, "emb_master_free": True, "emb_master_free_bits": 16}),
    ("uniform-0.1[8-4-2 bits by frequency, master-free, 16-bit codes]", "uniform", 0.1,
     {"emb_bits": 4, "emb_bits_policy": "frequency", "emb_master_free": True, "emb_master_free_bits": 16})]
"""Issue 33's training without float32 masters: the best two low-bit arms, 8-bit rows as wide as full ones
(0.25 of the stored bytes, under a tenth of the bytes held while training), and the same rows, and mixed
precision, trained as 16-bit codes read on their stored grid (a fixed-point master: 2 bytes a value while
training)."""

CIESS_SEARCH_ARMS = [(f"ciess-{b:g}[paper x{scale:g}]", "ciess", b, {"ciess_mode": "paper", "ciess_search_scale": scale})
                     for scale in (0.0625, 0.25, 1.0) for b in METHOD_BUDGETS]
CIESS_SEARCH_ARMS += [(f"ciess-{b:g}[fast]", "ciess", b, {"ciess_mode": "fast"}) for b in METHOD_BUDGETS]
CIESS_SEARCH_ARMS += [(f"ciess-0.1[paper x0.0625, projection{bits}]", "ciess", 0.1,
                       {"ciess_mode": "paper", "ciess_search_scale": 0.0625, "ciess_projection": True, **extra})
                      for bits, extra in (("", {}), (", 4 bits", {"emb_bits": 4}))]
"""Issue 32's search-budget question: CIESS as published at 1/16, 1/4 and 1 of the authors' per-step training,
and the plugin's fast mode (the earlier ``ciess-*`` runs of this setting are fast mode, with other lambdas); and
issue 33's precision axis on CIESS: its grouped form, float32 and with 4-bit rows."""

SCALL_PAPER_ARMS = [
    ("scall-0.125[paper]", "scall", 0.125, {"scall_mode": "paper"}),
    ("scall-0.125[paper,reward=tanh-converged,max 40 steps]", "scall", 0.125,  # uncapped, its search ran 300 steps
     {"scall_mode": "paper", "scall_reward": "tanh", "scall_reward_baseline": "previous",  # of segment 1 unsettled
      "scall_max_search_steps": 40}),
    ("scall-0.125[paper,max 40 steps]", "scall", 0.125, {"scall_mode": "paper", "scall_max_search_steps": 40}),
    ("scall-0.125[paper,fixed]", "scall", 0.125, {"scall_mode": "paper", "scall_action": [0.5, 0.5, 0.5]}),
    ("scall-0.125[flat,rho=0.5]", "scall", 0.125,
     {"scall_mode": "paper", "scall_distribution": "flat", "scall_action": [0.5, 0.5, 0.5]})]
"""Issue 32's SCALL questions: the published search (and, since it does not settle here in the hours a segment
gets, the same search stopped after 40 steps: a named departure), its reward against today's (capped alike), the authors'
starting action without search (a = 0.5, linear α), and uniform widths per side (is the gain the shape or the
user/item split?)."""

def _stream_precision_arms(budget):
    """uniform and SCALL's two searchless shapes at ``budget``, each row in 4 bits with its scale."""
    return [(f"uniform-{budget:g}[4 bits]", "uniform", budget, {"emb_bits": 4}),
            (f"scall-{budget:g}[paper,fixed,4 bits]", "scall", budget,
             {"scall_mode": "paper", "scall_action": [0.5, 0.5, 0.5], "emb_bits": 4}),
            (f"scall-{budget:g}[flat,rho=0.5,4 bits]", "scall", budget,
             {"scall_mode": "paper", "scall_distribution": "flat", "scall_action": [0.5, 0.5, 0.5], "emb_bits": 4})]


STREAM_PRECISION_ARMS = _stream_precision_arms(0.125)
STREAM_PRECISION_ARMS += [(f"{label[:-1]}, master-free, 16-bit codes]", method, budget,
                           {**extra, "emb_master_free": True, "emb_master_free_bits": 16})
                          for label, method, budget, extra in STREAM_PRECISION_ARMS[:2]]
STREAM_PRECISION_ARMS += [("uniform-0.05", "uniform", 0.05, {}), *_stream_precision_arms(0.05)]
STREAM_PRECISION_ARMS += [(f"scall-{b:g}[paper,fixed,8-4-2 bits by frequency]", "scall", b,
                           {"scall_mode": "paper", "scall_action": [0.5, 0.5, 0.5], "emb_bits": 4,
                            "emb_bits_policy": "frequency"}) for b in (0.125, 0.05)]
"""Issue 33 on a stream: the bytes of 0.125 of the float rows (8 floats, 32 bytes a seen entity), each row in 4 bits
with its scale: uniform 56 wide, SCALL 54 values an entity on average (a byte of slack a row set aside), seven times
the floats; uniform and SCALL's two searchless shapes; the first two also trained without float32 masters (16-bit
codes, as the best master-free arms off the stream). At 0.05 the widths are far from d = 64, where a shape has room
to matter: uniform 3 floats an entity (a stream floors its width), 12 bytes, 16 four-bit values; SCALL's budget is
not floored, 3.2 floats, 15.6 values an entity on average. Last, SCALL's fixed shape at bits by frequency (8 / 4 / 2,
the widest rows the most precise) against the same shape at 4 bits for all, at both budgets."""

AUTHORS_PROTOCOL = yaml.safe_load((ROOT / "properties" / "presets" / "baco_authors_protocol.yaml").read_text())
"""The BACO authors' training protocol (N(0, 1) tables, negatives from all items, no L2 term, batch 1024,
validation every 10 epochs, 50 epochs of patience, cap 1000), from its preset."""

BACO_AUTHORS_SIZE = ("baco-authors", "baco", None,
                     {"baco_mode": "paper", "baco_budget_rule": "authors", "baco_rows": 9000, "baco_resolution": 0.1308})
"""BACO at the authors' Beauty size: their budget (9000 rows: K = 8650 codebook rows, codes not charged), γ searched
from theirs for it."""

BACO_AUTHORS_GAMMA = ("baco-authors[fixed γ]", "baco", None, {**BACO_AUTHORS_SIZE[3], "baco_search": False})
"""Their procedure itself: γ = 0.1308 as is, K only stopping the 5 passes early; the rows it ends with depend on
the visiting order (the seed), 5.5–12.6 k on Beauty, and may exceed K (recorded in the plan)."""

CURVE_EPOCHS = (50, 100, 200)
"""Where the curve table reads each run (as if capped there), besides its own stop."""


EARLIER_MODES = {"baco": {"baco_mode": "stated"}, "ciess": {"ciess_mode": "fast"}, "scall": {"scall_mode": "fast"}}
"""The procedure the arms defined before the paper modes existed ran (and their run files hold): they keep it,
so a missing seed run now is the same method as its siblings; the paper modes have arms of their own."""


def _earlier(arms):
    """``arms`` with each paper method's arm pinned to the mode of :data:`EARLIER_MODES`."""
    return [(label, method, budget, {**EARLIER_MODES.get(method, {}), **extra}) for label, method, budget, extra in arms]


def _arms(methods, budgets=METHOD_BUDGETS, variants=()):
    """``full``, the uniform curve, every method at every budget, then named variants (pinned as :func:`_earlier`)."""
    arms = [("full", "full", None, {})]
    arms += [(f"uniform-{b:g}", "uniform", b, {}) for b in UNIFORM_BUDGETS]
    arms += [(f"{m}-{b:g}", m, b, {}) for m in methods for b in budgets]
    return _earlier(arms + list(variants))


ML100K_ARMS = _arms(("hash", "qr", "baco", "ciess", "freq", "quant"), variants=[
    ("quant-0.25[8 bits]", "quant", 0.25, {"quant_bits": 8}),
    ("freq-0.25[projection]", "freq", 0.25, {"freq_projection": True}),
    ("ciess-0.1[projection]", "ciess", 0.1, {"ciess_projection": True}),
    ("ciess-0.25[projection]", "ciess", 0.25, {"ciess_projection": True}),
    ("ciess-0.25[batches=100]", "ciess", 0.25, {"ciess_step_batches": 100}),
    ("ciess-0.25[lambda=0.1]", "ciess", 0.25, {"ciess_lambda": 0.1}),
    ("ciess-0.25[lambda=0.01]", "ciess", 0.25, {"ciess_lambda": 0.01}),
    ("ciess-0.1[lambda=0.01]", "ciess", 0.1, {"ciess_lambda": 0.01}),
    ("freq-0.25[alpha=0.1]", "freq", 0.25, {"freq_alpha": 0.1}),
    ("baco-0.1[residual=3]", "baco", 0.1, {"baco_residual": 3}),
    ("baco-0.25[residual=8]", "baco", 0.25, {"baco_residual": 8}),
    ("baco-0.25[split]", "baco", 0.25, {"baco_split": True}),
    ("baco-0.25[head=0.1]", "baco", 0.25, {"baco_head_share": 0.1}),
    ("baco-0.25[head=0.2]", "baco", 0.25, {"baco_head_share": 0.2}),
    ("baco-0.25[head=0.1+split]", "baco", 0.25, {"baco_head_share": 0.1, "baco_split": True}),
    ("baco-0.25[residual=48@4bit]", "baco", 0.25, {"baco_residual": 48, "baco_residual_bits": 4})])

LIGHTGCN_BEAUTY_MASTER_FREE = [arm for arm in MASTER_FREE_ARMS
                               if arm[0] in ("quant-0.1[master-free, 16-bit codes]",
                                             "quant-0.05[master-free, 16-bit codes]",
                                             "quant-0.25[8 bits, master-free, 16-bit codes]")]
"""Issue 33's master-free variants of the best two low-bit arms, for the one-seed LightGCN Beauty setting: the
master-free form that won on the three-seed settings (16-bit codes) of 4-bit rows at 10 % and 5 %, and of 8-bit
rows at 0.25 (0.125 of full's training bytes: the arm that met the training-bytes goal there)."""

SAME_FLOATS_FASTER = {"graph_csr": True}
"""Added to the LightGCN settings with runs still to do (2026-12-06): on one torch thread, as the frontier trains
(on an Intel CPU with torch's MKL build), LightGCN with its adjacency in CSR trains RecBole's floats bit for bit (on AMD EPYC within the last bit), about twice as fast on Beauty
(``bench/graph_csr.py``), so runs with and without it compare."""

SETTINGS = {
    "bpr-ml100k": {"model": "BPR", "dataset": "ml-100k", "seeds": 3, "arms": ML100K_ARMS,
                   "config": {"epochs": 1000, "eval_step": 1}},
    "bpr-ml100k-patient": {  # bpr-ml100k evaluated every 5 epochs: a patience of 50 epochs, not 10, so a run
        "model": "BPR", "dataset": "ml-100k", "seeds": 3,  # is not stopped on the plateau narrow tables cross
        "arms": _arms((), variants=[("ciess-0.1[lambda=0.01]", "ciess", 0.1, {"ciess_lambda": 0.01}),
            ("ciess-0.25[lambda=0.01]", "ciess", 0.25, {"ciess_lambda": 0.01}),
            ("ciess-0.25", "ciess", 0.25, {}), ("freq-0.25", "freq", 0.25, {}), ("quant-0.1", "quant", 0.1, {}),
            ("baco-0.25[residual=48@4bit]", "baco", 0.25, {"baco_residual": 48, "baco_residual_bits": 4}),
            *PRECISION_ARMS, *MASTER_FREE_ARMS, *CIESS_SEARCH_ARMS,
            ("baco-0.25[8-4-2 bits by frequency, residual@4bit]", "baco", 0.25,  # issue 33: mixed precision on BACO
             {"emb_bits": 4, "emb_bits_policy": "frequency", "baco_residual": 8, "baco_residual_bits": 4})]),
        "config": {"epochs": 1000, "eval_step": 5}},
    "lightgcn-ml100k": {"model": "LightGCN", "dataset": "ml-100k", "seeds": 3, "arms": ML100K_ARMS,
                        "config": {"epochs": 1500, "eval_step": 5, "n_layers": 2}},  # at 600, uniform-0.1 hit the cap
    "lightgcn-ml100k-patient": {  # lightgcn-ml100k evaluated every 10 epochs: 100 epochs of patience, because
        "model": "LightGCN", "dataset": "ml-100k", "seeds": 3,  # its narrow tables stop on a plateau after 50
        "arms": _arms(("quant", "ciess", "baco"), budgets=(0.1,), variants=PRECISION_ARMS + MASTER_FREE_ARMS),
        "config": {"epochs": 2000, "eval_step": 10, "n_layers": 2, **SAME_FLOATS_FASTER}},
    "bpr-beauty": {"model": "BPR", "dataset": "beauty", "seeds": 3, "arms": ML100K_ARMS + PRECISION_ARMS + MASTER_FREE_ARMS,
                   "config": {**BEAUTY, "epochs": 1000, "eval_step": 2}},
    "lightgcn-beauty": {
        "model": "LightGCN", "dataset": "beauty", "seeds": 1,
        "arms": _arms((), variants=[("baco-0.25", "baco", 0.25, {}),
            ("baco-0.25[item=degree]", "baco", 0.25, {"baco_item_weight": "degree"}),
            ("hash-0.25", "hash", 0.25, {}), ("qr-0.25", "qr", 0.25, {}),
            ("quant-0.1", "quant", 0.1, {}),
            ("baco-0.25[residual=48@4bit]", "baco", 0.25, {"baco_residual": 48, "baco_residual_bits": 4}),
            BACO_AUTHORS_SIZE, *PRECISION_ARMS, *LIGHTGCN_BEAUTY_MASTER_FREE]),
        "config": {**BEAUTY, "epochs": 2000, "eval_step": 5, "n_layers": 2, **SAME_FLOATS_FASTER}},
    "lightgcn-beauty-authors": {  # lightgcn-beauty under the BACO authors' protocol, trained to its own stop; the
        "model": "LightGCN", "dataset": "beauty", "seeds": 1,  # test curve gives the arms' ratio at 50/100/200 epochs
        "arms": [("full", "full", None, {}), ("uniform-0.25", "uniform", 0.25, {}), BACO_AUTHORS_SIZE,
                 BACO_AUTHORS_GAMMA],
        "config": {**BEAUTY, **AUTHORS_PROTOCOL, "emb_test_curve": True, **SAME_FLOATS_FASTER}},
    "stream-ml100k": {
        "model": "LightGCN", "dataset": "ml-100k", "seeds": 3,
        "arms": _earlier([("full", "full", None, {}), ("uniform-0.125", "uniform", 0.125, {}),
                          ("scall-0.125", "scall", 0.125, {}), ("baco-0.125", "baco", 0.125, {})]),
        "config": {"stream": True, "stream_segments": 8, "stream_stopping_step": 10, "epochs": 600, "eval_step": 2,
                   "n_layers": 2}},
    "stream-ml100k-user": {  # the same stream, each user's own rows of a segment cut 80/10/10: 138-222 test users
        "model": "LightGCN", "dataset": "ml-100k", "seeds": 3,  # per segment where the time cut leaves 1-35
        "arms": _earlier([("full", "full", None, {}), ("uniform-0.125", "uniform", 0.125, {}),
                          ("scall-0.125", "scall", 0.125, {}), ("baco-0.125", "baco", 0.125, {}),
                          ("scall-0.125[baseline=uniform]", "scall", 0.125, {"scall_reward_baseline": "uniform"}),
                          ("scall-0.125[best]", "scall", 0.125,
                           {"scall_reward_baseline": "uniform", "scall_choice": "best"})]),
        "config": {"stream": True, "stream_segments": 8, "stream_split": "user", "stream_stopping_step": 10,
                   "epochs": 600, "eval_step": 2, "n_layers": 2, "graph_csr": True}},
    "stream-ml100k-user-patient": {  # evaluated every 5 epochs: 50 epochs of patience in every segment, to tell
        "model": "LightGCN", "dataset": "ml-100k", "seeds": 3,  # SCALL's late segments from early stops
        "arms": _earlier([("full", "full", None, {}), ("uniform-0.125", "uniform", 0.125, {}),
                          ("scall-0.125", "scall", 0.125, {}), ("baco-0.125", "baco", 0.125, {}),
                          ("scall-0.125[fixed]", "scall", 0.125, {"scall_action": [0.5, 0.5, 0.5]})]) + SCALL_PAPER_ARMS
        + STREAM_PRECISION_ARMS,
        "config": {"stream": True, "stream_segments": 8, "stream_split": "user", "stream_stopping_step": 10,
                   "epochs": 1500, "eval_step": 5, "n_layers": 2, "graph_csr": True}},  # at 600, a segment hit the cap
}


def resolve_arms(setting, names):
    """The setting's arms, or those named; an unknown name is an error before any training."""
    arms = SETTINGS[setting]["arms"]
    if not names:
        return arms
    known = {a[0]: a for a in arms}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"error: --arms {unknown[0]!r}: not an arm of setting {setting!r}; "
                         f"allowed: {', '.join(known)}")
    return [known[n] for n in names]


def run_path(setting, label, seed):
    return OUT / setting / f"{label}-seed{seed}.json"


def claim_run(setting, label, seed):
    """An exclusive lock on one (arm, seed) for as long as the returned handle is open, or None while another
    process holds it: two processes on one run resume from the same state, and the first to finish deletes the
    folder the other still writes to, so its error overwrites the finished run. The lock ends with its process."""
    lock = WORK / setting / f"{label}-seed{seed}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock, "a")  # noqa: SIM115  (held open for the run's lifetime)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def stop_when_orphaned(parent=None, interval=5.0):
    """End this process once ``parent`` (by default the frontier that started this pool worker) is gone:
    killed, or its session over. A pool worker is not killed with its parent; left running, it trains a run
    the next frontier resumes too. What it has saved (checkpoints, search and stream states, all written
    atomically) stays resumable."""
    parent = parent or multiprocessing.parent_process().pid

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _one_run(task):
    """One (arm, seed) in a fresh process; whatever goes wrong becomes the run's recorded error."""
    setting, (label, method, budget, extra), seed, data, threads, out, epochs, retry_failed = task
    global OUT
    OUT = Path(out)
    stop_when_orphaned()  # a pool worker runs one task (maxtasksperchild=1)
    claim = claim_run(setting, label, seed)
    if claim is None or not to_do(setting, label, seed, retry_failed):  # held, or finished since it was queued
        print(f"[{setting}] {label} seed {seed}: another process is training it or has finished it; skipped",
              flush=True)
        if claim is not None:
            claim.close()
        return None
    try:
        return _train_one(setting, label, method, budget, extra, seed, data, threads, epochs)
    except Exception as error:  # noqa: BLE001  (one run's failure must not stop the others)
        run = {"method": method, "budget": budget, "seed": seed, "error": f"{type(error).__name__}: {error}"}
        return _write_run(setting, label, extra, threads, run)
    finally:
        claim.close()


def _train_one(setting, label, method, budget, extra, seed, data, threads, epochs=None):
    """One (arm, seed) with ``threads`` torch threads, through the comparison's ``run_arm``; ``epochs`` caps it
    below the setting's cap (a quick check: the run is not converged and is done again without it)."""
    import torch

    torch.set_num_threads(threads)
    sys.argv[1:] = []  # RecBole's Config reads the command line: the bench's own flags are not its keys
    from recbole_lightemb.analysis.compare import run_arm

    spec = SETTINGS[setting]
    config = {**PROTOCOL, **spec["config"], **extra, **({"epochs": epochs} if epochs else {})}
    if "benchmark_filename" in config:
        config["data_path"] = str(data)
    from recbole_lightemb import get_method

    workdir = work_dir(setting, label, seed)
    from recbole_lightemb.ciess.search_state import SUFFIX as SEARCH_STATE
    from recbole_lightemb.stream.resume import SUFFIX as STREAM_STATE

    saved = sorted((workdir / "saved").glob("*.pth"), key=os.path.getmtime)
    searches = [p for p in saved if p.name.endswith(SEARCH_STATE)]
    streams = [p for p in saved if p.name.endswith(STREAM_STATE)]
    checkpoints = [p for p in saved if p not in searches + streams]
    if searches and method == "ciess":
        config["ciess_resume_search"] = str(searches[-1])  # a search stopped before: go on after its last episode
        print(f"[{setting}] {label} seed {seed}: resuming the search from {searches[-1]}", flush=True)
    elif streams and config.get("stream"):
        config["stream_resume"] = str(streams[-1])  # a stream stopped before: go on after its last segment
        print(f"[{setting}] {label} seed {seed}: resuming the stream from {streams[-1]}", flush=True)
    elif checkpoints and get_method(method).trainer is None and not config.get("stream"):
        config["resume_checkpoint"] = str(checkpoints[-1])  # stopped before: go on from its best epoch
        print(f"[{setting}] {label} seed {seed}: resuming from {checkpoints[-1]}", flush=True)
    elif saved:  # stopped in a stream's first segment, CIESS's first episode or final training: start again
        print(f"[{setting}] {label} seed {seed}: cannot resume, starting again", flush=True)
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # RecBole writes ./log and ./log_tensorboard
    start = time.perf_counter()
    run = run_arm(spec["model"], spec["dataset"], None, config, method, budget, seed, str(workdir / "saved"))
    run["wall_s"] = time.perf_counter() - start  # this invocation's; a resumed run says where it resumed
    resumed_from = [config[k] for k in ("ciess_resume_search", "stream_resume", "resume_checkpoint") if k in config]
    if run["error"] and resumed_from and f"={resumed_from[0]!r}" in run["error"]:  # the file itself refused (an
        # older plugin's, say): it would be refused at every retry
        run["error"] += f" (resuming {resumed_from[0]}; remove {workdir} to run it afresh with --retry_failed)"
    run["plan"] = {k: v for k, v in (run.get("plan") or {}).items() if k not in ("probes", "history", "file")}
    path = _write_run(setting, label, extra, threads, run)
    if not run["error"]:  # a failed run keeps its checkpoint and plan
        os.chdir(tempfile.gettempdir())
        shutil.rmtree(workdir)
    return path


def to_do(setting, label, seed, retry_failed=False):
    """Whether a run is (still or again) to do: not recorded; failed (with ``--retry_failed``); or stopped by an
    epoch cap lower than the setting's cap now (raised since so that it can stop early; a run that stopped early
    is unchanged by a higher cap and is kept)."""
    path = run_path(setting, label, seed)
    if not path.exists():
        return True
    run = json.loads(path.read_text())
    if run["error"]:
        return retry_failed
    conv = run["convergence"]
    return not conv["converged"] and conv["epoch_cap"] < SETTINGS[setting]["config"]["epochs"]


def work_dir(setting, label, seed):
    """Where a run keeps its checkpoint, plan and logs while it trains: the same folder every invocation, so a
    run stopped with its session resumes from its best epoch in the next one (and ``--snapshot`` finds it)."""
    return WORK / setting / f"{label}-seed{seed}"


def method_mode(run):
    """Which procedure of a paper's method a run used (``mode``: ``paper``, ``fast``, ``stated``; CIESS also its
    ``search_scale``), from the plan the run wrote; empty for methods without modes. Run files written before
    the modes existed have none: their CIESS and SCALL are today's ``fast``, their BACO ``stated``."""
    facts = run.get("plan") or {}
    return {key: facts[key] for key in ("mode", "search_scale", "departures") if key in facts}


def _write_run(setting, label, extra, threads, run):
    """Write one run's JSON at once (atomically), so a stopped benchmark keeps it; a finished run drops the
    ``--snapshot`` of it taken while it trained."""
    seed = run["seed"]
    run.update(label=label, setting=setting, extra=extra, threads=threads, host=socket.gethostname())
    run.update(method_mode(run))
    path = run_path(setting, label, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(run, indent=1, default=float) + "\n")
    tmp.replace(path)
    if not run["error"]:  # its snapshot from while it trained is superseded
        (OUT / setting / "unfinished" / f"{label}-seed{seed}.json").unlink(missing_ok=True)
    status = run["error"] or f"{METRIC} {run['test'][METRIC]:.4f} converged={run['convergence']['converged']}"
    print(f"[{setting}] {label} seed {seed}: {status} ({run.get('wall_s', 0):.0f} s)", flush=True)
    return str(path)


def arm_of(setting, config):
    """The label of the setting's arm a run's config belongs to: the same method and budget, and every key
    of the arm's own settings equal; the most specific such arm (a variant before its plain arm)."""
    matches = [(len(extra), label) for label, method, budget, extra in SETTINGS[setting]["arms"]
               if method == config["emb"] and budget == config["emb_budget"]
               and all(key in config and config[key] == value for key, value in extra.items())]
    return max(matches)[1] if matches else None


def snapshot(setting, data):
    """Test the best checkpoint so far of every run of ``setting`` not finished on this machine (running, or
    stopped and waiting to resume); write each as an unfinished run (not converged). Returns the paths written."""
    import torch

    sys.argv[1:] = []
    from recbole.utils import get_trainer

    from recbole_lightemb import load_data_and_model
    from recbole_lightemb.analysis.buckets import bucket_recall
    from recbole_lightemb.ciess.search_state import SUFFIX as SEARCH_STATE
    from recbole_lightemb.stream.resume import SUFFIX as STREAM_STATE
    from recbole_lightemb.report import compression_report

    torch.set_num_threads(1)
    written = []
    for checkpoint in sorted((WORK / setting).glob("*/saved/*.pth")):
        if checkpoint.name.endswith((SEARCH_STATE, STREAM_STATE)):  # a run's state, not a model to test
            continue
        try:  # the run may be writing this file right now: try again later
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            where = {"data_path": str(data)} if "benchmark_filename" in SETTINGS[setting]["config"] else {}
            config, model, _, train_data, _, test_data = load_data_and_model(str(checkpoint), **where)
        except Exception as error:  # noqa: BLE001
            print(f"[{setting}] {checkpoint}: not readable now ({type(error).__name__}: {error}); skipped")
            continue
        label = arm_of(setting, config)
        if label is None:
            continue
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        test = dict(trainer.evaluate(test_data, load_best_model=False, show_progress=False))
        run = {"method": config["emb"], "budget": config["emb_budget"], "seed": config["seed"], "error": None,
               "valid": {METRIC: float(state["best_valid_score"])}, "test": test,
               "compression": {k: v for k, v in compression_report(model).items() if k != "tables"},
               "convergence": {"epoch_cap": config["epochs"], "epochs_run": None, "best_epoch": int(state["epoch"]),
                               "stopping_step": config["stopping_step"], "eval_step": config["eval_step"],
                               "stopped_early": False, "converged": False},
               "test_buckets": bucket_recall(trainer, test_data, train_data._dataset, k=20),
               "unfinished": f"still training when tested; best validation so far at epoch {int(state['epoch'])}",
               "label": label, "setting": setting, "extra": dict(next(a[3] for a in SETTINGS[setting]["arms"]
                                                                        if a[0] == label)),
               "threads": 1, "host": socket.gethostname()}
        path = OUT / setting / "unfinished" / f"{label}-seed{run['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run, indent=1, default=float) + "\n")
        print(f"[{setting}] {label} seed {run['seed']}: unfinished, best epoch {run['convergence']['best_epoch']}, "
              f"{METRIC} {test[METRIC]:.4f}", flush=True)
        written.append(str(path))
    return written


def time_to_do(runs, labels):
    """Minutes of runs the ``labels`` still to do would take, each at the mean wall time of its arm's finished runs,
    or else of its method's in this setting (a resumed run counts only its last invocation, so this is a lower
    bound), and the labels with neither."""
    from recbole_lightemb.analysis.frontier import arm_label

    walls = {}
    for run in runs:
        if not run.get("error") and not run.get("unfinished") and run.get("wall_s"):
            for key in (arm_label(run), run["method"]):
                walls.setdefault(key, []).append(run["wall_s"])
    method = {a[0]: a[1] for setting in SETTINGS.values() for a in setting["arms"]}
    paces = [walls.get(label) or walls.get(method.get(label)) for label in labels]
    minutes = sum(sum(p) / len(p) for p in paces if p) / 60
    return minutes, sorted({label for label, pace in zip(labels, paces) if not pace})


def capped_at(run, epochs, metric=METRIC):
    """The test ``metric`` the run would report had it been capped at ``epochs``: that of its best validation
    within them (the last of equal bests, as RecBole keeps), read off its test curve (``emb_test_curve``);
    None without one, or without an evaluation by then."""
    best = None
    for point in (run.get("convergence") or {}).get("curve") or []:
        if "test" in point and point["epochs"] <= epochs and (best is None or point["valid"] >= best["valid"]):
            best = point
    return None if best is None else best["test"][metric]


def format_curve_table(runs, metric=METRIC, epochs=CURVE_EPOCHS):
    """Per run with a test curve: where it ends, the test ``metric`` had it been capped at each of ``epochs``
    and at its own stop, and each over the ``full`` run of the same seed; "" when no run has a test curve."""
    from recbole_lightemb.analysis.frontier import shown_label

    curved = [r for r in runs if not r.get("error") and any("test" in p for p in r["convergence"].get("curve") or [])]
    if not curved:
        return ""
    full = {r["seed"]: r for r in curved if r["method"] == "full" and not r.get("label")}
    heads = [f"@{e}" for e in epochs] + ["at its stop"]
    lines = [f"Test {metric} as if capped at {', '.join(map(str, epochs))} epochs (best validation by then) and at "
             "each run's own stop; ÷ full: over the full model's, same seed", "",
             "| arm | seed | best / last epoch | converged | " + " | ".join(heads) + " | "
             + " | ".join(f"÷ full {h}" for h in heads) + " |", "|---" * (4 + 2 * len(heads)) + "|"]
    for run in curved:
        conv, reference = run["convergence"], full.get(run["seed"])
        values = [capped_at(run, e, metric) for e in epochs] + [run["test"][metric]]
        bases = [capped_at(reference, e, metric) for e in epochs] + [reference["test"][metric]] if reference \
            else [None] * len(values)
        cells = [f"{v:.4f}" if v is not None else "-" for v in values]
        cells += [f"{v / b:.3f}" if v is not None and b else "-" for v, b in zip(values, bases)]
        lines.append(f"| {shown_label(run)} | {run['seed']} | {conv['best_epoch']} / {conv['epochs_run']} | "
                     f"{'yes' if conv['converged'] else 'no (cap ' + str(conv['epoch_cap']) + ')'} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_search_cost(runs):
    """Per arm whose runs searched (CIESS): minutes of pre-training, of the whole search (pre-training included;
    summed over a resumed run's invocations) and of a whole run (runs never stopped only); "" when none searched."""
    from recbole_lightemb.analysis.frontier import shown_label

    searched = [r for r in runs if not r.get("error") and r["method"] == "ciess"  # a stream's plan: its last segment's
                and (r.get("plan") or {}).get("search_s") is not None]
    if not searched:
        return ""
    arms = {}
    for run in searched:
        arms.setdefault(shown_label(run), []).append(run)
    lines = ["Search cost, minutes a run (mean over its runs; a whole run only where it was never stopped)", "",
             "| arm | runs | pre-training | search incl. pre-training | whole run (unstopped runs) |", "|---" * 5 + "|"]
    for label, group in arms.items():
        pretrain = [r["plan"]["pretrain_s"] / 60 for r in group if r["plan"].get("pretrain_s") is not None]
        whole = [r["wall_s"] / 60 for r in group if not r["plan"].get("resumed_at_episodes") and r.get("wall_s")]
        lines.append(f"| {label} | {len(group)} | " + (f"{statistics.mean(pretrain):.1f}" if pretrain else "-")
                     + f" | {statistics.mean(r['plan']['search_s'] for r in group) / 60:.1f} | "
                     + (f"{statistics.mean(whole):.1f} ({len(whole)})" if whole else "-") + " |")
    return "\n".join(lines)


def report(setting):
    """Gather the setting's run files into its JSON, Markdown table and plot; print the table; regenerate
    docs/benchmarks.md."""
    table, summary, rows, runs = setting_report(setting)
    spec = SETTINGS[setting]
    from recbole_lightemb.analysis.plot import plot_frontier

    (OUT / f"{setting}.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    (OUT / f"{setting}.md").write_text(table + "\n")
    plot_frontier(rows, METRIC, str(OUT / f"{setting}.png"),
                  title=f"{spec['model']} on {spec['dataset']} ({setting}; {len({r['seed'] for r in runs})} seed(s))")
    write_benchmarks_doc()
    print(table)
    if summary["missing"]:
        print(f"missing runs ({len(summary['missing'])}): {', '.join(summary['missing'])}")
        minutes, unknown = time_to_do(runs, [m.rsplit(" seed ", 1)[0] for m in summary["missing"]])
        print(f"at the pace of this setting's finished runs of the same arm (or method): about {minutes:.0f} min of runs"
              + (f", and {len(unknown)} arm(s) with none to go by: {', '.join(unknown)}" if unknown else ""))
    if summary["unfinished"]:
        print(f"of which shown unfinished (best checkpoint so far): {', '.join(summary['unfinished'])}")
    print(f"total run time {summary['wall_s_total'] / 60:.1f} min on {', '.join(summary['hosts'])}")
    return summary


BENCHMARKS_DOC = ROOT / "docs" / "benchmarks.md"
GENERATED = "<!-- generated by `python bench/frontier.py --report` from bench/results/frontier/: do not edit -->"


def write_benchmarks_doc():
    """Regenerate docs/benchmarks.md, from the repository's own results only: a report or summary of another
    folder (``--out``, a test's) must not overwrite the page."""
    if OUT.resolve() == (RESULTS / "frontier").resolve():
        BENCHMARKS_DOC.write_text(benchmarks_doc())


def benchmarks_doc():
    """docs/benchmarks.md: every setting's tables, built from its run files, and the budget table."""
    parts = [GENERATED, "", "# Benchmarks: every frontier setting", "",
             "Each table is built from the run files under `bench/results/frontier/<setting>/` "
             "(one JSON per arm and seed); `tests/test_docs.py` checks this page against them. "
             "The analysis is in [findings.md](findings.md); how to read a table: mean ± std over seeds, "
             "bytes / full, Δ vs the uniform curve at the same bytes with the sign per seed, and whether "
             "early stopping (not the cap) ended every run.", ""]
    which = OUT / "which-method.md"
    if which.is_file():
        parts += ["## Which method at which budget (`python bench/frontier.py --summary`)", "",
                  which.read_text().strip(), ""]
    for setting, spec in SETTINGS.items():
        if not any((OUT / setting).glob("*-seed*.json")):
            continue
        table = setting_report(setting)[0]
        protocol = {k: v for k, v in spec["config"].items() if k not in BEAUTY}
        parts += [f"## `{setting}`: {spec['model']} on {spec['dataset']}", "",
                  f"Protocol beyond the shared one: `{json.dumps(protocol)}`; {spec['seeds']} seed(s). "
                  f"`python bench/frontier.py --setting {setting} --report`", "",
                  f"![{setting}](../bench/results/frontier/{setting}.png)", "", table, ""]
    return "\n".join(parts)


def setting_report(setting):
    """``(table, summary, rows, runs)`` of a setting, from its run files, writing nothing."""
    from recbole_lightemb.analysis.frontier import (format_bucket_table, format_frontier_table, format_segment_epochs,
                                           format_segment_search, format_segment_table, frontier_rows)
    spec = SETTINGS[setting]
    order = {a[0]: k for k, a in enumerate(spec["arms"])}
    runs = [json.loads(p.read_text()) for p in sorted((OUT / setting).glob("*-seed*.json"))]
    finished = {(r["label"], r["seed"]) for r in runs}
    runs += [run for run in (json.loads(p.read_text()) for p in sorted((OUT / setting / "unfinished").glob("*.json")))
             if (run["label"], run["seed"]) not in finished]
    runs.sort(key=lambda r: (order.get(r["label"], len(order)), r["seed"]))
    unfinished = [f"{r['label']} seed {r['seed']}" for r in runs if r.get("unfinished")]
    if not runs:
        raise SystemExit(f"error: no runs of setting {setting!r} under {OUT / setting}")
    for run in runs:  # frontier_rows names arms by label only when it is a variant
        run["label"] = run["label"] if run.get("extra") else None
    rows = frontier_rows(runs, METRIC)
    table = format_frontier_table(rows, METRIC)
    if any(row["buckets"] for row in rows):
        table += "\n\n" + format_bucket_table(rows)
    for extra in (format_curve_table(runs),  # runs with a test curve only
                  format_search_cost(runs),  # CIESS runs only
                  format_segment_table(runs, METRIC), format_segment_table(runs, METRIC, "valid"),
                  format_segment_epochs(runs),
                  format_segment_search(runs)):  # streams only
        if extra:
            table += "\n\n" + extra
    hosts = sorted({r.get("host", "?") for r in runs})
    summary = {"setting": setting, "model": spec["model"], "dataset": spec["dataset"],
               "protocol": {**PROTOCOL, **spec["config"]}, "metric": METRIC, "hosts": hosts,
               "wall_s_total": sum(r.get("wall_s", 0.0) for r in runs),
               "missing": [f"{a[0]} seed {s}" for a in spec["arms"] for s in range(2020, 2020 + spec["seeds"])
                           if to_do(setting, a[0], s)],
               "unfinished": unfinished,
               "rows": rows, "runs": runs}
    return table, summary, rows, runs


def summary():
    """The budget table over every setting reported so far, by stored bytes and by bytes held while training: per
    budget, the arm to use and the papers' best; written to ``which-method.md`` and ``.json`` beside the settings'
    own files. Returns the tables."""
    from recbole_lightemb.analysis.frontier import budget_winners, format_summary, frontier_rows

    reported = {name: json.loads((OUT / f"{name}.json").read_text())
                for name in SETTINGS if (OUT / f"{name}.json").is_file()}
    if not reported:
        raise SystemExit(f"error: --summary: no setting reported under {OUT} (run --report first)")
    # rows afresh from the runs: training figures derived where older run files allow, the files untouched
    reported = {name: frontier_rows(data["runs"], METRIC) if data.get("runs") else data["rows"]
                for name, data in reported.items()}
    table = format_summary(reported, METRIC)
    picks = {axis: {name: [{"budget": w["budget"], "best": w["best"]["arm"], "uniform": w["uniform"]["arm"],
                            "best_paper": w["best_paper"] and w["best_paper"]["arm"]}
                           for w in budget_winners(rows, METRIC, axis)] for name, rows in reported.items()}
             for axis in ("stored", "training")}
    (OUT / "which-method.json").write_text(json.dumps({"metric": METRIC, "settings": picks["stored"],
                                                       "settings_by_training_bytes": picks["training"]}, indent=1) + "\n")
    (OUT / "which-method.md").write_text(table + "\n")
    write_benchmarks_doc()
    print(table)
    return table


def main():
    global OUT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), help="the setting to run or report (required "
                        "but with --summary)")
    parser.add_argument("--summary", action="store_true",
                        help="only the budget table over every setting reported so far (which-method.md)")
    parser.add_argument("--arms", nargs="*", default=[], help="only these arms (default: all of the setting)")
    parser.add_argument("--seeds", type=int, help="seeds 2020, 2021, … (default: the setting's)")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="folder holding beauty/ (RecBole atomic files of the BACO authors' split)")
    parser.add_argument("--retry_failed", action="store_true", help="run again the runs recorded with an error")
    parser.add_argument("--report", action="store_true", help="only gather the runs already there")
    parser.add_argument("--snapshot", action="store_true",
                        help="test the best checkpoint so far of this setting's runs still going; then report")
    parser.add_argument("--out", default=str(OUT), help="folder of the run files and summaries")
    parser.add_argument("--epochs", type=int, help="cap every run at this many epochs (a quick check: such runs "
                        "are not converged, and a later invocation without --epochs does them again)")
    args = parser.parse_args()
    OUT = Path(args.out).resolve()
    if args.summary:
        summary()
        return
    if args.setting is None:
        raise SystemExit("error: --setting: required (one of " + ", ".join(sorted(SETTINGS)) + ") but with --summary")
    for key in ("seeds", "workers", "threads", "epochs"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise SystemExit(f"error: --{key}={value}: expected a positive integer")
    spec = SETTINGS[args.setting]
    if spec["dataset"] == "beauty" and not (Path(args.data) / "beauty" / "beauty.train.inter").is_file():
        raise SystemExit(f"error: --data={args.data!r}: no beauty/beauty.train.inter there (the BACO "
                         "authors' Beauty split as RecBole atomic files; see bench/beauty_to_atomic.py)")
    arms = resolve_arms(args.setting, args.arms)
    if args.snapshot:
        snapshot(args.setting, Path(args.data).resolve())
    elif not args.report:
        seeds = range(2020, 2020 + (args.seeds or spec["seeds"]))
        tasks = []
        for seed in seeds:
            for arm in arms:
                if not to_do(args.setting, arm[0], seed, args.retry_failed):
                    continue
                tasks.append((args.setting, arm, seed, str(Path(args.data).resolve()), args.threads, str(OUT),
                              args.epochs, args.retry_failed))
        print(f"[{args.setting}] {len(tasks)} run(s) to do", flush=True)
        with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            for _ in pool.imap_unordered(_one_run, tasks):
                pass
    report(args.setting)


if __name__ == "__main__":
    main()
