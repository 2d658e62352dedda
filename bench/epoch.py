"""Time the first epoch of one Table 2 run at a parameter set's scale: what a training stage
of `dvc repro` spends per epoch, tokenising and compiling included; or, with ``--group``, of a
fused group of runs (smartmtl.fused.group: ``table3`` is the paper's grid) as `smartmtl train-group`
trains it.

It prints the epoch's dev scores, its wall time, and the steady rate of its last half (from
the optimizer-step log points, so compilation and the first shapes are left out): the rate
later epochs run at. A line per log point goes to stderr, so a run stopped by a time box still
tells its rate. Numbers, not asserts.

    python bench/epoch.py --params params.yaml [--row concat_smart_star | --group table3]
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
    parser.add_argument("--group", default="", help="A fused group instead: a row, table3 or figure3.")
    parser.add_argument("--log-every", type=int, default=20, help="Optimizer steps between a group's log points.")
    parser.add_argument("--seconds", type=float, default=0, help="A group's time box: it stops at the first log "
                                                                   "point past it (0: its whole first epoch).")
    args = parser.parse_args()

    from smartmtl.config import load_params
    from smartmtl.model.features import load_features
    from smartmtl.train.hardware import resolve_compute
    from smartmtl.train.loop import TrainingLog, train
    from smartmtl.train.schedules import tasks_of
    from smartmtl.variants import table2_spec

    params = load_params(args.params)
    specs = [table2_spec(params, args.row, params.sweep.seeds[0])]
    if args.group:
        from smartmtl.fused.group import named_group
        specs = named_group(params, args.group)
    spec = specs[0]
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

    compute = resolve_compute(params.train.precision, params.train.device)
    if args.group:
        time_group(args, params, specs, features, compute, EpochLog, marks, tokenised - started)
        return
    train(spec, params, features, compute, log=EpochLog(), stop_after_epochs=1)
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


class TimeBox(Exception):
    """The group's time box (or its first epoch) is over."""


def time_group(args, params, specs, features, compute, epoch_log, marks, tokenise_s) -> None:
    """The steady rate of a fused group over its first epoch, or the part of it ``--seconds`` allow
    (from the backbone, not the pretraining: the same arithmetic)."""
    from smartmtl.fused.group import train_group
    from smartmtl.train.loop import TrainingLog
    from smartmtl.train.schedules import build_plan, tasks_of

    spec, tasks = specs[0], tasks_of(specs[0].schedule)
    epoch_steps = len(build_plan(spec.schedule, {t: features["train"][t].lengths for t in tasks},
                                 params.train.batch_size, spec.seed, epochs=1,
                                 sequential_epochs=params.train.sequential_epochs.model_dump())[0])
    started = time.perf_counter()

    class BoxedLog(epoch_log):
        def steps(self, step: int, terms: dict) -> None:
            super().steps(step, terms)
            if step >= epoch_steps or (args.seconds and time.perf_counter() - started > args.seconds):
                raise TimeBox

    print(f"{len(specs)} runs fused, {epoch_steps} steps an epoch", file=sys.stderr, flush=True)
    try:
        train_group(specs, params, features, compute, logs=[BoxedLog()] + [TrainingLog()] * (len(specs) - 1),
                    log_every=args.log_every)
    except TimeBox:
        pass
    (first_step, first_time), (last_step, last_time) = marks[len(marks) // 2], marks[-1]
    steady = (last_step - first_step) / (last_time - first_time)
    print(json.dumps({
        "group": args.group, "runs": len(specs), "batch_size": params.train.batch_size, "tokenise_s": round(tokenise_s, 1),
        "steps_timed": f"{first_step}-{last_step} of {epoch_steps}", "steady_steps_per_s": round(steady, 3),
        "steady_examples_per_s": round(steady * len(specs) * params.train.batch_size * len(tasks), 1),
        "steady_epoch_s": round(epoch_steps / steady, 1),
    }))


if __name__ == "__main__":
    main()
