"""The streaming trainer: plan, build (warm-started), fit and test, segment after segment.

Each segment's model is a fresh RecBole model built on the segment's history (graph models see
every interaction so far), with its user/item tables swapped as the method's stream planner
says, then warm-started from the previous segment's trained model: an entity known before keeps
the coordinates that still fit its new width, a new entity starts from the model's own init.
RecBole's trainer fits it on the segment's training data (early stopping on its validation
data) and tests it on its test data. Items not seen yet are masked out of every ranking: a
model cannot be expected to rank an item that has never appeared.
"""

import os
import time
from logging import getLogger

import numpy as np
import torch
from recbole.utils import calculate_valid_score, get_local_time, get_model, get_trainer, set_color

from recbole_lightemb.config import Config, model_width
from recbole_lightemb.analysis.convergence import ConvergenceLog, stream_convergence
from recbole_lightemb.graph import check_graph_csr, install_adjacency
from recbole_lightemb.methods.precision import refuse_unsupported
from recbole_lightemb.modules import VariableWidthEmbedding
from recbole_lightemb.modules.base import FLOAT_BYTES
from recbole_lightemb.modules.mixed import MixedDimEmbedding
from recbole_lightemb.modules.packed import PackedWidthEmbedding
from recbole_lightemb.modules.packed_file import save_packed_beside
from recbole_lightemb.modules.precision import config_bits
from recbole_lightemb.plan import plan_path
from recbole_lightemb.registry import get_method
from recbole_lightemb.report import compression_report, stored_row_bytes, training_memory
from recbole_lightemb.storage.resume import check_resume
from recbole_lightemb.storage.checkpoint import first_line
from recbole_lightemb.storage.run_state import plain, rng_state, set_rng_state
from recbole_lightemb.runs import start_run, write_result
from recbole_lightemb.stream.loader import stream_segments
from recbole_lightemb.stream.planners import VariableWidths, plan_row_bits, stream_planner, widths_plan
from recbole_lightemb.stream.resume import load_stream_state, save_stream_state, stream_state_path
from recbole_lightemb.stream.segments import check_stream_config, stream_value
from recbole_lightemb.swap import find_embedding_tables, pack_variable_widths, swap_embeddings


def stream_trainer_class(base):
    """``base`` (a RecBole trainer class) whose full-sort rankings exclude items not seen yet."""

    class StreamTrainer(base):
        unseen_items = None  # bool tensor over item ids, set per segment

        def _full_sort_batch_eval(self, batched_data):
            interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
            if self.unseen_items is not None:
                scores[:, self.unseen_items.to(scores.device)] = -np.inf
            return interaction, scores, positive_u, positive_i

    StreamTrainer.__name__ = StreamTrainer.__qualname__ = f"Stream{base.__name__}"
    return StreamTrainer


def pack_stream_tables(model, config):
    """The segment's masked tables packed for training (:func:`~recbole_lightemb.swap.width_rows_table`; with
    ``emb_master_free`` groups of one width each, whose low-bit codes train without float32 masters)."""
    packed = pack_variable_widths(model, config=config)
    for table in packed:
        table.stream_widths = True  # its rows are what the next segment's warm start reads
    return packed


def width_tables(model):
    """``(name, table, widths)`` of every table whose rows have widths of their own and are the rows the model
    reads (masked, packed, or grouped by :func:`pack_stream_tables`)."""
    for name, module in model.named_modules():
        if isinstance(module, (VariableWidthEmbedding, PackedWidthEmbedding)):
            yield name, module, module.widths
        elif isinstance(module, MixedDimEmbedding) and getattr(module, "stream_widths", False):
            yield name, module, module.widths()


@torch.no_grad()
def warm_snapshot(model):
    """What the next segment's warm start copies from ``model``: each variable-width table's rows at full
    width with their widths (masked or packed), and every parameter by name (a stream's state file keeps it)."""
    tables = {name: {"rows": module.full_table().detach().cpu().clone(), "widths": widths.detach().cpu().clone()}
              for name, module, widths in width_tables(model)}
    return {"tables": tables, "params": {name: p.detach().cpu().clone() for name, p in model.named_parameters()}}


@torch.no_grad()
def warm_start(model, previous):
    """Carry ``previous`` (a :func:`warm_snapshot`) into ``model``: variable-width tables keep each known row's
    old coordinates (up to its old width; the rest stays freshly initialised); every other parameter is copied
    when a parameter of the same name and shape exists."""
    if previous is None:
        return
    handled = set()
    for name, module in model.named_modules():
        old = previous["tables"].get(name)
        if isinstance(module, VariableWidthEmbedding) and old is not None:
            if tuple(old["rows"].shape) != tuple(module.table.shape) or len(old["widths"]) != len(old["rows"]):
                raise ValueError(f"warm start of {name}: rows of shape {tuple(old['rows'].shape)}, widths "
                                 f"{len(old['widths'])}; the table is {tuple(module.table.shape)}")
            keep = torch.arange(module.embedding_dim) < old["widths"][:, None].long()
            module.table.copy_(torch.where(keep.to(module.table.device), old["rows"].to(module.table.device),
                                           module.table))
            handled.add(f"{name}.table" if name else "table")
    for name, param in model.named_parameters():
        old = previous["params"].get(name)
        if name not in handled and old is not None and old.shape == param.shape:
            param.copy_(old.to(param.device))


SEARCH_RECORD = ("mode", "chosen", "action", "search_segment", "rewards", "ratios", "fitness", "denominator",
                 "baseline_fitness", "previous_fitness", "first_block", "user_share", "widest")
"""What a segment's row keeps of a widths planner's search (its plan file has it too, but stays in the run's
checkpoint folder, which a benchmark may remove): enough to see whether the rewards told the widths apart."""


def mask_unseen(trainer, split):
    """Rank only items seen by ``split``'s segment (the padding item RecBole masks already)."""
    trainer.unseen_items = torch.from_numpy(~split.seen_items)
    trainer.unseen_items[0] = False


def set_widths(model, user_widths, item_widths, row_bits=None):
    """Every masked table to its side's widths, and with ``row_bits`` (``(user bits, item bits)``, one per row:
    bits by frequency) its rows' bits."""
    widths = {"user": user_widths, "item": item_widths}
    bits = None if row_bits is None else dict(zip(("user", "item"), row_bits))
    for table in model.modules():
        if isinstance(table, VariableWidthEmbedding):
            table.set_widths(np.minimum(widths[table.role], table.embedding_dim))
            if bits is not None:
                table.set_row_bits(np.asarray(bits[table.role][:table.num_embeddings], dtype=np.int64))


class WidthSearch:
    """The search handle a widths planner calls; each try returns its validation fitness.

    Called, it tries widths on this segment's model from its warm start (restored before every try);
    :meth:`fresh` tries them on a model built from scratch on a given segment (this one or an earlier
    one), as SCALL's authors do. A try trains ``batches`` batches (at most ``epochs`` epochs of the
    segment's training data when set) with the trainer's optimiser at ``lr`` (default: ``learning_rate``),
    and ``fitness`` scores its validation result (default: the ``valid_metric``). ``tried`` is the last try's model;
    ``held`` the most a try's masked full-width tables held while training (:func:`training_memory`), which the
    segment's bytes held while training must include.
    """

    def __init__(self, model, trainer, segment, config, batches=200, epochs=None, lr=None, build=None, fitness=None):
        self.model, self.trainer, self.segment, self.config = model, trainer, segment, config
        self.batches, self.epochs, self.lr, self.build = batches, epochs, lr, build
        self.fitness = fitness or (lambda result: calculate_valid_score(result, trainer.valid_metric))
        self.start = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.tried, self.held = None, None
        mask_unseen(trainer, segment.split)

    def steps(self, segment):
        """``batches``, but never more than ``epochs`` epochs of ``segment``'s training data when set."""
        if self.epochs is None:
            return self.batches
        return min(self.batches, max(1, int(self.epochs * len(segment.train_data))))

    @torch.no_grad()
    def apply(self, user_widths, item_widths, row_bits=None):
        """Back to the warm start, with these widths (and bits per row, :func:`set_widths`)."""
        for name, p in self.model.named_parameters():
            p.copy_(self.start[name])
        set_widths(self.model, user_widths, item_widths, row_bits)

    def __call__(self, user_widths, item_widths, row_bits=None):
        self.apply(user_widths, item_widths, row_bits)
        return self._try(self.model, self.segment)

    def fresh(self, user_widths, item_widths, segment, row_bits=None):
        """A model built from scratch on ``segment`` (its history's graph), with these widths."""
        model = self.build(segment)
        set_widths(model, user_widths, item_widths, row_bits)
        return self._try(model, segment)

    def _try(self, model, segment):
        device = self.config["device"]
        model.train()
        lr = {} if self.lr is None else {"learning_rate": self.lr}
        optimizer = self.trainer._build_optimizer(params=model.parameters(), **lr)
        done, batches = 0, self.steps(segment)
        while done < batches:
            for interaction in segment.train_data:
                optimizer.zero_grad()
                losses = model.calculate_loss(interaction.to(device))
                loss = sum(losses) if isinstance(losses, tuple) else losses
                loss.backward()
                optimizer.step()
                done += 1
                if done >= batches:
                    break
        self.tried = model
        held = training_memory(model, optimizer)
        if self.held is None or held["ratio"] > self.held["ratio"]:
            self.held = held
        trainer, own = self.trainer, (self.trainer.model, self.trainer.unseen_items)
        trainer.model = model  # this segment's trainer evaluates the try (a new one would open a log folder)
        mask_unseen(trainer, segment.split)
        try:
            result = trainer.evaluate(segment.valid_data, load_best_model=False, show_progress=False)
        finally:
            trainer.model, trainer.unseen_items = own
        return float(self.fitness(result))


def _metric_keys(result):
    """The Recall@K and NDCG@K to tabulate: K = 20 when evaluated, else the first K there is."""
    keys = []
    for name in ("recall", "ndcg"):
        found = [k for k in result if k.startswith(name + "@")]
        keys += [f"{name}@20"] if f"{name}@20" in found else found[:1]
    return keys


def format_segment_table(rows):
    """The per-segment table for the log: entities seen, floats and bytes against the budget, metrics."""
    keys = _metric_keys(rows[0]["test_result"]) if rows else []
    head = (f"{'seg':>3} {'users':>7} {'items':>7} {'stored floats':>14} {'budget':>12} {'held':>5} "
            f"{'bytes':>11} " + " ".join(f"{k:>10}" for k in keys) + f" {'time s':>8}")
    lines = [set_color(head, "blue")]
    for r in rows:
        budget = r["budget_floats"]
        row_bytes = r.get("stored_row_bytes", r["stored_floats"] * FLOAT_BYTES)  # runs before low-bit rows: floats
        held = "-" if budget is None else ("yes" if row_bytes <= budget * FLOAT_BYTES else set_color("NO", "red"))
        lines.append(f"{r['segment']:>3} {r['users_seen']:>7} {r['items_seen']:>7} {r['stored_floats']:>14} "
                     f"{'-' if budget is None else budget:>12} {held:>5} {r['stored_bytes']:>11} "
                     + " ".join(f"{r['test_result'][k]:>10.4f}" for k in keys) + f" {r['time_s']:>8.1f}")
    return "\n".join(lines)


def _mean_results(rows, decimals=4):
    """Per-segment means, rounded as RecBole rounds its own results (``metric_decimal_place``)."""
    keys = rows[0]["test_result"].keys() if rows else []
    return {k: round(float(np.mean([r["test_result"][k] for r in rows])), decimals) for k in keys}


def _build(model_class, config, segment, method, planner):
    """A model for the segment and its table specs; widths planners get variable-width tables at
    placeholder widths (every seen entity at full width) that the search and plan then set."""
    model = model_class(config, segment.history).to(config["device"])
    install_adjacency(model, config)
    specs, _ = find_embedding_tables(model, segment.history, config)
    if planner.widths_based:
        dim = model_width(config)
        placeholder = widths_plan(method.name, segment.split.seen_users * dim, segment.split.seen_items * dim,
                                  bits=config_bits(config))  # a search's tries store what the plan will
        swap_embeddings(model, segment.history, config, method=VariableWidths(config), plan=placeholder)
    return model, specs


LOADERS = ("train_data", "valid_data", "test_data")


def _loader_states(segment):
    """The segment's loaders' own shuffling generators (RecBole seeds one per loader; a search on this segment
    in the next one draws on from where they are)."""
    return {name: getattr(segment, name).generator.get_state() for name in LOADERS}


def _resume_at(segment, planner, resumed, path):
    """At the last segment trained before the stop: its loaders, the planner and the global random states
    as they were when the stream went on to the next segment."""
    try:
        for name in LOADERS:
            getattr(segment, name).generator.set_state(resumed["loaders"][name])
        planner.restore(resumed["planner"], segment)
        set_rng_state(resumed["global_rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise ValueError(f"stream_resume={path!r}: does not fit this run's planner and loaders "
                         f"({first_line(error, type(error).__name__)})") from None


def run_stream(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None,
               config=None):
    """Train and test ``model`` with ``emb``'s tables along a stream of ``dataset``'s segments.

    Returns the usual result keys (of the last segment) plus ``segments`` (one dict per segment)
    and ``mean_test_result``; writes it to ``result_file`` when set. Pass ``config`` to reuse an
    already built :class:`~recbole_lightemb.Config`.
    """

    if config is None:
        config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_graph_csr(config)
    method = get_method(config["emb"])(config)
    method.check_config()
    refuse_unsupported(method, config)  # emb_bits / emb_master_free on a stream: before any data is read
    check_resume(config, method)  # resume_checkpoint is one model's: named before any data is read
    cut_key, cut_value = check_stream_config(config)
    resumed = None if config["stream_resume"] is None else load_stream_state(config["stream_resume"], config)
    if 20 not in config["topk"]:  # the per-segment table reports @20; an extra K changes no training
        config["topk"] = list(config["topk"]) + [20]
    config["stopping_step"] = stream_value(config, "stream_stopping_step")
    dataset = start_run(config)
    logger = getLogger()

    planner = stream_planner(method, config)
    model_class = get_model(config["model"])
    trainer_class = stream_trainer_class(method.trainer or get_trainer(config["MODEL_TYPE"], config["model"]))
    run_id = get_local_time() if resumed is None else resumed["run_id"]
    rows, previous, plan_file = [], None, None
    state_file = (config["stream_resume"] or stream_state_path(config["checkpoint_dir"], config["model"], run_id)) \
        if saved and config["local_rank"] == 0 else None  # a resumed stream goes on writing the file it read
    if resumed is not None:
        rows, previous, last = resumed["rows"], resumed["previous"], resumed["last"]
        logger.info(set_color("stream resumed", "pink") + f" after segment {resumed['segments_done'] - 1}: "
                    f"{config['stream_resume']}")

    def fresh_model(segment):  # a search try from scratch: the segment's model at placeholder widths
        return _build(model_class, config, segment, method, planner)[0]

    totals = {"plan_s": 0.0, "train_s": 0.0, "eval_s": 0.0} if resumed is None else resumed["totals"]
    restored = resumed is None
    for segment in stream_segments(config, dataset):
        if resumed is not None and segment.index < resumed["segments_done"]:  # trained before the stop
            if segment.index == resumed["segments_done"] - 1:
                _resume_at(segment, planner, resumed, config["stream_resume"])
                restored = True
            continue
        seg_start = time.perf_counter()
        model, specs = _build(model_class, config, segment, method, planner)
        tables_per_side = max(sum(s.role == "user" for s in specs), 1)
        budget = planner.budget_floats(segment, tables_per_side)
        search = None
        if planner.widths_based:
            warm_start(model, previous)
            trainer = trainer_class(config, model)
            search = WidthSearch(model, trainer, segment, config, build=fresh_model,
                                 **getattr(planner, "search_options", {}))
            plan = planner.plan(segment, specs, search)
            search.apply(plan["user_widths"], plan["item_widths"], plan_row_bits(plan))
            if stream_value(config, "stream_packed_training") and config["single_spec"]:
                pack_stream_tables(model, config)  # the segment trains Σ widths values, not the masked n × d table
                trainer = trainer_class(config, model)
        else:
            plan = planner.plan(segment, specs)
            swap_embeddings(model, segment.history, config, method=method, plan=plan)
            warm_start(model, previous)
            trainer = trainer_class(config, model)
        plan_s = time.perf_counter() - seg_start
        mask_unseen(trainer, segment.split)
        trainer.saved_model_file = os.path.join(config["checkpoint_dir"],
                                                f"{config['model']}-{run_id}-stream-seg{segment.index}.pth")
        if saved and config["local_rank"] == 0:
            plan_file = plan.save(plan_path(trainer.saved_model_file))

        start = time.perf_counter()
        convergence = ConvergenceLog(config["valid_metric_bigger"])
        best_valid_score, best_valid_result = trainer.fit(segment.train_data, segment.valid_data, saved=saved,
                                                          show_progress=config["show_progress"], callback_fn=convergence)
        convergence = convergence.summary(trainer)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        test_result = trainer.evaluate(segment.test_data, load_best_model=saved,
                                       show_progress=config["show_progress"])
        eval_s = time.perf_counter() - start
        planner.observe(best_valid_score, model, best_valid_result)

        report = compression_report(model)
        row_bytes = stored_row_bytes(model)
        if budget is not None and row_bytes > budget * FLOAT_BYTES:
            raise RuntimeError(f"segment {segment.index}: {row_bytes} bytes of stored rows exceed the budget of "
                               f"{budget} floats; this is a bug in emb={config['emb']!r}'s stream planner")
        packed_file = save_packed_beside(model, trainer.saved_model_file) \
            if saved and config["local_rank"] == 0 else None  # low-bit rows: written as counted
        row = {
            "segment": segment.index, "users_seen": segment.users_seen, "items_seen": segment.items_seen,
            "stored_floats": report["stored_floats"], "budget_floats": budget, "stored_row_bytes": row_bytes,
            "stored_bytes": report["stored_bytes"], "packed_file": packed_file, "training_memory": training_memory(model, trainer.optimizer),
            "search_training_memory": search.held if search else plan.meta.get("search_training_memory"),  # a
            # widths planner's tries, or a searching trainer's own search (CIESS); None where nothing searched
            "valid_result": dict(best_valid_result),
            "test_result": dict(test_result),
            "time_s": time.perf_counter() - seg_start,
            "plan_s": plan_s, "train_s": train_s, "eval_s": eval_s,
            "train_interactions": int(segment.split.train.size),
            "test_interactions": int(segment.split.test.size),  # what the segment's test figures rest on
            "test_users": int(segment.test_data._dataset.inter_feat[config["USER_ID_FIELD"]].unique().numel()),
            "search_steps": plan.meta.get("search_steps"), "plan_file": plan_file,
            "search": {k: plan.meta[k] for k in SEARCH_RECORD if plan.meta.get(k) is not None},
            "convergence": convergence,
        }
        rows.append(row)
        for key in totals:
            totals[key] += row[key]
        logger.info(set_color(f"stream segment {segment.index}", "pink") + "\n" + format_segment_table([row]))
        previous = warm_snapshot(model)
        last = {"best_valid_score": float(best_valid_score), "best_valid_result": dict(best_valid_result),
                "test_result": dict(test_result), "compression": report, "plan": {"file": plan_file, **plan.meta}}
        if state_file:
            save_stream_state(state_file, {
                "segments_done": segment.index + 1, "run_id": run_id, "rows": plain(rows), "totals": totals,
                "previous": previous, "planner": planner.saved_state(), "loaders": _loader_states(segment),
                "global_rng": rng_state(), "last": plain(last),
            }, config)

    logger.info(set_color("stream", "pink") + f" (emb={config['emb']}, {cut_key}={cut_value}, "
                f"{len(rows)} segments)\n" + format_segment_table(rows))
    mean_result = _mean_results(rows, config["metric_decimal_place"])
    logger.info(set_color("mean test result", "yellow") + f": {mean_result}")
    if not restored:
        raise ValueError(f"stream_resume={config['stream_resume']!r}: written after segment "
                         f"{resumed['segments_done'] - 1}, but this data cuts into fewer segments")
    if state_file and os.path.isfile(state_file):  # every segment is in the result now
        os.remove(state_file)
    result = {
        "model": config["model"], "dataset": config["dataset"], "emb": config["emb"],
        **({"mode": last["plan"]["mode"]} if "mode" in last["plan"] else {}),
        "stream": {"cut": {cut_key: cut_value}, "segments": len(rows)},
        "best_valid_score": last["best_valid_score"], "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": last["best_valid_result"], "test_result": last["test_result"],
        "compression": last["compression"], "plan": last["plan"],
        "timing": {**totals, "total_s": sum(r["time_s"] for r in rows)},
        "segments": rows, "mean_test_result": mean_result,
        "convergence": stream_convergence([row["convergence"] for row in rows]),
    }
    if config["result_file"] and config["local_rank"] == 0:
        write_result(result, config["result_file"])
        logger.info(set_color("Saving result", "blue") + f": {config['result_file']}")
    if queue is not None:
        queue.put(result)
    return result
