"""Train one model and write everything the pipeline keeps of it.

For a model ``<name>`` (see :mod:`smartmtl.variants`) it writes
- ``models/<name>/model.safetensors`` and ``models/<name>/run.json`` (the spec and parameters that made it);
- ``predictions/<name>/<task>-<split>.csv`` (``id,prediction``) for dev, and for test where the
  run may be submitted (:func:`predicts_test`);
- ``metrics/finetune/<name>.json`` (dev scores, test scores where test labels exist, training seconds);
- ``dvclive/<name>/`` (per-epoch curves).
Resume checkpoints live in ``checkpoints/<name>/`` (outside DVC's outputs, which DVC clears
before a stage runs) and are deleted once the model is complete.
:func:`smartmtl.fused.group.run_group` trains several seeds of one configuration as one fused model
(a GPU's way) and writes the same outputs for each, through :func:`score_and_save`.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dvclive import Live
from smartmtl.config import Params
from smartmtl.evaluate import scores
from smartmtl.io import atomic_path, write_json, write_predictions
from smartmtl.layout import Layout
from smartmtl.model.features import load_features
from smartmtl.model.heads import save_model
from smartmtl.model.inference import evaluate
from smartmtl.train import distributed
from smartmtl.train.hardware import resolve_compute
from smartmtl.train.loop import RunHistory, SingleRun, TrainingLog, run_data, train_runs
from smartmtl.train.probecache import ProbeCache
from smartmtl.train.schedules import tasks_of
from smartmtl.variants import PRETRAIN, RunSpec

log = logging.getLogger(__name__)


def save_run(model, spec: RunSpec, params: Params, directory: Path) -> None:
    """The weights, and the spec and parameters that made them: what `smartmtl predict` rebuilds a model from."""
    directory.mkdir()
    save_model(model, directory / "model.safetensors")
    write_json({"spec": asdict(spec), "params": params.model_dump(mode="json")}, directory / "run.json")


class LiveLog(TrainingLog):
    """The loop's reports in DVCLive, whose step is the optimizer step: the training terms every
    few steps; each task's dev score where its training starts and the dev scores at each
    epoch's end, with the epochs completed (Figure 3's x axis: 0 at the start); the last
    epoch's dev scores from the runner's own scoring of the whole dev set."""

    def __init__(self, directory: Path):
        self.live = Live(dir=str(directory), save_dvc_exp=False, dvcyaml=None, report=None)
        self.last_step = 0

    def steps(self, step: int, terms: dict[str, float]) -> None:
        self.live.step = step
        for key, value in terms.items():
            self.live.log_metric(key, value)

    def start(self, step: int, epoch: int, scores: dict[str, float]) -> None:
        self.steps(step, {**scores, "epoch": epoch})

    def epoch(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.steps(step, {**{k: v for k, v in metrics.items() if k.startswith("dev/")}, "epoch": epoch + 1})
        self.last_step = step

    def end(self, dev_scores: dict[str, float] | None = None) -> None:
        if dev_scores:
            self.steps(self.last_step, {f"dev/{k}": v for k, v in dev_scores.items()})
        self.live.end()


def predicts_test(spec: RunSpec) -> bool:
    """Only what may be submitted predicts the test split: the grid's runs, among which the
    ensemble picks its members. Every other run is judged on dev alone."""
    return spec.kind == "grid"


def pretrained_init(spec: RunSpec, layout: Layout) -> Path | None:
    init = layout.model_dir(PRETRAIN) / "model.safetensors" if spec.pretrained else None
    if init is not None and not init.exists():
        raise FileNotFoundError(f"{spec.name} starts from the QQP pretrain checkpoint {init}, which does not "
                                "exist: run `dvc repro pretrain` first")
    return init


def run(spec: RunSpec, params: Params, layout: Layout = Layout(), stop_after_epochs: int | None = None) -> dict:
    """Train ``spec`` and write its outputs; return its metrics record."""
    features = run_data(spec, params, load_features(params, tasks_of(spec.schedule), spec.head))
    init = pretrained_init(spec, layout)
    compute = resolve_compute(params.train.precision, params.train.device)
    started = time.perf_counter()
    run_log = LiveLog(layout.live_dir(spec.name)) if distributed.is_main_process() else TrainingLog()
    with distributed.process_group():  # left before scoring: rank 0 scores and saves alone
        runs = SingleRun(spec, params, features["train"], compute, init, ProbeCache(layout.probe_cache))
        trained = train_runs(runs, params, features, compute, resume_dir=layout.resume_dir(spec.name),
                             logs=[run_log], stop_after_epochs=stop_after_epochs)
    train_seconds = time.perf_counter() - started
    if stop_after_epochs is not None or not distributed.is_main_process():
        run_log.end()
        return {}
    return score_and_save(spec, params, layout, trained.models[0], trained.histories[0], features, compute, run_log,
                          {"train_seconds": round(train_seconds, 1)})


def score_and_save(spec: RunSpec, params: Params, layout: Layout, model, history: RunHistory, features, compute,
                   run_log: TrainingLog, timing: dict) -> dict:
    """Score the trained model on dev (and test where it may be submitted), and write its
    predictions, metrics (with where training started, ``dev_start``, and surgery's statistics
    from the loop's ``history``), DVCLive folder and model; return its metrics record."""
    tasks = tasks_of(spec.schedule)
    # Scores only: what the run is lives in its RunSpec, written beside the model.
    record: dict = {}
    for split in ("dev", "test") if predicts_test(spec) else ("dev",):
        split_scores, predictions = evaluate(model, features[split], params.train.eval_batch_size, compute.device,
                                             compute.autocast)
        for task in tasks:
            write_predictions(features[split][task].ids, predictions[task], task,
                              layout.predictions_file(spec.name, task, split))
        if split_scores:
            record[split] = split_scores
    run_log.end(record["dev"])
    # Each task's score right before its first step. A sequential run takes them at different
    # steps (a task's turn begins after the tasks before it), so its overall mixes those moments.
    record["dev_start"] = scores(history.dev_start)  # overall where the run trains all three tasks
    surgery = [epoch for epoch in history.epochs if "train/surgery_conflict" in epoch]
    if surgery:  # epochs of one run are equally long: the run's share is their mean
        record["surgery"] = {"conflict_share": float(np.mean([epoch["train/surgery_conflict"] for epoch in surgery])),
                             "mean_cosine": float(np.mean([epoch["train/surgery_cosine"] for epoch in surgery]))}
    record.update(timing)

    with atomic_path(layout.model_dir(spec.name)) as directory:
        save_run(model.cpu(), spec, params, directory)
    write_json(record, layout.metrics_file(spec.name))
    shutil.rmtree(layout.resume_dir(spec.name), ignore_errors=True)
    log.info("%s: %s", spec.name, record.get("dev"))
    return record
