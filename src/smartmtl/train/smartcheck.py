"""``smartmtl smart-check``: does SMART act on real batches, with the current params.yaml?

For each task it runs the trainer's own objective (:func:`smartmtl.train.task_objective`,
with diagnostics) on a few real training batches and reports, averaged over them:
- the adversarial term, and its floor: the same forward with a zero perturbation (with the
  dropout masks shared, only rounding is left);
- the term that two independent dropout draws give with no perturbation at all (what the
  adversarial term measured before the masks were shared);
- the perturbation's size relative to the perturbed input, per token;
- the adversarial gradient's norm relative to the task loss's (the ratio at lambda_s = 1);
- the Bregman term against a teacher one plain step per task behind the student, its floor
  (the term against a teacher equal to the student: zero, since both draw the same dropout
  masks) and its gradient's norm relative to the task loss's (the ratio at mu = 1).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from smartmtl.config import Params
from smartmtl.model.features import load_features
from smartmtl.model.heads import build_model
from smartmtl.tasks import TASKS, task_loss
from smartmtl.train import smart
from smartmtl.train.hardware import autocast_for, pick_device
from smartmtl.train.loop import StepTerms, smart_settings, task_objective
from smartmtl.train.schedules import batch_stream
from smartmtl.variants import grid_spec


def check(params: Params, batches: int = 3, batch_size: int = 16) -> dict[str, dict[str, float]]:
    """Per task, the mean of each column over ``batches`` real training batches."""
    torch.manual_seed(params.train.seed)
    spec = dataclasses.replace(grid_spec(params, params.model.dropout, params.smart.lambda_s, params.train.seed),
                               name="smart-check", pretrained=False)
    features = load_features(params, TASKS, spec.head, splits=("train",))["train"]
    device = pick_device(params.train.device)
    autocast = autocast_for(device, params.train.precision)
    settings = smart_settings(spec, params)
    model = build_model(spec, params).to(device).train()
    teacher = smart.EmaTeacher(model, beta=1.0)  # its encoder stays where the student starts
    streams = {task: batch_stream(features[task].lengths, batch_size, params.train.seed, task) for task in TASKS}
    for task in TASKS:
        _plain_step(model, task, features[task].batch(next(streams[task]), device), autocast, params.train.lr)
    teacher.update(model)  # beta 1: only the heads follow
    # The Bregman term's floor: a teacher equal to the student (the check never changes the
    # student), the dropout masks replayed as in training; the term alone.
    equal = smart.EmaTeacher(model, beta=1.0)
    floor_settings = dataclasses.replace(settings, lambda_s=0.0, mu=1.0)
    report = {}
    for task in TASKS:
        terms = StepTerms()
        for _ in range(batches):
            segments, labels = features[task].batch(next(streams[task]), device)
            with autocast():
                task_objective(model, teacher, task, segments, labels, settings, terms, diagnose=True)
                with torch.no_grad():  # two dropout draws, no perturbation: the old term's source
                    terms.add("dropout_only", TASKS[task].divergence(model(task, segments), model(task, segments)))
                floor_terms = StepTerms()
                task_objective(model, equal, task, segments, labels, floor_settings, floor_terms)
                terms.add("bregman_floor", floor_terms.sums[f"bregman_{task}"])
        means = terms.means()
        report[task] = {
            "term": means[f"smart_{task}"], "floor": means[f"smart_floor_{task}"],
            "dropout_only": means["dropout_only"], "delta": means[f"smart_delta_{task}"],
            "grad_ratio": means[f"smart_grad_ratio_{task}"], "bregman": means.get(f"bregman_{task}", math.nan),
            "bregman_floor": means["bregman_floor"], "bregman_grad_ratio": means.get(f"bregman_grad_ratio_{task}", math.nan),
        }
    return report


def _plain_step(model, task, batch, autocast, lr: float) -> None:
    """Move the student one plain SGD step so that the Bregman column measures something."""
    segments, labels = batch
    model.zero_grad(set_to_none=True)
    with autocast():
        task_loss(task, model(task, segments), labels).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
    model.zero_grad(set_to_none=True)


def format_report(report: dict[str, dict[str, float]], params: Params) -> str:
    sp = params.smart
    lines = [f"SMART on {sp.site}, update {sp.update}, {sp.norm}-norm, {sp.scale} units, sigma {sp.sigma:g}, "
             f"epsilon {sp.epsilon:g}, eta {sp.eta:g}, {sp.steps} ascent step(s); lambda_s {sp.lambda_s:g}, "
             f"mu {sp.mu:g}; dropout {params.model.dropout:g}",
             f"{'task':5s} {'term':>10s} {'floor':>10s} {'term/floor':>10s} {'dropout-only':>12s} "
             f"{'|delta|/|x|':>11s} {'grad ratio':>10s} {'bregman':>10s} {'breg floor':>10s} {'breg ratio':>10s}"]
    for task, row in report.items():
        ratio = row["term"] / row["floor"] if row["floor"] > 0 else float("inf")
        lines.append(f"{task:5s} {row['term']:10.3g} {row['floor']:10.3g} {ratio:10.3g} {row['dropout_only']:12.3g} "
                     f"{row['delta']:11.3g} {row['grad_ratio']:10.3g} {row['bregman']:10.3g} "
                     f"{row['bregman_floor']:10.3g} {row['bregman_grad_ratio']:10.3g}")
    lines.append("term/floor: the perturbation's effect over what dropout and rounding alone give (>= 10 acts); "
                 "grad ratio: ||grad R_s|| / ||grad L|| on the encoder, i.e. at lambda_s = 1 (>= 0.01 acts); "
                 "bregman: against a teacher one plain step behind, its floor against an equal teacher (0 when "
                 "both draw the same dropout masks) and breg ratio its gradient against the task's, at mu = 1.")
    return "\n".join(lines)
