"""Hyper-parameter tuning: RecBole's ``run_hyper.py`` flags, over plugin keys and RecBole's together.

    python run_hyper_lightemb.py --config_files=fixed.yaml --params_file=params.hyper

The params file is RecBole's (one ``key type values`` line each, e.g. ``emb_budget choice [0.1,0.25]``).
Needs hyperopt (``pip install -e ".[tune]"``); ray is not used, so ``--tool`` is ``Hyperopt`` only.
Other ``--key=value`` pairs are fixed settings every trial reads, as with ``run_recbole_lightemb.py``.
"""

import argparse
import sys

TUNER_FLAGS = ("config_files", "params_file", "output_file", "display_file", "tool", "algo", "max_evals",
               "early_stop", "debug")
"""This script's own flags: hidden from RecBole's Config, which reads ``sys.argv`` itself."""

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_files", type=str, default=None, help="fixed config files")
    parser.add_argument("--params_file", type=str, default=None, help="parameters file")
    parser.add_argument("--output_file", type=str, default="hyper_example.result", help="output file")
    parser.add_argument("--display_file", type=str, default=None, help="visualization file (plotly HTML)")
    parser.add_argument("--tool", type=str, default="Hyperopt", help="tuning tool: Hyperopt")
    parser.add_argument("--algo", type=str, default="exhaustive", help="exhaustive, random or bayes")
    parser.add_argument("--max_evals", type=int, default=100, help="trials, for random and bayes")
    parser.add_argument("--early_stop", type=int, default=10, help="stop after this many trials without progress")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a setup error")
    args, _ = parser.parse_known_args()

    try:
        if args.tool != "Hyperopt":
            raise ValueError(f"--tool={args.tool}: recbole-lightemb tunes with hyperopt only (--tool=Hyperopt)")
        if not args.params_file:
            raise ValueError("--params_file is missing: one 'key type values' line per key, as in RecBole's run_hyper")
        from recbole_lightemb.analysis.compare import hidden_cmd_args
        from recbole_lightemb.analysis.hyper import HyperTuning, format_trials  # HyperTuning names a missing hyperopt

        config_file_list = args.config_files.strip().split(" ") if args.config_files else None
        with hidden_cmd_args(TUNER_FLAGS):
            tuner = HyperTuning(params_file=args.params_file, fixed_config_file_list=config_file_list,
                                display_file=args.display_file, algo=args.algo, max_evals=args.max_evals,
                                early_stop=args.early_stop)
            tuner.run()
    except (ImportError, ValueError, FileNotFoundError) as error:  # setup errors; a trial's own are in the table
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    tuner.export_result(output_file=args.output_file)
    print(format_trials(tuner.rows))
    print("best params: ", tuner.best_params)
    print("best result: ")
    print(tuner.params2result[tuner.params2str(tuner.best_params)] if tuner.best_params else "every trial failed")
