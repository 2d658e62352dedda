"""Benchmark: a fused group of M runs (``fused.group.train_group``) beside the same M runs trained one
by one (``train.loop.train``), whole training calls timed, on tiny data from tests/conftest.py.

The runs are Concat+SMART* (SMART, the Bregman teacher) at dropout 0 with random heads, the
seeds 0..M-1. It times whichever smartmtl is first on PYTHONPATH, so one shell line can time two
versions of the code (docs/fused.md):

    PYTHONPATH=src python bench/fused_vs_runs.py --members 4 --rows 32 --epochs 2 --label after
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

TASKS = ("sst", "qqp", "sts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--rows", type=int, default=32, help="Training rows per task (dev: half of them).")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--label", default="", help="Printed with the figures (which code ran).")
    args = parser.parse_args()

    import torch
    from conftest import _write, tiny_params

    import smartmtl
    from smartmtl.fused.group import train_group
    from smartmtl.model.features import load_features
    from smartmtl.train.hardware import resolve_compute
    from smartmtl.train.loop import train
    from smartmtl.variants import RunSpec

    torch.set_num_threads(args.threads)
    prepared = Path(tempfile.mkdtemp(prefix="fused_vs_runs-"))
    for task in TASKS:
        _write(prepared, task, "train", args.rows, labelled=True)
        _write(prepared, task, "dev", args.rows // 2, labelled=True, offset=1)
    params = tiny_params(prepared, model={"dropout": 0.0}, smart={"mu": 1.0},
                         train={"head_init": "random", "precision": "fp32"})
    spec = RunSpec(name="bench", kind="table2", label="Bench", head="concat", schedule="simultaneous",
                   epochs=args.epochs, smart=True, surgery=False, pretrained=False, dropout=0.0, lambda_s=1.0, seed=0,
                   row="bench")
    specs = [dataclasses.replace(spec, name=f"bench-s{seed}", seed=seed) for seed in range(args.members)]
    data = load_features(params, TASKS, "concat", splits=("train", "dev"))
    compute = resolve_compute("fp32")

    started = time.perf_counter()
    for member in specs:
        train(member, params, data, compute)
    runs_seconds = time.perf_counter() - started
    started = time.perf_counter()
    train_group(specs, params, data, compute)
    fused_seconds = time.perf_counter() - started
    print(json.dumps({"label": args.label, "code": str(Path(smartmtl.__file__).parent), "members": args.members,
                      "rows": args.rows, "epochs": args.epochs, "threads": args.threads,
                      "runs_one_by_one_s": round(runs_seconds, 1), "fused_group_s": round(fused_seconds, 1),
                      "fused_over_runs": round(fused_seconds / runs_seconds, 2)}))


if __name__ == "__main__":
    main()
