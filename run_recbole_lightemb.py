"""Command line: RecBole's ``run_recbole.py`` flags plus ``--emb`` (and any ``--key=value``).

``--compare`` runs the full model and every ``--emb=a,b,...`` at every ``--emb_budget=x,y,...``
on the same data, split and seeds, and writes a table and a plot to ``--compare_dir``.
"""

import argparse
import sys


def str2bool(text):
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def split_list(text):
    return [part.strip() for part in text.split(",") if part.strip()] if text else []


def summary(result):
    """The few lines a run ends with, on stdout (the log stays on stderr)."""
    lines = [f"{result['model']} on {result['dataset']}, emb={result['emb']}: bytes ratio "
             f"{result['compression']['ratio']:.4f} of the full tables"]
    if "mean_test_result" in result:
        lines.append("mean test result over segments: " + ", ".join(
            f"{k} {v:.4f}" for k, v in result["mean_test_result"].items()))
    else:
        lines.append("test result: " + ", ".join(f"{k} {v:.4f}" for k, v in result["test_result"].items()))
        convergence = result.get("convergence") or {}
        if convergence:
            lines.append(f"stopped at epoch {convergence['epochs_run']} (best {convergence['best_epoch']}): "
                         + ("early stopping" if convergence["converged"] else "the epoch cap, not converged"))
    lines.append(f"plan: {result['plan'].get('file')}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)  # --seed is not --seeds
    parser.add_argument("--model", "-m", type=str, default="BPR", help="name of models")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="name of datasets")
    parser.add_argument("--config_files", type=str, default=None, help="config files")
    parser.add_argument("--emb", type=str, default=None, help="embedding method: full, uniform, baco, ...")
    parser.add_argument("--compare", type=str2bool, nargs="?", const=True, default=False,
                        help="compare the full model with every --emb (comma list) at every --emb_budget")
    parser.add_argument("--emb_budget", type=str, default=None, help="with --compare: comma list of fractions")
    parser.add_argument("--seeds", type=int, default=1, help="with --compare: runs per arm (seed, seed+1, ...)")
    parser.add_argument("--compare_dir", type=str, default=None, help="with --compare: where results go")
    parser.add_argument("--nproc", type=int, default=1, help="the number of process in this group")
    parser.add_argument("--ip", type=str, default="localhost", help="the ip of master node")
    parser.add_argument("--port", type=str, default="5678", help="the port of master node")
    parser.add_argument("--world_size", type=int, default=-1, help="total number of jobs")
    parser.add_argument("--group_offset", type=int, default=0, help="the global rank offset of this group")
    parser.add_argument("--debug", type=str2bool, nargs="?", const=True, default=False,
                        help="show the full traceback of a configuration error")
    args, _ = parser.parse_known_args()  # other --key=value pairs are read by RecBole's Config
    sys.argv = [a for a in sys.argv if not a.startswith("--debug")]

    from recbole_lightemb import run  # imported after parsing, so that --help answers at once
    from recbole_lightemb.analysis.compare import compare

    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        if args.compare:
            compare(args.model, args.dataset, split_list(args.emb) or ["full"], split_list(args.emb_budget),
                    config_file_list=config_file_list, seeds=args.seeds, compare_dir=args.compare_dir)
        else:
            result = run(args.model, args.dataset, config_file_list=config_file_list, nproc=args.nproc,
                         world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.group_offset)
            if result is not None:
                print(summary(result))
    except (ValueError, FileNotFoundError) as error:  # the errors raised on purpose: bad keys, values, files
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
