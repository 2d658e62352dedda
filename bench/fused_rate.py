"""Benchmark: examples/s of a fused group of M SMART runs (smartmtl.fused) against runs one by one.

Each member is Table 2's Concat+SMART* run (three tasks a step, one ascent step, the Bregman
teacher) with its own seed: its own start, batches and noise. A group of M trains as one
vmapped model (``FusedTraining.step``); the baseline is today's step (``train.step_gradients``,
clipping, AdamW, the teacher) for ``--separate`` runs one after another in the same call.
Both go over their batches twice and time the second pass (bench/train_step.py's clock). M
doubles until the memory, ``--members`` or the ``--deadline`` runs out. It prints one table and
the paper preset's GPU-hours at the best measured rate (docs/speed.md's runs and examples).

    python bench/fused_rate.py [--params params.yaml] [--batch-size 8] [--steps 10]
                               [--members 1,2,4,8,16,32] [--separate 2] [--deadline 400]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from train_step import cpu_name, peak_mib, time_second_pass

TASKS = ("sst", "qqp", "sts")
# docs/speed.md, the paper preset one run at a time on one H200: GPU-hours of the SMART runs
# (simultaneous 26.7, SST-only 1.7, sequential 1.0) and of the plain runs (1.4 + 0.6), which
# this bench does not fuse.
SMART_HOURS, PLAIN_HOURS = 26.7 + 1.7 + 1.0, 1.4 + 0.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--row", default="concat_smart_star", help="A simultaneous SMART variant of params.yaml.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="Optimizer steps timed per measurement.")
    parser.add_argument("--members", default="1,2,4,8,16,32", help="Group sizes, in increasing order.")
    parser.add_argument("--separate", type=int, default=2, help="Runs trained one after another for the baseline.")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--attention", default="eager", help="The encoder's attention inside vmap.")
    parser.add_argument("--deadline", type=float, default=400.0, help="Seconds; no group is started that would pass it.")
    args = parser.parse_args()
    started = time.perf_counter()

    import numpy as np
    import torch

    from smartmtl import fused, smart
    from smartmtl.backbone import load_tokenizer
    from smartmtl.config import load_params
    from smartmtl.data import load_split
    from smartmtl.features import bucketed_batches, tokenize
    from smartmtl.hardware import autocast_for, pick_device, resolve_precision
    from smartmtl.heads import build_model
    from smartmtl.train import StepTerms, smart_settings, step_gradients
    from smartmtl.variants import table2_spec

    params = load_params(args.params)
    device = pick_device()
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
            if settings.mu > 0 else None
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

    def fused_rate(members: int) -> tuple[float, float]:
        specs = [dataclasses.replace(spec, seed=seed, name=f"bench-s{seed}") for seed in range(members)]
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        training = fused.start_group(specs, params, device, 2 * args.steps, args.attention)
        steps = list(zip(*(batches(seed) for seed in range(members)), strict=True))
        rate = time_second_pass(torch, device, steps, lambda group_step: (
            training.step(group_step, features, autocast), sum(examples(b) for b in group_step))[1])
        return rate, peak_mib(torch, device)

    baseline = separate_rate()
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
    print(report(args, device, precision, torch, baseline, results))


def report(args, device, precision, torch, baseline, results) -> str:
    name = torch.cuda.get_device_name() if device.type == "cuda" else cpu_name()
    lines = [f"{time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
             f"{args.row}, batch {args.batch_size} a task, {args.steps} steps timed, {precision}, "
             f"attention {args.attention}, settings of {args.params}",
             "", f"{args.separate} runs one after another: {baseline:,.1f} examples/s", "",
             "| runs fused | examples/s | per run | vs runs one after another | peak memory (MiB) |",
             "|---:|---:|---:|---:|---:|"]
    best = None
    for members, rate, peak in results:
        if rate is None:
            lines.append(f"| {members} | {peak} | | | |")
            continue
        lines.append(f"| {members} | {rate:,.1f} | {rate / members:,.1f} | {rate / baseline:.2f}x | {peak:,.0f} |")
        if best is None or rate > best[1]:
            best = (members, rate)
    if best is not None and device.type != "cuda":
        lines.append("\nThe paper preset's GPU-hours are computed on a GPU only: a CPU's ratio says nothing of a GPU's.")
    elif best is not None:
        speedup = best[1] / baseline
        lines.append(f"\nPaper preset with groups of {best[0]} fused ({speedup:.2f}x one run's rate, every SMART run so "
                     f"grouped): {SMART_HOURS:.1f} SMART GPU-hours / {speedup:.2f} + {PLAIN_HOURS:.1f} "
                     f"plain (not fused) = ~{SMART_HOURS / speedup + PLAIN_HOURS:.1f} GPU-hours "
                     "(docs/speed.md: ~31 one run at a time)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
