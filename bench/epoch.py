"""Time the first epoch of one Table 2 run at a parameter set's scale: what a training stage
of `dvc repro` spends per epoch, tokenising and compiling included.

It prints the epoch's dev scores, its wall time, and the steady rate of its last half (from
the optimizer-step log points, so compilation and the first shapes are left out): the rate
later epochs run at. Numbers, not asserts.

    python bench/epoch.py --params params.yaml [--row concat_smart_star]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--row", default="concat_smart_star", help="A variant of params.yaml (Table 2's rows).")
    args = parser.parse_args()

    from smartmtl.config import load_params
    from smartmtl.features import load_features
    from smartmtl.hardware import resolve_compute
    from smartmtl.schedules import tasks_of
    from smartmtl.train import TrainingLog, train
    from smartmtl.variants import table2_spec

    params = load_params(args.params)
    spec = table2_spec(params, args.row, params.sweep.seeds[0])
    started = time.perf_counter()
    features = load_features(params, tasks_of(spec.schedule), spec.head, splits=("train", "dev"))
    tokenised = time.perf_counter()
    marks: list[tuple[int, float]] = []  # (optimizer step, time) at each log point
    results: dict = {}

    class EpochLog(TrainingLog):
        def steps(self, step: int, terms: dict) -> None:  # a line per log point: a killed run still tells its rate
            marks.append((step, time.perf_counter()))
            print(f"step {step}: {marks[-1][1] - tokenised:.1f} s", file=sys.stderr, flush=True)

        def epoch(self, epoch: int, step: int, metrics: dict) -> None:
            results.update(metrics, steps=step)

    train(spec, params, features, resolve_compute(params.train.precision), log=EpochLog(), stop_after_epochs=1)
    (first_step, first_time), (last_step, last_time) = marks[len(marks) // 2], marks[-1]
    steady = (last_step - first_step) / (last_time - first_time)
    epoch_steps = results["steps"]
    print(json.dumps({
        "row": args.row, "batch_size": params.train.batch_size,
        "tokenise_s": round(tokenised - started, 1), "epoch_s": round(results["train/seconds"], 1),
        "steps": epoch_steps, "steady_steps_per_s": round(steady, 2),
        "steady_epoch_s": round(epoch_steps / steady, 1),
        **{key: round(value, 4) for key, value in results.items() if key.startswith("dev/")},
    }))


if __name__ == "__main__":
    main()
