"""The BACO authors' Amazon-Beauty split as RecBole atomic files (what ``--data`` of the benchmarks reads).

Their repository (github.com/HKBU-LAGAS/BACO, ``code/datasets/Beauty-processed/``) ships the split as
``train.pt``, ``val.pt`` and ``test.pt``: each a ``2 × E`` tensor of (user id, item id) pairs. They are
read with ``torch.load(weights_only=True)`` (tensors only: nothing in the files runs) and written as
``<out>/beauty/beauty.{train,valid,test}.inter`` for ``benchmark_filename: [train, valid, test]``.

    python bench/beauty_to_atomic.py --src path/to/Beauty-processed --out ../shared/datasets
"""

import argparse
from pathlib import Path

import torch

PARTS = {"train": "train", "val": "valid", "test": "test"}


def convert(src, out, name="beauty"):
    """Write the three atomic files; return their paths."""
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for theirs, ours in PARTS.items():
        path = Path(src) / f"{theirs}.pt"
        try:
            edges = torch.load(path, weights_only=True)
        except Exception as error:  # noqa: BLE001  (missing, corrupt, or not plain tensors)
            raise SystemExit(f"error: --src={str(src)!r}: {path.name} is not a readable tensor file ({error})")
        edges = torch.as_tensor(edges)
        if edges.dim() != 2 or edges.shape[0] != 2:
            raise SystemExit(f"error: {path}: expected a 2 × E tensor of (user, item) ids, got {tuple(edges.shape)}")
        target = folder / f"{name}.{ours}.inter"
        with open(target, "w") as f:
            f.write("user_id:token\titem_id:token\n")
            f.writelines(f"{u}\t{i}\n" for u, i in edges.t().tolist())
        written.append(target)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="folder with the authors' train.pt, val.pt, test.pt")
    parser.add_argument("--out", required=True, help="data_path to write beauty/beauty.*.inter under")
    args = parser.parse_args()
    for path in convert(args.src, args.out):
        print(path)


if __name__ == "__main__":
    main()
