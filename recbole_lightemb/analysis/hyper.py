"""RecBole's hyper-parameter tuning (``HyperTuning``, hyperopt) over the plugin's keys and RecBole's together.

:func:`objective_function` is RecBole's objective with the plugin's run, and needs no ray: it returns RecBole's
dict plus the compression report, and works with RecBole's own ``recbole.trainer.HyperTuning``.
:class:`HyperTuning` is RecBole's tuner with what a search over budgets needs: every key of the space is checked
before the first trial (an unknown one is named with the closest known key), a trial that fails is recorded with
its error while the search goes on, the search is seeded from RecBole's ``seed``, and the output table shows
each trial's bytes ratio beside its metrics.
"""

import difflib
import glob
import logging
import os
import sys
import traceback

import numpy as np
import yaml
from recbole.trainer import HyperTuning as RecBoleHyperTuning
from recbole.utils.utils import dict2str

from recbole_lightemb.config import plugin_defaults
from recbole_lightemb.quick_start import run_recbole_lightemb

INSTALL_HINT = 'pip install "recbole-lightemb[tune]" (in a checkout: pip install -e ".[tune]")'
RESULT_KEYS = ("model", "best_valid_score", "valid_score_bigger", "best_valid_result", "test_result")
"""The keys of RecBole's ``objective_function`` result, which its ``HyperTuning`` reads."""


def require_hyperopt():
    """Tuning needs hyperopt, an optional extra: say in one line how to get it."""
    try:
        import hyperopt  # noqa: F401
    except ImportError:
        raise ImportError(f"hyper-parameter tuning needs hyperopt, which is not installed: {INSTALL_HINT}") from None


def objective_function(config_dict=None, config_file_list=None, saved=True):
    """One trial: the plugin's run with ``config_dict`` over ``config_file_list``; RecBole's result dict plus
    ``compression`` (the run's compression report). Like RecBole's, each trial logs to a file of its own:
    RecBole's logger opens its file only for a root logger without handlers, so the caller's are set aside."""
    root = logging.getLogger()
    kept = root.handlers[:]
    for handler in kept:
        root.removeHandler(handler)
    try:
        result = run_recbole_lightemb(config_file_list=config_file_list, config_dict=config_dict, saved=saved)
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in kept:
            root.addHandler(handler)
    return {**{key: result[key] for key in RESULT_KEYS}, "compression": result["compression"]}


def _yaml_keys(path):
    with open(path) as f:
        data = yaml.safe_load(f)
    return set(data) if isinstance(data, dict) else set()


def known_keys(config_file_list=None):
    """Every key a trial's config can set: the plugin's, those in RecBole's YAMLs (overall, every model and
    dataset) and those in the fixed config files."""
    import recbole

    pattern = os.path.join(os.path.dirname(recbole.__file__), "properties", "**", "*.yaml")
    keys = set(plugin_defaults())
    for path in sorted(glob.glob(pattern, recursive=True)) + list(config_file_list or []):
        keys |= _yaml_keys(path)
    return keys


def check_space(names, config_file_list=None, argv=()):
    """Before the first trial: every tuned key is known, and none is also on the command line (where RecBole's
    Config would let it win over every trial's value)."""
    known = known_keys(config_file_list)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            raise ValueError(f"{name} (params file): not a RecBole or recbole-lightemb key"
                             + (f"; did you mean {close[0]}?" if close else ""))
    given = {arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")}
    for name in names:
        if name in given:
            raise ValueError(f"--{name}: also tuned in the params file, and the command line would override "
                             "every trial's value; set it in one place")


def fixed_seed(config_file_list=None, argv=()):
    """RecBole's ``seed`` as the fixed config gives it (command line over files over RecBole's default)."""
    import recbole

    seed = None
    for path in [os.path.join(os.path.dirname(recbole.__file__), "properties", "overall.yaml"),
                 *(config_file_list or [])]:
        with open(path) as f:
            seed = (yaml.safe_load(f) or {}).get("seed", seed)
    for arg in argv:
        if arg.startswith("--seed="):
            seed = arg.split("=", 1)[1]
    return int(seed)


def _number(value):
    return "" if value is None else f"{value:.4f}"


def _param(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_trials(rows):
    """One line per trial: its parameters, best valid score, test metrics and bytes ratio, or its error."""
    names = list(dict.fromkeys(name for row in rows for name in row["params"]))
    metrics = list(dict.fromkeys(m for row in rows if row["result"] for m in row["result"]["test_result"]))
    errors = any(row["error"] for row in rows)
    table = [["trial", *names, "valid score", *[f"test {m}" for m in metrics], "bytes ratio"] + ["error"] * errors]
    for i, row in enumerate(rows, 1):
        result = row["result"] or {"test_result": {}}
        ratio = (result.get("compression") or {}).get("ratio")
        table.append([str(i), *[_param(row["params"].get(n, "")) for n in names],
                      _number(result.get("best_valid_score")),
                      *[_number(result["test_result"].get(m)) for m in metrics], _number(ratio)]
                     + [(row["error"] or "").split("\n")[0]] * errors)
    widths = [max(len(line[j]) for line in table) for j in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table)


class HyperTuning(RecBoleHyperTuning):
    """RecBole's ``HyperTuning`` (same arguments, ``exhaustive``/``random``/``bayes``) with the plugin's
    objective by default, the space checked before the first trial, failed trials recorded, and the search
    seeded from the fixed config's ``seed``."""

    def __init__(self, objective_function=objective_function, space=None, params_file=None, params_dict=None,
                 fixed_config_file_list=None, display_file=None, algo="exhaustive", max_evals=100, early_stop=10):
        require_hyperopt()
        super().__init__(objective_function, space=space, params_file=params_file, params_dict=params_dict,
                         fixed_config_file_list=fixed_config_file_list, display_file=display_file, algo=algo,
                         max_evals=max_evals, early_stop=early_stop)
        argv = sys.argv[1:]
        check_space(list(self.space) if isinstance(self.space, dict) else [], fixed_config_file_list, argv)
        self.seed = fixed_seed(fixed_config_file_list, argv)
        self.model = None
        self.rows = []
        """One dict per trial, in order: ``params``, ``result`` (None if it failed) and ``error``."""

    def trial(self, params):
        """Run one trial; a failure is recorded with its error (hyperopt's ``STATUS_FAIL``), not raised."""
        import hyperopt

        config_dict, params_str = dict(params), self.params2str(params)
        self.params_list.append(params_str)
        print("running parameters:", config_dict)
        try:
            result = self.objective_function(config_dict, self.fixed_config_file_list)
        except Exception as error:  # noqa: BLE001  (one trial's failure must not stop the search)
            message = f"{type(error).__name__}: {error}"
            logging.getLogger().error(f"trial {params_str} failed\n{traceback.format_exc()}")
            self.rows.append({"params": config_dict, "result": None, "error": message})
            self.params2result[params_str] = {"error": message}
            self.score_list.append(None)
            return {"status": hyperopt.STATUS_FAIL, "loss": None, "error": message}
        self.rows.append({"params": config_dict, "result": result, "error": None})
        self.params2result[params_str] = result
        self.model, score, bigger = result["model"], result["best_valid_score"], result["valid_score_bigger"]
        self.score_list.append(score)
        if self.best_score is None or (score > self.best_score if bigger else score < self.best_score):
            self.best_score, self.best_params, self.best_test_result = score, params, result["test_result"]
            self._print_result(result)
        return {"loss": -score if bigger else score, "status": hyperopt.STATUS_OK}

    def run(self):
        """Search; ends normally even if every trial failed (the table says why each did)."""
        from hyperopt import fmin
        from hyperopt.exceptions import AllTrialsFailed

        try:
            fmin(self.trial, self.space, algo=self.algo, max_evals=self.max_evals,
                 early_stop_fn=self.early_stop_fn, rstate=np.random.default_rng(self.seed))
        except AllTrialsFailed:
            pass
        if self.display_file is not None and self.model is not None:
            self.plot_hyper()

    def export_result(self, output_file=None):
        """The table of trials, then RecBole's per-trial blocks with the bytes ratio (or the error) added."""
        with open(output_file, "w") as f:
            f.write(format_trials(self.rows) + "\n\n")
            for params_str, result in self.params2result.items():
                f.write(params_str + "\n")
                if "error" in result:
                    f.write(f"Error: {result['error']}\n\n")
                    continue
                ratio = (result.get("compression") or {}).get("ratio")
                f.write(f"Valid result:\n{dict2str(result['best_valid_result'])}\n"
                        f"Test result:\n{dict2str(result['test_result'])}\n"
                        f"Bytes ratio: {_number(ratio)}\n\n")
