"""Epoch time with 1 and 2 processes through RecBole's DDP path (gloo on CPU), and the metric gap.

    python bench/ddp_scaling.py [--epochs 5] [--models BPR LightGCN] [--emb full]

Both runs use the same config, data and epochs; writes bench/results/ddp_scaling.json.
On a 2-core machine the speed-up is bounded by the cores and gloo's all-reduce.
"""

import argparse
import os
import platform
import socket
import tempfile

import torch

import recbole_lightemb
from recbole_lightemb import run
from common import save_results


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["BPR", "LightGCN"])
    parser.add_argument("--emb", default="full")
    parser.add_argument("--emb_budget", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (workers inherit it)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by each spawned worker's torch
    torch.set_num_threads(args.threads)
    rows = []
    for model in args.models:
        config = {"emb": args.emb, "emb_budget": args.emb_budget, "epochs": args.epochs, "eval_step": args.epochs,
                  "show_progress": False, "state": "WARNING", "checkpoint_dir": tempfile.mkdtemp()}
        runs = {n: run(model, "ml-100k", config_dict=dict(config), nproc=n, ip="127.0.0.1", port=free_port())
                for n in (1, 2)}
        epoch_s = {n: r["timing"]["train_s"] / args.epochs for n, r in runs.items()}
        gap = {k: runs[2]["test_result"][k] - v for k, v in runs[1]["test_result"].items()}
        rows.append({"model": model, "epoch_s": epoch_s, "speedup": epoch_s[1] / epoch_s[2],
                     "test_1proc": dict(runs[1]["test_result"]), "test_2proc": dict(runs[2]["test_result"]),
                     "test_gap_2_minus_1": gap})
        print(f"{model:<9} epoch 1 proc {epoch_s[1]:.2f}s  2 procs {epoch_s[2]:.2f}s  speed-up "
              f"{epoch_s[1] / epoch_s[2]:.2f}x  max |metric gap| {max(abs(v) for v in gap.values()):.4f}")
    out = {"benchmark": "ddp_scaling", "dataset": "ml-100k", "emb": args.emb, "epochs": args.epochs,
           "backend": "nccl" if torch.cuda.is_available() else "gloo", "results": rows,
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads_per_process": args.threads, "cuda": torch.cuda.is_available(),
                       "recbole_lightemb": recbole_lightemb.__version__}}
    save_results("ddp_scaling_gpu" if torch.cuda.is_available() else "ddp_scaling", out)


if __name__ == "__main__":
    main()
