"""``run_recbole_lightemb``: RecBole's ``run_recbole`` with the embeddings swapped and measured."""

import os
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from logging import getLogger

import torch.distributed as dist
from recbole.data import data_preparation
from recbole.utils import get_environment, get_model, get_trainer, init_seed, set_color

from recbole_lightemb.analysis.buckets import bucket_recall, format_buckets
from recbole_lightemb.storage.checkpoint import CheckpointError, first_line, load_checkpoint
from recbole_lightemb.config import Config
from recbole_lightemb.analysis.convergence import ConvergenceLog
from recbole_lightemb.graph import check_graph_csr, install_adjacency
from recbole_lightemb.plan import Plan, plan_path, reused_plan
from recbole_lightemb.protocol import use_negative_sampling
from recbole_lightemb.storage.rebuild import check_model_size, config_from_checkpoint, restore_other_parameter
from recbole_lightemb.modules.packed_file import load_packed_beside, save_packed_beside
from recbole_lightemb.registry import get_method
from recbole_lightemb.report import compression_report, format_report
from recbole_lightemb.storage.resume import check_resume, earlier_curve, save_curve
from recbole_lightemb.runs import start_run, write_result
from recbole_lightemb.stream import run_stream
from recbole_lightemb.swap import swap_embeddings


PLAN_VALUES_PER_ENTITY = 8
"""A plan holds a few values per user and item (widths, one or two codes, bits): 8 bounds every method's."""


def check_same_plan_on_every_rank(plan):
    """Each rank plans from the same data and seed; prove they agree before training together."""
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, plan.digest())
    if len(set(digests)) != 1:
        raise RuntimeError(f"emb={plan.method}: ranks computed different plans ({digests}); "
                           "planning must depend only on the data and config['seed']")


def run_recbole_lightemb(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None):
    """Train and test ``model`` on ``dataset`` with ``emb``'s tables; RecBole's result dict plus
    ``compression`` (stored floats and bytes per table) and ``timing`` (plan, train, eval seconds)."""
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_graph_csr(config)
    if config["stream"]:
        return run_stream(config=config, saved=saved, queue=queue)
    if config["ciess_resume_search"] is not None and config["emb"] != "ciess":
        raise ValueError(f"ciess_resume_search={config['ciess_resume_search']!r}: a CIESS search's state; this run "
                         f"has emb={config['emb']!r}")
    if config["stream_resume"] is not None:
        raise ValueError(f"stream_resume={config['stream_resume']!r}: a stream's state, for stream: True; this run "
                         "has stream: False (for one model's checkpoint use resume_checkpoint)")
    method = get_method(config["emb"])(config)
    method.check_config()
    resumed_from = check_resume(config, method)  # before the plan is read: a resumed run uses its own
    saved_plan = reused_plan(config, method.name)
    if saved_plan:
        method.load_plan(saved_plan)  # a missing or broken plan is named before any data is loaded
    dataset = start_run(config)
    logger = getLogger()
    train_data, valid_data, test_data = data_preparation(config, dataset)
    use_negative_sampling(train_data, config)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    install_adjacency(model, config)
    start = time.perf_counter()
    plan = swap_embeddings(model, train_data._dataset, config, method=method)
    plan_s = time.perf_counter() - start
    if not config["single_spec"]:
        check_same_plan_on_every_rank(plan)
    logger.info(model)  # (RecBole's FLOPs line is left out: its counter does not know the swapped tables)

    trainer_class = method.trainer or get_trainer(config["MODEL_TYPE"], config["model"])
    trainer = trainer_class(config, model)
    test_now = partial(trainer.evaluate, test_data, load_best_model=False, show_progress=False)
    earlier = [] if resumed_from is None else earlier_curve(config["resume_checkpoint"], resumed_from)
    keep = partial(save_curve, config["resume_checkpoint"] or trainer.saved_model_file) \
        if saved and config["local_rank"] == 0 else None
    convergence = ConvergenceLog(config["valid_metric_bigger"], test=test_now if config["emb_test_curve"] else None,
                                 earlier=earlier, save=keep)
    resumed_valid_score = None
    if resumed_from is not None:  # later checkpoints overwrite the one resumed from
        trainer.resume_checkpoint(config["resume_checkpoint"])
        if not earlier or earlier[-1]["epochs"] != resumed_from + 1:  # no curve kept up to there: its one point
            convergence(resumed_from, trainer.best_valid_score)
        # the checkpoint keeps the best score, not its metrics: evaluate the weights it holds once
        resumed_valid_score, trainer.best_valid_result = trainer._valid_epoch(valid_data, show_progress=False)
    plan_file = plan_path(trainer.saved_model_file) if saved else None
    if saved and config["local_rank"] == 0 and (method.trainer is None or saved_plan) and plan_file != saved_plan:
        plan.save(plan_file)  # a searching trainer saves its own plan once the search has finished
        logger.info(set_color("Saving plan", "blue") + f": {plan_file}")

    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=convergence
    )
    convergence = {**convergence.summary(trainer), "resumed_at_epoch": resumed_from,
                   "resumed_valid_score": resumed_valid_score}
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    eval_s = time.perf_counter() - start
    buckets = bucket_recall(trainer, test_data, train_data._dataset, k=min(config["topk"]))
    if buckets:
        logger.info(set_color("test recall by frequency", "yellow") + f": {format_buckets(buckets)}")

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    report = compression_report(model, trainer.optimizer, search=plan.meta.get("search_training_memory"))
    if saved and config["local_rank"] == 0:  # low-bit rows: the packed form beside the checkpoint, as counted
        report["packed_file"] = save_packed_beside(model, trainer.saved_model_file)
    logger.info(format_report(report, config["emb"]))
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")

    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "emb": config["emb"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "compression": report,
        "plan": {"file": plan_file, **plan.meta},
        "timing": {"plan_s": plan_s, "train_s": train_s, "eval_s": eval_s},
        "convergence": convergence,
        "test_buckets": buckets,
    }
    if config["result_file"] and config["local_rank"] == 0:
        write_result(result, config["result_file"])
        logger.info(set_color("Saving result", "blue") + f": {config['result_file']}")

    if not config["single_spec"]:
        dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


def _run_rank(rank, *args):
    """One worker of a multi-process run (``mp.spawn`` passes the rank first)."""
    model, dataset, config_file_list, kwargs = args
    kwargs["config_dict"]["local_rank"] = rank
    run_recbole_lightemb(model=model, dataset=dataset, config_file_list=config_file_list, **kwargs)


def run(model, dataset, config_file_list=None, config_dict=None, saved=True,
        nproc=1, world_size=-1, ip="localhost", port="5678", group_offset=0):
    """Like ``recbole.quick_start.run``: one process, or ``nproc`` workers through RecBole's DDP path."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc={nproc!r}: expected a positive number of processes on this machine")
    if world_size not in (-1,) and (not isinstance(world_size, int) or world_size < nproc):
        raise ValueError(f"world_size={world_size!r}: expected -1 (= nproc) or the total number of processes over "
                         f"all machines, at least nproc={nproc}")
    if nproc == 1 and world_size <= 0:
        return run_recbole_lightemb(model=model, dataset=dataset, config_file_list=config_file_list,
                                    config_dict=config_dict, saved=saved)
    import torch.multiprocessing as mp

    world_size = nproc if world_size == -1 else world_size
    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": world_size, "ip": ip, "port": port, "nproc": nproc, "offset": group_offset})
    kwargs = {"config_dict": config_dict, "queue": queue, "saved": saved}
    mp.spawn(_run_rank, args=(model, dataset, config_file_list, kwargs), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


@contextmanager
def _named_build_errors(path, what):
    """RecBole's own failures on a checkpoint's config (a dict of unknown feature names, a number where it
    iterates a dict) as one line naming the checkpoint; the plugin's own refusals pass as they are."""
    try:
        yield
    except (AttributeError, KeyError, TypeError, IndexError) as error:
        raise CheckpointError(f"checkpoint {path!r}: its config does not build the {what} "
                              f"({type(error).__name__}: {first_line(error)})") from None


def load_data_and_model(model_file, trust_checkpoint=False, max_model_bytes=None, **where):
    """RecBole's ``load_data_and_model`` for any checkpoint a run wrote, compressed ones included.

    The checkpoint is read as data only (:func:`~recbole_lightemb.storage.checkpoint.load_checkpoint`) and decides
    only what the model is: its config is rebuilt from an allow-list of values
    (:func:`~recbole_lightemb.storage.rebuild.config_from_checkpoint`); where and how to run — ``data_path``,
    ``gpu_id``, ``worker``, … — are the caller's keyword arguments (RecBole's defaults otherwise). The model
    is sized before it is built (``max_model_bytes``), and for ``emb`` other than ``full`` the plan saved
    beside the checkpoint swaps in the same tables before the weights are loaded. Returns ``(config, model,
    dataset, train_data, valid_data, test_data)`` as RecBole does.
    """
    path = str(model_file)
    checkpoint = load_checkpoint(path, map_location="cpu", trust=trust_checkpoint)
    if checkpoint["config"] is None:
        raise CheckpointError(f"checkpoint {path!r}: holds no config to rebuild the data and model from")
    with tempfile.TemporaryDirectory() as empty:  # RecBole unpickles saved datasets it finds in checkpoint_dir
        config = config_from_checkpoint(checkpoint["config"], path, {**where, "checkpoint_dir": empty})
        if config["stream"]:
            raise CheckpointError(f"checkpoint {path!r} holds one segment of a stream (stream=True); load its "
                                  "weights with Trainer.evaluate(model_file=...) on that segment's data")
        emb = config["emb"] or "full"
        plan_file = plan_path(path)
        if emb != "full" and not os.path.isfile(plan_file):
            raise CheckpointError(f"checkpoint {path!r} (emb={emb!r}) needs its plan {plan_file!r} beside it, "
                                  "and it is missing")
        get_method(emb)(config).check_config()
        with _named_build_errors(path, "dataset"):  # a config value of the right type RecBole still cannot use
            dataset = start_run(config)
            train_data, valid_data, test_data = data_preparation(config, dataset)
    config["checkpoint_dir"] = os.path.dirname(os.path.abspath(path))
    entities = train_data._dataset.user_num + train_data._dataset.item_num
    plan = None if emb == "full" else Plan.load(plan_file, method=emb, max_elements=PLAN_VALUES_PER_ENTITY * entities)
    model_class = get_model(config["model"])
    check_model_size(config, model_class, train_data._dataset, checkpoint["state_dict"], plan, path, max_model_bytes)
    init_seed(config["seed"], config["reproducibility"])
    with _named_build_errors(path, "model"):
        model = model_class(config, train_data._dataset).to(config["device"])
        install_adjacency(model, config)
        if plan is not None:
            swap_embeddings(model, train_data._dataset, config, plan=plan)
    model.load_state_dict(checkpoint["state_dict"])
    load_packed_beside(model, path)  # low-bit rows as stored, where the run wrote them
    restore_other_parameter(model, checkpoint.get("other_parameter"), path)
    return config, model, dataset, train_data, valid_data, test_data
