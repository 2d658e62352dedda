"""Benchmark: examples/s of a fused group of M SMART runs (smartmtl.fused.group) against runs one by one.

Each member is Table 2's Concat+SMART* run (three tasks a step, one ascent step, the Bregman
teacher) with its own seed: its own start, batches and noise. A group of M trains as one
vmapped model (``FusedTraining.step``); the baseline is today's step (``train.step_gradients``,
clipping, AdamW, the teacher) for ``--separate`` runs one after another in the same call.
Both go over their batches twice and time the second pass (bench/train_step.py's clock). M
doubles until the memory, ``--members`` or the ``--deadline`` runs out. It prints one table and,
on a GPU, the hours the parameter set's SMART runs take at the best measured rate: the examples
of every SMART run it plans (variants.planned_runs, their schedules' plans) over that rate.

    python bench/fused_rate.py [--params params.yaml] [--batch-size 8] [--steps 10]
                               [--members 1,2,4,8,16,32] [--separate 2] [--deadline 400]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from train_step import cpu_name, peak_mib, time_second_pass

TASKS = ("sst", "qqp", "sts")


def smart_examples(params, train_rows: dict[str, int]) -> tuple[int, int]:
    """The SMART runs params.yaml plans and the examples they train on, from their plans."""
    import numpy as np

    from smartmtl.train.schedules import build_plan, tasks_of
    from smartmtl.variants import planned_runs

    runs = [spec for spec in planned_runs(params) if spec.smart]
    examples = 0
    for spec in runs:
        lengths = {task: np.ones(train_rows[task], dtype=int) for task in tasks_of(spec.schedule)}
        plan = build_plan(spec.schedule, lengths, params.train.batch_size, spec.seed, epochs=spec.epochs,
                          sequential_epochs=params.train.sequential_epochs.model_dump())
        examples += sum(len(rows) for epoch in plan for step in epoch for rows in step.values())
    return len(runs), examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--row", default="concat_smart_star", help="A simultaneous SMART variant of params.yaml.")
    parser.add_argument("--grid", action="store_true",
                        help="Members are Table 3's cells (sweep.dropout x sweep.lambda_s), cycled, each cycle a seed.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="Optimizer steps timed per measurement.")
    parser.add_argument("--members", default="1,2,4,8,16,32", help="Group sizes, in increasing order.")
    parser.add_argument("--separate", type=int, default=2,
                        help="Runs trained one after another for the baseline (0: none, as for copies side by side).")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--attention", default="eager", help="The encoder's attention inside vmap.")
    parser.add_argument("--deadline", type=float, default=400.0, help="Seconds; no group is started that would pass it.")
    parser.add_argument("--profile", type=int, default=0,
                        help="Also profile one step of a group of this size: its most costly operators.")
    args = parser.parse_args()
    started = time.perf_counter()

    import numpy as np
    import torch

    from smartmtl.config import load_params
    from smartmtl.data.prepared import load_split
    from smartmtl.fused import group as fused
    from smartmtl.model.backbone import load_tokenizer
    from smartmtl.model.features import bucketed_batches, tokenize
    from smartmtl.model.heads import build_model
    from smartmtl.train import smart
    from smartmtl.train.hardware import autocast_for, pick_device, resolve_precision
    from smartmtl.train.loop import StepTerms, smart_settings, step_gradients
    from smartmtl.variants import table2_spec

    params = load_params(args.params)
    device = pick_device(params.train.device)
    precision = resolve_precision(args.precision, device)
    autocast = autocast_for(device, precision)
    spec = dataclasses.replace(table2_spec(params, args.row, 0), pretrained=False)
    rows = args.steps * args.batch_size
    tokenizer = load_tokenizer(params.model.backbone)
    features = {task: tokenize(load_split(params.data.prepared_dir, task, "train").iloc[:rows], task, spec.head,
                               tokenizer, params.model.max_length) for task in TASKS}

    def batches(seed: int) -> list[dict]:  # a run's steps: a batch of each task, in its own order
        rng = np.random.default_rng(seed)
        per_task = [bucketed_batches(features[task].lengths, args.batch_size, rng) for task in TASKS]
        return [dict(zip(TASKS, step, strict=True)) for step in zip(*per_task, strict=True)]

    def examples(step: dict) -> int:
        return sum(len(indices) for indices in step.values())

    def one_run(seed: int) -> tuple[int, float]:
        """One run as train.train steps it: its examples and the seconds they took."""
        torch.manual_seed(seed)
        run = dataclasses.replace(spec, seed=seed)
        model = build_model(run, params).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=params.train.lr, fused=True)
        settings = smart_settings(run, params)
        sp = params.smart
        teacher = smart.EmaTeacher(model, smart.teacher_beta(sp.teacher_horizon, 2 * args.steps, sp.teacher_beta_min)) \
            if settings is not None and settings.mu > 0 else None
        surgery_rng = torch.Generator().manual_seed(seed)

        def step(batch) -> int:
            optimizer.zero_grad(set_to_none=True)
            step_gradients(model, teacher, batch, features, settings, None, StepTerms(), device, autocast, surgery_rng)
            if params.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.train.grad_clip)
            optimizer.step()
            if teacher is not None:
                teacher.update(model)
            return examples(batch)

        own = batches(seed)
        count = sum(examples(b) for b in own)
        return count, count / time_second_pass(torch, device, own, step)

    def separate_rate() -> float:
        """``--separate`` runs one after another: their examples over their time."""
        done = [one_run(seed) for seed in range(args.separate)]
        return sum(count for count, _ in done) / sum(seconds for _, seconds in done)

    cells = [(d, lam) for d in params.sweep.dropout for lam in params.sweep.lambda_s]

    def member_specs(members: int) -> list:
        """The group's runs: the row's seeds, or with --grid the grid's cells, then their next seeds."""
        if not args.grid:
            return [dataclasses.replace(spec, seed=seed, name=f"bench-s{seed}") for seed in range(members)]
        return [dataclasses.replace(spec, seed=m // len(cells), name=f"bench-{m}", dropout=cells[m % len(cells)][0],
                                    lambda_s=cells[m % len(cells)][1]) for m in range(members)]

    def fused_rate(members: int) -> tuple[float, float]:
        specs = member_specs(members)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        training = fused.start_group(specs, params, device, 2 * args.steps, args.attention)
        steps = list(zip(*(batches(member) for member in range(members)), strict=True))
        rate = time_second_pass(torch, device, steps, lambda group_step: (
            training.step(group_step, features, autocast), sum(examples(b) for b in group_step))[1])
        return rate, peak_mib(torch, device)

    def profile(members: int) -> str:
        """One group step under torch.profiler: operators by device (or CPU) time, and the count."""
        from torch.profiler import ProfilerActivity
        training = fused.start_group(member_specs(members), params, device, 2 * args.steps, args.attention)
        group_step = list(zip(*(batches(seed) for seed in range(members)), strict=True))[0]
        training.step(group_step, features, autocast)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch.profiler.profile(activities=activities) as trace:
            training.step(group_step, features, autocast)
            if device.type == "cuda":
                torch.cuda.synchronize()
        averages = trace.key_averages()
        kernels = sum(e.count for e in averages if e.device_type.name == "CUDA")
        by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        return (f"One step of a group of {members}: {sum(e.count for e in averages if e.key.startswith('aten::'))} "
                f"aten operators dispatched, {kernels} device kernels\n\n"
                + averages.table(sort_by=by, row_limit=15, max_name_column_width=60))

    baseline = separate_rate() if args.separate else None
    results, spent = [], {}
    for members in [int(m) for m in args.members.split(",")]:
        left = args.deadline - (time.perf_counter() - started)
        if spent and spent[max(spent)] * members / max(spent) > left:
            results.append((members, None, f"skipped: ~{spent[max(spent)] * members / max(spent):.0f} s, {left:.0f} s left"))
            break
        clock = time.perf_counter()
        try:
            rate, peak = fused_rate(members)
        except torch.OutOfMemoryError:
            results.append((members, None, "out of memory"))
            break
        spent[members] = time.perf_counter() - clock
        results.append((members, rate, peak))
    smart_runs = smart_examples(params, {task: len(load_split(params.data.prepared_dir, task, "train"))
                                         for task in TASKS})
    print(report(args, device, precision, torch, baseline, results, smart_runs))
    if args.profile:
        print("\n" + profile(args.profile))


def report(args, device, precision, torch, baseline, results, smart_runs: tuple[int, int]) -> str:
    name = torch.cuda.get_device_name() if device.type == "cuda" else cpu_name()
    lines = [f"{time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
             f"{args.row}{' over the grid cells' if args.grid else ''}, batch {args.batch_size} a task, {args.steps} steps timed, {precision}, "
             f"attention {args.attention}, settings of {args.params}",
             "", f"{args.separate} runs one after another: {baseline:,.1f} examples/s" if baseline else "no baseline",
             "",
             "| runs fused | examples/s | per run | vs runs one after another | peak memory (MiB) |",
             "|---:|---:|---:|---:|---:|"]
    best = None
    for members, rate, peak in results:
        if rate is None:
            lines.append(f"| {members} | {peak} | | | |")
            continue
        ratio = f"{rate / baseline:.2f}x" if baseline else ""
        lines.append(f"| {members} | {rate:,.1f} | {rate / members:,.1f} | {ratio} | {peak:,.0f} |")
        if best is None or rate > best[1]:
            best = (members, rate)
    if best is not None and baseline is not None and device.type != "cuda":
        lines.append("\nThe paper preset's GPU-hours are computed on a GPU only: a CPU's ratio says nothing of a GPU's.")
    elif best is not None and baseline is not None:
        runs, examples = smart_runs
        lines.append(f"\nThe {runs} SMART runs of {args.params} train on {examples:,} examples: "
                     f"{examples / best[1] / 3600:.2f} GPU-hours at the rate of {best[0]} fused "
                     f"({best[1]:,.0f} examples/s), {examples / baseline / 3600:.1f} one run at a time "
                     "(plain runs, evaluation and tokenising not counted; docs/speed.md adds them)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
