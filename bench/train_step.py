"""Benchmark: our training step against the Hugging Face Trainer, on the same real batches.

Each phase runs in its own process (so that its peak memory is its own) on the same QQP
training pairs, each pair one concatenated sequence:
- ``trainer``: the Hugging Face ``Trainer`` fine-tuning the same backbone as a sequence
  classifier with dynamic padding, in the precision ours resolves to: what a user would do instead;
- ``plain``: our step with the task loss only;
- ``smart``: our SMART step as params.yaml sets it (its ascent steps, the Bregman teacher);
- ``plain_3task``, ``pcgrad`` and ``smart_3task``: one step over SST, QQP and STS, plain, with
  gradient surgery, and with SMART: the step of a simultaneous epoch.
Each phase goes over its batches twice and times the second pass. ``--compile MODE`` is an
experiment the trainer does not offer: ``torch.compile`` on the encoder's layers (the first
pass compiles); docs/speed.md says what it measured. ``--processes K`` runs K copies of each phase at once and adds up
their examples per second: what one device gives several runs trained side by side. It prints one table:
examples per second, peak memory, the ratios the speed issue sets targets for, and what one
simultaneous SMART epoch over all of params.yaml's SST training rows costs at that rate.
Numbers, not asserts: run it (``make bench``), read it, compare across commits.

    python bench/train_step.py [--steps 20] [--batch-size 32] [--precision auto|bf16|fp32]
                               [--compile off|default|reduce-overhead] [--processes 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import time

PHASES = ("trainer", "plain", "smart", "plain_3task", "pcgrad", "smart_3task")
TASKS = ("sst", "qqp", "sts")


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def peak_mib(torch, device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def time_second_pass(torch, device, batches: list, run_step) -> float:
    """Examples per second over the second of two passes: the first pays for new shapes."""
    examples = 0
    for index, batch in enumerate(batches + batches):
        if index == len(batches):
            if device.type == "cuda":
                torch.cuda.synchronize()
            examples, started = 0, time.perf_counter()
        examples += run_step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return examples / (time.perf_counter() - started)


def run_phase(phase: str, args) -> dict:
    import numpy as np
    import torch

    from smartmtl.config import load_params
    from smartmtl.data.prepared import load_split
    from smartmtl.model.backbone import load_tokenizer
    from smartmtl.model.features import bucketed_batches, tokenize
    from smartmtl.model.heads import build_model
    from smartmtl.train import smart
    from smartmtl.train.hardware import autocast_for, pick_device, resolve_precision
    from smartmtl.train.loop import StepTerms, smart_settings, step_gradients
    from smartmtl.variants import table2_cell_spec

    params = load_params(args.params)
    device = pick_device(params.train.device)
    precision = resolve_precision(args.precision, device)
    rows = args.steps * args.batch_size
    tokenizer = load_tokenizer(params.model.backbone)
    frames = {task: load_split(params.data.prepared_dir, task, "train") for task in TASKS}
    features = {task: tokenize(frame.iloc[:rows], task, "concat", tokenizer, params.model.max_length)
                for task, frame in frames.items()}
    rng = np.random.default_rng(0)
    if phase.endswith("3task") or phase == "pcgrad":
        per_task = [bucketed_batches(features[t].lengths[:rows], args.batch_size, rng) for t in TASKS]
        batches = [dict(zip(TASKS, group, strict=True)) for group in zip(*per_task, strict=False)]
    else:
        batches = [{"qqp": b} for b in bucketed_batches(features["qqp"].lengths[:rows], args.batch_size, rng)]

    if phase == "trainer":
        speed = hf_trainer(params, load_split(params.data.prepared_dir, "qqp", "train").iloc[:rows], args, device,
                           precision)
        return {"examples_per_s": speed, "peak_mib": peak_mib(torch, device), "precision": precision}

    spec = dataclasses.replace(table2_cell_spec(params, 0), name="bench",
                               smart=phase.startswith("smart"), surgery=phase == "pcgrad", pretrained=False)
    torch.manual_seed(0)
    model = build_model(spec, params).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    settings = smart_settings(spec, params)
    sp = params.smart
    teacher = smart.EmaTeacher(model, smart.teacher_beta(sp.teacher_horizon, 2 * len(batches), sp.teacher_beta_min)) \
        if settings is not None and settings.mu > 0 else None
    surgery = params.surgery.reduction if spec.surgery else None
    autocast = autocast_for(device, precision)
    if args.compile != "off":  # the layer stack only: SMART's hook on the embeddings stays eager
        for each in [model] + ([teacher.model] if teacher is not None else []):
            each.encoder.encoder.compile(mode=args.compile)
    surgery_rng = torch.Generator().manual_seed(0)

    def step(batch) -> int:
        optimizer.zero_grad(set_to_none=True)
        step_gradients(model, teacher, batch, features, settings, surgery, StepTerms(), device, autocast, surgery_rng)
        optimizer.step()
        if teacher is not None:
            teacher.update(model)
        return sum(len(indices) for indices in batch.values())

    return {"examples_per_s": time_second_pass(torch, device, batches, step), "peak_mib": peak_mib(torch, device),
            "precision": precision, "sst_rows": len(frames["sst"])}


def hf_trainer(params, frame, args, device, precision: str) -> float:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from smartmtl.model.backbone import load_tokenizer, resolve_backbone

    class Clock(TrainerCallback):  # time the second pass, as for ours
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == args.max_steps // 2:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                self.started = time.perf_counter()

    tokenizer = load_tokenizer(params.model.backbone)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_backbone(params.model.backbone), num_labels=2,
                                                               dtype=torch.float32)
    encoded = tokenizer(frame["sentence1"].tolist(), frame["sentence2"].tolist(), truncation=True,
                        max_length=params.model.max_length)
    data = [{**{key: values[i] for key, values in encoded.items()}, "labels": int(label)}
            for i, label in enumerate(frame["label"])]
    training = TrainingArguments(output_dir="bench/out/trainer", per_device_train_batch_size=args.batch_size,
                                 max_steps=2 * args.steps, learning_rate=1e-5, report_to=[], save_strategy="no",
                                 logging_strategy="no", use_cpu=device.type == "cpu", dataloader_num_workers=0,
                                 bf16=precision == "bf16")
    clock = Clock()
    trainer = Trainer(model=model, args=training, train_dataset=data + data,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[clock])
    trainer.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - clock.started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--compile", default="off", choices=["off", "default", "reduce-overhead"],
                        help="An experiment: torch.compile the encoder's layers in this mode (docs/speed.md).")
    parser.add_argument("--processes", type=int, default=1, help="Copies of each phase run at once.")
    parser.add_argument("--params", default="params.yaml", help="Whose SMART and model settings to use.")
    parser.add_argument("--phases", default=",".join(PHASES), help="A comma-separated subset of " + ", ".join(PHASES))
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase, print its JSON
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args)))
        return

    results = {phase: run_copies(phase, args) for phase in args.phases.split(",")}
    print(report(results, args))


def run_copies(phase: str, args) -> dict:
    """Run ``args.processes`` copies of a phase at once; their summed speed, the largest peak."""
    command = [sys.executable, __file__, "--phase", phase, "--steps", str(args.steps), "--batch-size",
               str(args.batch_size), "--precision", args.precision, "--params", args.params, "--compile", args.compile]
    copies = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(args.processes)]
    results = []
    for copy in copies:
        stdout, stderr = copy.communicate()
        if copy.returncode != 0:
            sys.exit(f"phase {phase} failed:\n{stderr[-3000:]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return {**results[0], "examples_per_s": sum(r["examples_per_s"] for r in results),
            "peak_mib": max(r["peak_mib"] for r in results)}


def report(results: dict, args) -> str:
    import torch

    precision = next(iter(results.values()))["precision"]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name()
    lines = [f"{time.strftime('%Y-%m-%d')}, {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
             f"batch {args.batch_size}, {args.steps} steps timed, {precision}, compile {args.compile}, "
             f"{args.processes} process(es) per phase, settings of {args.params}",
             "", "| step | examples/s | peak memory (MiB) | vs Trainer | cost vs plain |", "|---|---:|---:|---:|---:|"]
    trainer = results.get("trainer", {}).get("examples_per_s")
    plain = {"smart": "plain", "pcgrad": "plain_3task", "smart_3task": "plain_3task"}
    for phase, result in results.items():
        speed = result["examples_per_s"]
        versus = f"{speed / trainer:.2f}x" if trainer and phase != "trainer" else ""
        base = results.get(plain.get(phase, ""), {}).get("examples_per_s")
        cost = f"{base / speed:.2f}x" if base else ""
        lines.append(f"| {phase} | {speed:,.1f} | {result['peak_mib']:,.0f} | {versus} | {cost} |")
    if "smart_3task" in results:
        rows = results["smart_3task"]["sst_rows"]
        lines.append(f"\nOne simultaneous SMART epoch (3 x {rows:,} examples) at this rate: "
                     f"~{3 * rows / results['smart_3task']['examples_per_s']:,.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
