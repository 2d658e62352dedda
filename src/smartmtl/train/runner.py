"""Train one model and write everything the pipeline keeps of it.

For a model ``<name>`` (see :mod:`smartmtl.variants`) it writes
- ``models/<name>/model.safetensors`` and ``models/<name>/run.json`` (the spec and parameters that made it);
- ``predictions/<name>/<task>-<split>.csv`` (``id,prediction``) for dev, and for test where the
  run may be submitted (:func:`predicts_test`);
- ``metrics/finetune/<name>.json`` (dev scores, test scores where test labels exist, training seconds);
- ``dvclive/<name>/`` (per-epoch curves).
Resume checkpoints live in ``checkpoints/<name>/`` (outside DVC's outputs, which DVC clears
before a stage runs) and are deleted once the model is complete.
:func:`smartmtl.fused.run_group` trains several seeds of one configuration as one fused model
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
from smartmtl.io import atomic_path, write_json, write_predictions
from smartmtl.layout import Layout
from smartmtl.model.features import load_features
from smartmtl.model.heads import save_model
from smartmtl.model.inference import evaluate
from smartmtl.train import distributed
from smartmtl.train.hardware import resolve_compute
from smartmtl.train.loop import TrainingLog, train
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
    few steps, the dev scores and the epoch number (Figure 3's x axis) at each epoch's end, the
    last epoch's dev scores from the runner's own scoring of the whole dev set. It also keeps
    how often surgery's task gradients conflicted, per epoch (runs with surgery log it)."""

    def __init__(self, directory: Path):
        self.live = Live(dir=str(directory), save_dvc_exp=False, dvcyaml=None, report=None)
        self.surgery: list[dict[str, float]] = []
        self.last_step = 0

    def steps(self, step: int, terms: dict[str, float]) -> None:
        self.live.step = step
        for key, value in terms.items():
            self.live.log_metric(key, value)

    def epoch(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.steps(step, {**{k: v for k, v in metrics.items() if k.startswith("dev/")}, "epoch": epoch + 1})
        self.last_step = step
        if "train/surgery_conflict" in metrics:
            self.surgery.append({"conflict_share": metrics["train/surgery_conflict"],
                                 "mean_cosine": metrics["train/surgery_cosine"]})

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
    features = load_features(params, tasks_of(spec.schedule), spec.head)
    init = pretrained_init(spec, layout)
    compute = resolve_compute(params.train.precision, params.train.device)
    started = time.perf_counter()
    run_log = LiveLog(layout.live_dir(spec.name)) if distributed.is_main_process() else TrainingLog()
    with distributed.process_group():  # left before scoring: rank 0 scores and saves alone
        model = train(spec, params, features, compute, init=init, resume_dir=layout.resume_dir(spec.name),
                      log=run_log, stop_after_epochs=stop_after_epochs)
    train_seconds = time.perf_counter() - started
    if stop_after_epochs is not None or not distributed.is_main_process():
        run_log.end()
        return {}
    return score_and_save(spec, params, layout, model, features, compute, run_log, {"train_seconds": round(train_seconds, 1)})


def score_and_save(spec: RunSpec, params: Params, layout: Layout, model, features, compute, run_log: LiveLog,
                    timing: dict) -> dict:
    """Score the trained model on dev (and test where it may be submitted), and write its
    predictions, metrics, DVCLive folder and model; return its metrics record."""
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
    if run_log.surgery:  # epochs of one run are equally long: the run's share is their mean
        record["surgery"] = {key: float(np.mean([epoch[key] for epoch in run_log.surgery]))
                             for key in run_log.surgery[0]}
    record.update(timing)

    with atomic_path(layout.model_dir(spec.name)) as directory:
        save_run(model.cpu(), spec, params, directory)
    write_json(record, layout.metrics_file(spec.name))
    shutil.rmtree(layout.resume_dir(spec.name), ignore_errors=True)
    log.info("%s: %s", spec.name, record.get("dev"))
    return record
