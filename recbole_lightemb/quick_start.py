"""``run_recbole_lightemb``: RecBole's ``run_recbole`` with the embeddings swapped and measured."""

import json
import os
import sys
import tempfile
import time
from logging import getLogger

import torch.distributed as dist
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_environment, get_model, get_trainer, init_logger, init_seed, set_color

from recbole_lightemb.buckets import bucket_recall, format_buckets
from recbole_lightemb.checkpoint import CheckpointError, load_checkpoint
from recbole_lightemb.config import Config
from recbole_lightemb.convergence import ConvergenceLog
from recbole_lightemb.graph import check_graph_csr, use_csr_adjacency
from recbole_lightemb.plan import Plan, plan_path, reused_plan
from recbole_lightemb.registry import get_method
from recbole_lightemb.report import compression_report, format_report, training_memory
from recbole_lightemb.resume import check_resume
from recbole_lightemb.stream import run_stream
from recbole_lightemb.swap import swap_embeddings


def check_same_plan_on_every_rank(plan):
    """Each rank plans from the same data and seed; prove they agree before training together."""
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, plan.digest())
    if len(set(digests)) != 1:
        raise RuntimeError(f"emb={plan.method}: ranks computed different plans ({digests}); "
                           "planning must depend only on the data and config['seed']")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_result(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=_json_default)


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


def run_recbole_lightemb(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None):
    """Train and test ``model`` on ``dataset`` with ``emb``'s tables; RecBole's result dict plus
    ``compression`` (stored floats and bytes per table) and ``timing`` (plan, train, eval seconds)."""
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_graph_csr(config)
    if config["stream"]:
        return run_stream(config=config, saved=saved, queue=queue)
    method = get_method(config["emb"])(config)
    method.check_config()
    resumed_from = check_resume(config, method)  # before the plan is read: a resumed run uses its own
    saved_plan = reused_plan(config, method.name)
    if saved_plan:
        method.load_plan(saved_plan)  # a missing or broken plan is named before any data is loaded
    dataset = start_run(config)
    logger = getLogger()
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    use_csr_adjacency(model, config)
    start = time.perf_counter()
    plan = swap_embeddings(model, train_data._dataset, config, method=method)
    plan_s = time.perf_counter() - start
    if not config["single_spec"]:
        check_same_plan_on_every_rank(plan)
    logger.info(model)  # (RecBole's FLOPs line is left out: its counter does not know the swapped tables)

    trainer_class = method.trainer or get_trainer(config["MODEL_TYPE"], config["model"])
    trainer = trainer_class(config, model)
    convergence = ConvergenceLog(config["valid_metric_bigger"])
    resumed_valid_score = None
    if resumed_from is not None:  # later checkpoints overwrite the one resumed from
        trainer.resume_checkpoint(config["resume_checkpoint"])
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
    report = compression_report(model)
    report["training"] = training_memory(model, trainer.optimizer)
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


CODE_KEYS = {"teacher": "KD_DAGFM evaluates it as Python"}
FILE_KEYS = ("pre_model_path", "pretrain_path", "mf_pretrain_path", "mlp_pretrain_path", "warm_up")
"""Config keys that make a RecBole model run code or unpickle a file while it is built."""


def check_rebuild_runs_no_code(config, model_file):
    """A checkpoint's config is the file's data: rebuilding from it must not evaluate or unpickle anything.
    Saved datasets and dataloaders are never read; keys that a model evaluates or loads are refused."""
    for key in ("dataset_save_path", "dataloaders_save_path"):
        config[key] = None
    config["save_dataset"], config["save_dataloaders"] = False, False
    if config["model"] == "KD_DAGFM":
        raise CheckpointError(f"checkpoint {str(model_file)!r}: model KD_DAGFM would evaluate the checkpoint's "
                              f"'teacher' value as Python ({CODE_KEYS['teacher']}); rebuild it from your own Config")
    for key in FILE_KEYS:
        if config[key] not in (None, "", "None", False):
            raise CheckpointError(f"checkpoint {str(model_file)!r}: its config sets {key}={config[key]!r}, a file "
                                  f"model {config['model']} would load while it is built; rebuild it from your own Config")


def load_data_and_model(model_file, trust_checkpoint=False):
    """RecBole's ``load_data_and_model`` for any checkpoint a run wrote, compressed ones included.

    The checkpoint is read as data only (:func:`~recbole_lightemb.checkpoint.load_checkpoint`); the data
    and model are rebuilt from its config, and for ``emb`` other than ``full`` the plan saved beside
    it swaps in the same tables before the weights are loaded. Returns ``(config, model, dataset,
    train_data, valid_data, test_data)`` as RecBole does.
    """
    checkpoint = load_checkpoint(model_file, map_location="cpu", trust=trust_checkpoint)
    config = checkpoint["config"]
    if config is None:
        raise CheckpointError(f"checkpoint {str(model_file)!r}: holds no config to rebuild the data and model from")
    check_rebuild_runs_no_code(config, model_file)
    if config["stream"]:
        raise CheckpointError(f"checkpoint {str(model_file)!r} holds one segment of a stream (stream=True); "
                              "load its weights with Trainer.evaluate(model_file=...) on that segment's data")
    emb = config["emb"] or "full"
    plan = None
    if emb != "full":
        plan_file = plan_path(str(model_file))
        if not os.path.isfile(plan_file):
            raise CheckpointError(f"checkpoint {str(model_file)!r} (emb={emb!r}) needs its plan {plan_file!r} "
                                  "beside it, and it is missing")
        plan = Plan.load(plan_file, method=emb)
    with tempfile.TemporaryDirectory() as empty:  # RecBole unpickles saved datasets it finds in checkpoint_dir
        config["checkpoint_dir"] = empty
        dataset = start_run(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
    config["checkpoint_dir"] = os.path.dirname(os.path.abspath(model_file))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    use_csr_adjacency(model, config)
    if plan is not None:
        swap_embeddings(model, train_data._dataset, config, plan=plan)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
