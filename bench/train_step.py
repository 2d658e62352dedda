"""Benchmark: our training step against the Hugging Face Trainer, on the same real batches.

In one process, on the same QQP training pairs (as one concatenated sequence each):
1. the Hugging Face ``Trainer`` fine-tuning the same backbone as a sequence classifier,
   fp32, dynamic padding (``DataCollatorWithPadding``): what a user would do instead;
2. our plain step (task loss only);
3. our SMART step (adversarial term + Bregman proximal term), with the laptop preset's
   settings (no ascent step, bf16) and with the paper's (one ascent step, float32 perturbation);
4. our PCGrad step (three tasks, one flat gradient each), against a plain three-task step.
It prints examples per second, the ratios the issue sets targets for, and peak memory
(on CUDA per phase; on the CPU the process's peak resident size after each phase, which
only grows). Numbers, not asserts: run it, read it, compare across commits.

    python bench/train_step.py [--steps 20] [--batch-size 32] [--precision bf16]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from smartmtl import smart
from smartmtl.backbone import load_tokenizer, resolve_backbone
from smartmtl.config import parse_params
from smartmtl.data import load_split
from smartmtl.features import bucketed_batches, tokenize
from smartmtl.presets import render
from smartmtl.train import StepTerms, autocast_for, build_model, pick_device, step_gradients
from smartmtl.variants import RunSpec


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        return f"{peak:,.0f} MiB (GPU, this phase)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:,.0f} MiB (process peak RSS so far)"


def hf_trainer(backbone: str, frame, steps: int, batch_size: int, device: torch.device) -> float:
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    class Clock(TrainerCallback):  # time the second pass, as for ours
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == args.max_steps // 2:
                self.started = time.perf_counter()

    tokenizer = load_tokenizer(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_backbone(backbone), num_labels=2,
                                                               dtype=torch.float32)
    encoded = tokenizer(frame["sentence1"].tolist(), frame["sentence2"].tolist(), truncation=True, max_length=64)
    data = [{**{key: values[i] for key, values in encoded.items()}, "labels": int(label)}
            for i, label in enumerate(frame["label"])]
    # The Trainer also goes over the data twice and is timed on the second pass.
    data = data + data
    args = TrainingArguments(output_dir="bench/out/trainer", per_device_train_batch_size=batch_size,
                             max_steps=2 * steps, learning_rate=1e-5, report_to=[], save_strategy="no",
                             logging_strategy="no", use_cpu=device.type == "cpu", dataloader_num_workers=0)
    clock = Clock()
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[clock])
    trainer.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - clock.started)


def ours(params, features: dict, batches: list[dict], spec: RunSpec, device, precision: str) -> float:
    torch.manual_seed(0)
    model = build_model(spec, params).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    teacher = smart.EmaTeacher(model, 0.99, 0.999, 0.1, len(batches)) if spec.smart else None
    autocast = autocast_for(device, precision)
    surgery_rng = torch.Generator().manual_seed(0)
    # Two passes over the same batches, the first untimed: every batch length is a new
    # shape, and the first sight of a shape pays for kernel selection (notably on CUDA).
    examples = 0
    for step, batch in enumerate(batches + batches):
        if step == len(batches):
            if device.type == "cuda":
                torch.cuda.synchronize()
            examples, started = 0, time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        step_gradients(model, teacher, batch, features, spec, params, StepTerms(), device, autocast, surgery_rng)
        examples += sum(len(indices) for indices in batch.values())
        optimizer.step()
        if teacher is not None:
            teacher.update(model, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return examples / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--prepared-dir", default="data/prepared")
    parser.add_argument("--backbone", default=None, help="Another backbone than the laptop preset's.")
    args = parser.parse_args()

    raw = render("laptop")
    raw["data"]["prepared_dir"] = args.prepared_dir
    raw["model"]["max_length"] = 64
    raw["model"]["backbone"] = args.backbone or raw["model"]["backbone"]
    params = parse_params(raw)
    # SMART as the paper sets it: one ascent step, perturbed forwards in float32.
    paper_smart = parse_params({**raw, "smart": {**raw["smart"], "steps": 1, "fp32_perturbation": True}})
    device = pick_device()
    tokenizer = load_tokenizer(params.model.backbone)
    n = args.steps * args.batch_size
    frames = {task: load_split(params.data.prepared_dir, task, "train").iloc[:n] for task in ("sst", "qqp", "sts")}
    features = {task: tokenize(frame, task, "concat", tokenizer, 64) for task, frame in frames.items()}
    rng = np.random.default_rng(0)
    qqp_batches = [{"qqp": b} for b in bucketed_batches(features["qqp"].lengths, args.batch_size, rng)]
    multi = [{t: b for t, b in zip(("sst", "qqp", "sts"), group, strict=True)} for group in zip(
        *(bucketed_batches(features[t].lengths, args.batch_size, rng) for t in ("sst", "qqp", "sts")), strict=False)]

    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch_size}, {args.steps} steps, "
          f"backbone {params.model.backbone}, ours in {args.precision}")
    base = dict(name="bench", kind="bench", label="bench", head="concat", pretrained=False, dropout=0.1, lambda_s=1.0)
    results = {}
    results["hf_trainer"] = hf_trainer(params.model.backbone, frames["qqp"], args.steps, args.batch_size, device)
    print(f"HF Trainer (fp32, dynamic padding): {results['hf_trainer']:8.1f} examples/s   {peak_memory(device)}")
    for name, spec, batches, settings in [
        ("plain", RunSpec(schedule="simultaneous", smart=False, surgery=False, **base), qqp_batches, params),
        ("smart_laptop", RunSpec(schedule="simultaneous", smart=True, surgery=False, **base), qqp_batches, params),
        ("smart_paper", RunSpec(schedule="simultaneous", smart=True, surgery=False, **base), qqp_batches, paper_smart),
        ("plain_3task", RunSpec(schedule="simultaneous", smart=False, surgery=False, **base), multi, params),
        ("pcgrad_3task", RunSpec(schedule="simultaneous", smart=False, surgery=True, **base), multi, params),
    ]:
        results[name] = ours(settings, features, batches, spec, device, args.precision)
        print(f"ours, {name:13s}:                {results[name]:8.1f} examples/s   {peak_memory(device)}")
    print(f"plain / Trainer speed:      {results['plain'] / results['hf_trainer']:.2f}x  (target >= 2)")
    print(f"SMART step cost / plain:    {results['plain'] / results['smart_laptop']:.2f}x laptop preset (no ascent, "
          f"bf16), {results['plain'] / results['smart_paper']:.2f}x paper (1 ascent step, fp32 perturbation)  "
          "(target <= 3)")
    print(f"PCGrad step cost / plain:   {results['plain_3task'] / results['pcgrad_3task']:.2f}x  "
          "(one backward per task either way; the extra is flattening and projecting)")


if __name__ == "__main__":
    main()
