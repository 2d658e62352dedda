"""The training loop, for one run or a fused group of runs: read it top to bottom in :func:`train_runs`.

One optimizer step trains every task of the plan's step. Each task's loss is the paper's
task loss, plus lambda_s times the smoothness-inducing adversarial term and mu times the
Bregman proximal term when SMART is on. Without surgery each task's loss is back-propagated
in turn (the gradients add up, as for the summed loss, while only one task's graph is held
in memory); with surgery each task's shared-encoder gradient is set aside (one flat vector
per task) and PCGrad combines them.

After each epoch but the last the loop scores a part of the dev set for the learning curves,
logs, and saves a resume checkpoint, so an interrupted run started again continues from its
last finished epoch and ends the same. The last epoch's model is scored by the caller, the
runner (:mod:`smartmtl.train.runner`), which owns the run: its device, its outputs, its log.
Under torchrun each process trains its slice of every batch (:mod:`smartmtl.train.distributed`);
the caller runs :func:`train` inside :func:`smartmtl.distributed.process_group`.

What trains is an object with a few members (:class:`SingleRun`'s docstring): one run's model
here, or several runs stacked into one vmapped model (``smartmtl.fused.group.StackedRuns``, which
this module does not import: no stage's code depends on the fused group's). Everything else,
the optimizer, the schedule, the EMA teacher, the probes, the logs, the dev scores and resume,
is this loop's, the same for both.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from smartmtl.config import Params
from smartmtl.data.prepared import PROBE_SPLIT
from smartmtl.model.features import TaskFeatures
from smartmtl.model.heads import MultitaskModel, build_model, save_model
from smartmtl.model.inference import evaluate
from smartmtl.tasks import TASKS, task_loss
from smartmtl.train import distributed, pcgrad, probe, smart
from smartmtl.train.probecache import ProbeCache
from smartmtl.train.hardware import Compute
from smartmtl.train.progress import Progress
from smartmtl.train.schedules import build_plan, learning_rate_schedule, tasks_of
from smartmtl.variants import RunSpec

logger = logging.getLogger(__name__)


# --- one step -----------------------------------------------------------------------------

@dataclass
class StepTerms:
    """Per-task loss terms of an epoch, summed for logging.

    Kept as tensors so that logging costs no host-device synchronisation per step."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # The sums and counts at the last call of window_means().
    logged_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    logged_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().float()
        self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.counts[name] += 1

    def means(self) -> dict[str, float]:
        return {name: float(total) / self.counts[name] for name, total in self.sums.items()}

    def window_means(self) -> dict[str, float]:
        """The means since the previous call (one host-device synchronisation per call)."""
        means = {}
        for name, total in self.sums.items():
            count = self.counts[name] - self.logged_counts[name]
            if count:
                means[name] = float(total - self.logged_sums.get(name, 0.0)) / count
        self.logged_sums, self.logged_counts = dict(self.sums), defaultdict(int, self.counts)
        return means

    def task_loss(self) -> float:
        """The mean task loss so far, summed over tasks (what the progress display shows)."""
        return sum(value for name, value in self.means().items() if name.startswith("loss_"))


# SMART's diagnostics (its term with zero noise, the perturbation's size, its gradient against
# the task's) run on every DIAGNOSE_EVERY-th step: they cost two extra backward passes and do
# not change training (no .grad is touched and the random number generator is rewound).
DIAGNOSE_EVERY = 20
# Training losses are logged about this many times per run, whatever its length.
LOG_POINTS = 50


def smart_settings(spec: RunSpec, params: Params) -> smart.Settings | None:
    """SMART as ``spec`` trains with it (None: without SMART), built once per run."""
    if not spec.smart:
        return None
    sp = params.smart
    how = smart.Perturbation(update=sp.update, norm=sp.norm, scale=sp.scale, sigma=sp.sigma, epsilon=sp.epsilon,
                             eta=sp.eta, steps=sp.steps)
    return smart.Settings(perturbation=how, site=sp.site, lambda_s=spec.lambda_s, mu=sp.mu)


def task_objective(model, teacher, task: str, segments, labels, settings: smart.Settings | None,
                   terms: StepTerms, diagnose: bool = False) -> torch.Tensor:
    """The paper's Equation 2 plus Equation 5's proximal term, for one task's batch."""
    if settings is None:
        loss = task_loss(task, model(task, segments), labels)
        terms.add(f"loss_{task}", loss)
        return loss
    divergence = TASKS[task].divergence
    site = model.perturbation_site(settings.site)
    # Every forward below draws the clean forward's dropout masks: the terms then measure the
    # perturbation and the teacher's distance, not two dropout draws.
    same_dropout = smart.SameDropout(labels.device)
    with smart.at_site(site) as clean_inputs:
        output = model(task, segments)
    loss = task_loss(task, output, labels)
    terms.add(f"loss_{task}", loss)
    objective = loss
    if settings.lambda_s > 0:
        token_masks = [segment["attention_mask"] for segment in segments]
        adversarial, deltas = smart.adversarial_term(
            lambda: model(task, segments), site, clean_inputs, output, divergence, settings.perturbation,
            token_masks, same_dropout)
        terms.add(f"smart_{task}", adversarial)
        if diagnose:
            same_dropout.replay()
            with torch.no_grad():  # the same forward without the perturbation: dropout and rounding
                terms.add(f"smart_floor_{task}", divergence(model(task, segments), output))
            terms.add(f"smart_delta_{task}",
                      smart.relative_size(deltas, clean_inputs, token_masks, settings.perturbation.norm))
            terms.add(f"smart_grad_ratio_{task}", _gradient_ratio(adversarial, loss, model.shared_parameters()))
        objective = objective + settings.lambda_s * adversarial
    if teacher is not None and settings.mu > 0:
        same_dropout.replay()
        bregman = smart.bregman_loss(output, teacher(task, segments), divergence)
        terms.add(f"bregman_{task}", bregman)
        if diagnose:
            terms.add(f"bregman_grad_ratio_{task}", _gradient_ratio(bregman, loss, model.shared_parameters()))
        objective = objective + settings.mu * bregman
    same_dropout.close()
    return objective


def _gradient_ratio(term: torch.Tensor, loss: torch.Tensor, parameters) -> torch.Tensor:
    """||grad term|| / ||grad loss|| over the encoder's parameters, without touching .grad."""
    norms = []
    for value in (term, loss):
        grads = torch.autograd.grad(value, parameters, retain_graph=True, allow_unused=True)
        norms.append(torch.sqrt(sum(g.float().pow(2).sum() for g in grads if g is not None)))
    return norms[0] / norms[1].clamp_min(1e-30)


def step_gradients(model, teacher, batches: dict[str, np.ndarray], train_data: dict[str, TaskFeatures],
                   settings: smart.Settings | None, surgery: str | None, terms: StepTerms, device, autocast,
                   surgery_rng: torch.Generator, diagnose: bool = False) -> None:
    """The gradients of one optimizer step: each task's objective back-propagated in turn, so
    only one task's graph is alive at a time. Without surgery (None) they add up, as for the
    summed loss; with surgery ("sum" or "mean" of the projected gradients) PCGrad combines the
    shared encoder's per-task gradients, and how far they agreed is logged."""

    def task_backward(task: str, indices: np.ndarray) -> None:
        segments, labels = train_data[task].batch(distributed.shard(indices), device)
        with autocast():
            loss = task_objective(model, teacher, task, segments, labels, settings, terms, diagnose)
        loss.backward()

    backwards = [functools.partial(task_backward, task, indices) for task, indices in batches.items()]
    if surgery:
        cosines = pcgrad.surgery_backward(backwards, model.shared_parameters(), surgery, surgery_rng,
                                          average=distributed.average_)
        if len(cosines):
            terms.add("surgery_conflict", (cosines < 0).any().float())  # its mean: the share of steps
            terms.add("surgery_cosine", cosines.mean())
        distributed.average_gradients(model.heads)  # the encoder's were averaged before surgery
    else:
        for backward in backwards:
            backward()
        distributed.average_gradients(model)


# --- what trains: one run ------------------------------------------------------------------

class SingleRun:
    """One run, one model: what :func:`train_runs` trains for :func:`train` and the runner.

    The loop asks what trains of one run or of a fused group (smartmtl.fused.group.StackedRuns)
    through the same few members: ``specs`` and ``plans`` (one per run), ``model`` (the module
    whose parameters the optimizer, the teacher and resume see), ``gradients``, ``clip``,
    ``fit_probe``, ``score`` (a list, one scores dict per run), ``models`` and the random state
    a resumed run must continue from."""

    def __init__(self, spec: RunSpec, params: Params, train_data: dict[str, TaskFeatures], compute: Compute,
                 init: Path | None = None, probe_cache: ProbeCache | None = None):
        self.specs, self.name, self.compute, self.init = [spec], spec.name, compute, init
        self.probe_cache = probe_cache
        torch.manual_seed(spec.seed + distributed.rank())  # processes draw their own dropout and SMART noise
        self.model = build_model(spec, params, init).to(compute.device)
        distributed.broadcast_parameters(self.model)
        self.model.train()
        self.settings = smart_settings(spec, params)
        self.surgery = params.surgery.reduction if spec.surgery else None
        self.surgery_rng = torch.Generator().manual_seed(spec.seed)
        self.plans = [run_plan(spec, params, train_data)]
        self.run_id = fingerprint(spec, params)

    def gradients(self, steps: list[dict[str, np.ndarray]], train_data, teacher, terms: list[StepTerms],
                  diagnose: bool) -> None:
        step_gradients(self.model, teacher, steps[0], train_data, self.settings, self.surgery, terms[0],
                       self.compute.device, self.compute.autocast, self.surgery_rng,
                       diagnose=diagnose and self.settings is not None)

    def clip(self, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)

    def fit_probe(self, task: str, features: TaskFeatures, rows: list[np.ndarray], batch_size: int, teacher,
                  extra: TaskFeatures | None = None) -> None:
        _probe_head(self.model, teacher, task, features, rows[0], batch_size, self.compute, extra, self.probe_cache)

    def score(self, dev: dict[str, TaskFeatures], batch_size: int) -> list[dict[str, float]]:
        return [evaluate(self.model, dev, batch_size, self.compute.device, self.compute.autocast)[0]]

    def models(self) -> list[MultitaskModel]:
        return [self.model]

    def random_state(self) -> dict[str, torch.Tensor]:
        return {"torch_rng": torch.get_rng_state(), "surgery_rng": self.surgery_rng.get_state()}

    def set_random_state(self, state: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(state["torch_rng"])
        self.surgery_rng.set_state(state["surgery_rng"])


def _probe_head(model, teacher, task: str, features: TaskFeatures, rows: np.ndarray, batch_size: int, compute,
                extra: TaskFeatures | None = None, cache: ProbeCache | None = None) -> None:
    started = time.perf_counter()
    if probe.fit_head(model, task, features, rows, batch_size, compute.device, compute.autocast, extra, cache):
        distributed.broadcast_parameters(model.heads[task])
        if teacher is not None:  # the teacher reads the student's heads: from this step on, the fitted one
            teacher.model.heads[task].load_state_dict(model.heads[task].state_dict())
        logger.info("%s head: probe fitted on %d rows (%d trained on, %d only probed; %.1f s)", task,
                    len(rows) + len(extra or ()), len(rows), len(extra or ()), time.perf_counter() - started)


def run_plan(spec: RunSpec, params: Params, train_data: dict[str, TaskFeatures]):
    """The run's batches, epoch by epoch (smartmtl.train.schedules.build_plan), in its seed's order."""
    tp = params.train
    # Only sequential runs read train.sequential_epochs: dvc.yaml declares it for their stage alone.
    sequential_epochs = tp.sequential_epochs.model_dump() if spec.schedule == "sequential" else {}
    return build_plan(spec.schedule, {t: train_data[t].lengths for t in tasks_of(spec.schedule)}, tp.batch_size,
                      spec.seed, epochs=spec.epochs, sequential_epochs=sequential_epochs)


def pretrained_heads(init: Path | None) -> tuple[str, ...]:
    """The heads a run's starting checkpoint trained: the QQP pretraining's (``init`` is its
    checkpoint, the only one a run starts from)."""
    return tasks_of("pretrain") if init is not None else ()


def build_optimizer(model: torch.nn.Module, params: Params, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the encoder and the heads, each at its learning rate: the heads start from
    random weights (or a probe's), the encoder from a trained checkpoint. For a fused group
    ``model`` holds the stacked parameters: AdamW is elementwise, so it is one AdamW per member."""
    tp = params.train
    # fused: one kernel for all parameters, several times faster than the loop over them.
    return torch.optim.AdamW([{"params": list(model.encoder.parameters()), "lr": tp.lr},
                              {"params": list(model.heads.parameters()), "lr": tp.head_lr}],
                             betas=tp.betas, eps=tp.eps, weight_decay=tp.weight_decay,
                             fused=device.type in ("cpu", "cuda"))


# --- what the loop keeps of each run, and resume checkpoints --------------------------------

@dataclass
class RunHistory:
    """What the loop measured of one run: each epoch's record (its dev scores but after the
    last epoch, its mean training terms, ``train/seconds``), and ``dev_start``: each task's
    score on the whole dev split right before the first step that trained it."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    dev_start: dict[str, float] = field(default_factory=dict)


@dataclass
class Trained:
    """What :func:`train_runs` returns: each run's model and history, in the runs' order."""

    models: list[MultitaskModel]
    histories: list[RunHistory]


def fingerprint(spec: RunSpec, params: Params) -> str:
    """A resume checkpoint is only used by the very run that wrote it."""
    text = json.dumps([spec.config(), spec.name, params.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_resume(directory: Path, runs, histories: list[RunHistory], optimizer, scheduler, teacher) -> None:
    staging = directory.with_name(directory.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_model(runs.model, staging / "model.safetensors")
    if teacher is not None:
        save_model(teacher.model, staging / "teacher.safetensors")
    # Tensors and plain values only, so that it loads with weights_only (no unpickling of code).
    torch.save({"history": [asdict(history) for history in histories], "run_id": runs.run_id,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "random": runs.random_state()}, staging / "state.pt")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def load_resume(directory: Path, runs, optimizer, scheduler, teacher) -> list[RunHistory] | None:
    """Restore the last finished epoch; return each run's history of the epochs done (None: start afresh)."""
    state_file = directory / "state.pt"
    if not state_file.exists():
        return None
    state = torch.load(state_file, weights_only=True)
    if state["run_id"] != runs.run_id or "random" not in state:  # "random": from before groups resumed
        logger.info("ignoring %s: it was written with other parameters", directory)
        return None
    runs.model.load_state_dict(load_file(directory / "model.safetensors"))
    if teacher is not None:
        teacher.model.load_state_dict(load_file(directory / "teacher.safetensors"))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    runs.set_random_state(state["random"])
    histories = [RunHistory(**history) for history in state["history"]]
    logger.info("resuming %s after epoch %d", directory, len(histories[0].epochs))
    return histories


# --- the loop -----------------------------------------------------------------------------

class TrainingLog:
    """Where the loop reports on one run; this one forgets everything (the runner's writes DVCLive).

    ``steps(step, terms)``: the training terms' means over the last few optimizer steps,
    LOG_POINTS times per run, so that curves are curves even for one-epoch runs.
    ``start(step, epoch, scores)``: a task's whole-dev score right before the first step that
    trains it (``epoch``: the epochs completed by then).
    ``epoch(epoch, step, metrics)``: at each epoch's end, its dev scores (none after the last
    epoch: the caller scores that model) and its mean training terms.
    ``end(dev_scores)``: from the caller once the run is over, with the final model's dev
    scores when it scored it."""

    def steps(self, step: int, terms: dict[str, float]) -> None:
        pass

    def start(self, step: int, epoch: int, scores: dict[str, float]) -> None:
        pass

    def epoch(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        pass

    def end(self, dev_scores: dict[str, float] | None = None) -> None:
        pass


def train_runs(runs, params: Params, data: dict[str, dict[str, TaskFeatures]], compute: Compute, *,
               resume_dir: Path | None = None, logs: list[TrainingLog] | None = None,
               stop_after_epochs: int | None = None, log_every: int | None = None) -> Trained:
    """Train ``runs`` (a :class:`SingleRun`, or a fused group's StackedRuns) on ``data["train"]``,
    scoring ``train.epoch_eval_rows`` rows of ``data["dev"]`` after each epoch but the last and
    each task on its whole dev split before its first step; return the models and histories.
    ``logs``: one per run; ``log_every``: optimizer steps between the terms' log points (by
    default about LOG_POINTS in all)."""
    tp = params.train
    train_data, dev_data, probe_only = data["train"], data["dev"], data.get(PROBE_SPLIT, {})
    tasks = tasks_of(runs.specs[0].schedule)
    logs = list(logs) if logs is not None else [TrainingLog() for _ in runs.specs]
    main_process = distributed.is_main_process()

    plans = runs.plans
    plan = plans[0]  # every run's plan has this shape: its epochs, and in each its steps' tasks
    epoch_ends = np.cumsum([len(epoch) for epoch in plan])
    epoch_starts = epoch_ends - [len(epoch) for epoch in plan]
    total_steps = int(epoch_ends[-1])
    optimizer = build_optimizer(runs.model, params, compute.device)
    scheduler = learning_rate_schedule(optimizer, total_steps, tp.warmup, tp.decay)
    teacher = None
    if runs.settings is not None and runs.settings.mu > 0:
        sp = params.smart
        teacher = smart.EmaTeacher(runs.model,
                                   smart.teacher_beta(sp.teacher_horizon, total_steps, sp.teacher_beta_min))
    # Each task is scored on its whole dev split right before the first step that trains it
    # (``starts``: step -> the tasks that begin there), after its head is fitted (``probe_at``;
    # a head the starting checkpoint trained is kept).
    starts: dict[int, list[str]] = {}
    for task, first in probe.first_steps(plan).items():
        starts.setdefault(first, []).append(task)
    probe_at = {} if tp.head_init == "random" else probe.first_steps(plan, pretrained_heads(runs.init))

    histories = load_resume(resume_dir, runs, optimizer, scheduler, teacher) if resume_dir else None
    histories = histories or [RunHistory() for _ in runs.specs]
    done = len(histories[0].epochs)  # a resumed run has passed the starts and probes of its epochs done
    step = sum(len(epoch) for epoch in plan[:done])
    for epoch in range(done):  # the logs start afresh: give them what was logged before
        for history, log in zip(histories, logs, strict=True):
            for first, begun in sorted(starts.items()):
                if epoch_starts[epoch] <= first < epoch_ends[epoch]:
                    log.start(first, epoch, {f"dev/{task}": history.dev_start[task] for task in begun})
            log.epoch(epoch, int(epoch_ends[epoch]), history.epochs[epoch])
    log_every = log_every or max(1, total_steps // LOG_POINTS)

    for epoch in range(done, len(plan)):
        terms, started = [StepTerms() for _ in runs.specs], time.perf_counter()
        progress = Progress(f"{runs.name} epoch {epoch + 1}/{len(plan)}", len(plan[epoch]), terms[0].task_loss,
                            enabled=main_process)
        for steps in zip(*(p[epoch] for p in plans), strict=True):
            for task in (t for t, s in probe_at.items() if s == step):
                runs.fit_probe(task, train_data[task], [probe.planned_rows(p, task) for p in plans],
                               tp.eval_batch_size, teacher, probe_only.get(task))
            if step in starts:  # where training these tasks starts from
                begun = {task: dev_data[task] for task in starts[step]}
                for history, log, scores in zip(histories, logs, runs.score(begun, tp.eval_batch_size), strict=True):
                    history.dev_start.update({task: scores[task] for task in begun})
                    if main_process:
                        log.start(step, epoch, {f"dev/{task}": scores[task] for task in begun})
            optimizer.zero_grad(set_to_none=True)
            runs.gradients(list(steps), train_data, teacher, terms, diagnose=step % DIAGNOSE_EVERY == 0)
            if tp.grad_clip:
                runs.clip(tp.grad_clip)
            optimizer.step()
            scheduler.step()
            if teacher is not None:
                teacher.update(runs.model)
            step += 1
            if step % log_every == 0 and main_process:
                for log, run_terms in zip(logs, terms, strict=True):
                    log.steps(step, {f"train/{k}": v for k, v in run_terms.window_means().items()})
            progress.step(sum(len(indices) for batches in steps for indices in batches.values()))
        progress.close()

        last = epoch == len(plan) - 1
        scores = [{} for _ in runs.specs] if last else runs.score(_dev_subset(dev_data, tasks, tp.epoch_eval_rows),
                                                                  tp.eval_batch_size)
        seconds = (time.perf_counter() - started) / len(runs.specs)  # each run's share of the epoch
        for spec, history, log, run_terms, metrics in zip(runs.specs, histories, logs, terms, scores, strict=True):
            history.epochs.append({**{f"dev/{k}": v for k, v in metrics.items()},
                                   **{f"train/{k}": v for k, v in run_terms.means().items()},
                                   "train/seconds": seconds})
            if main_process:
                logger.info("%s epoch %d/%d: %s (%.0f s)", spec.name, epoch + 1, len(plan),
                            ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) or "trained", seconds)
                log.epoch(epoch, step, history.epochs[-1])
        # Not after the last epoch: the runner saves the models and removes the resume directory.
        if resume_dir and not last and main_process:
            save_resume(resume_dir, runs, histories, optimizer, scheduler, teacher)
        if stop_after_epochs is not None and epoch + 1 >= stop_after_epochs:
            break
    return Trained(runs.models(), histories)


def train(spec: RunSpec, params: Params, data: dict[str, dict[str, TaskFeatures]], compute: Compute, *,
          init: Path | None = None, resume_dir: Path | None = None, log: TrainingLog = TrainingLog(),
          stop_after_epochs: int | None = None, probe_cache: ProbeCache | None = None) -> MultitaskModel:
    """Train ``spec`` alone (:func:`train_runs` of a :class:`SingleRun`) and return its model."""
    data = run_data(spec, params, data)
    runs = SingleRun(spec, params, data["train"], compute, init, probe_cache)
    return train_runs(runs, params, data, compute, resume_dir=resume_dir, logs=[log],
                      stop_after_epochs=stop_after_epochs).models[0]


def run_data(spec: RunSpec, params: Params, data: dict[str, dict[str, TaskFeatures]]) -> dict[str, dict[str, TaskFeatures]]:
    """The data ``spec`` trains on: all of ``data``, but for Figure 3's runs (sweep.sst_train_rows),
    which train on fewer rows. Chosen before the run's plan is built, so that the plan's indices
    and the batches read the same rows."""
    if spec.train_rows is None:
        return data
    return {**data, "train": training_rows(data["train"], tasks_of(spec.schedule), spec.train_rows, params.data.seed)}


def training_rows(train_data: dict[str, TaskFeatures], tasks, rows: int | None, seed: int) -> dict[str, TaskFeatures]:
    """The training rows a run reads: ``rows`` of each task's, drawn with ``seed`` (the data's,
    not the run's: every seed of a row trains on the same rows), or all of them."""
    if rows is None:
        return train_data
    chosen = {}
    for task in tasks:
        features = train_data[task]
        keep = np.sort(np.random.default_rng(seed).permutation(len(features))[:rows])
        chosen[task] = features if rows >= len(features) else features.subset(keep)
    return {**train_data, **chosen}


def _dev_subset(dev_data: dict[str, TaskFeatures], tasks, rows: int | None) -> dict[str, TaskFeatures]:
    """The same first ``rows`` dev examples every epoch, so the curves are comparable."""
    subset = {}
    for task in tasks:
        features = dev_data[task]
        subset[task] = features if rows is None or rows >= len(features) else features.subset(np.arange(rows))
    return subset
