"""Train one model and write everything the pipeline keeps of it.

For a model ``<name>`` (see :mod:`smartmtl.variants`) it writes
- ``models/<name>/model.safetensors`` and ``models/<name>/run.json`` (the spec and parameters that made it);
- ``predictions/<name>/<task>-<split>.csv`` (``id,prediction``) for dev, and for test where the
  run may be submitted (:func:`predicts_test`);
- ``metrics/finetune/<name>.json`` (dev scores, test scores where test labels exist, training seconds);
- ``dvclive/<name>/`` (per-epoch curves).
Resume checkpoints live in ``checkpoints/<name>/`` (outside DVC's outputs, which DVC clears
before a stage runs) and are deleted once the model is complete.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dvclive import Live
from smartmtl import distributed
from smartmtl.config import Params
from smartmtl.features import load_features
from smartmtl.hardware import autocast_for, pick_device
from smartmtl.heads import save_model
from smartmtl.inference import evaluate
from smartmtl.io import atomic_path, write_json, write_predictions
from smartmtl.layout import Layout
from smartmtl.schedules import tasks_of
from smartmtl.train import train
from smartmtl.variants import PRETRAIN, RunSpec

log = logging.getLogger(__name__)


def save_run(model, spec: RunSpec, params: Params, directory: Path) -> None:
    """The weights, and the spec and parameters that made them: what `smartmtl predict` rebuilds a model from."""
    directory.mkdir()
    save_model(model, directory / "model.safetensors")
    write_json({"spec": asdict(spec), "params": params.model_dump(mode="json")}, directory / "run.json")


def predicts_test(spec: RunSpec) -> bool:
    """Only what may be submitted predicts the test split: the grid's runs, among which the
    ensemble picks its members. Every other run is judged on dev alone."""
    return spec.kind == "grid"


def run(spec: RunSpec, params: Params, layout: Layout = Layout(), stop_after_epochs: int | None = None) -> dict:
    """Train ``spec`` and write its outputs; return its metrics record."""
    tasks = tasks_of(spec.schedule)
    features = load_features(params, tasks, spec.head)
    init = layout.model_dir(PRETRAIN) / "model.safetensors" if spec.pretrained else None
    if init is not None and not init.exists():
        raise FileNotFoundError(f"{spec.name} starts from the QQP pretrain checkpoint {init}, which does not "
                                "exist: run `dvc repro pretrain` first")
    device = pick_device()
    autocast = autocast_for(device, params.train.precision)

    started = time.perf_counter()
    live = Live(dir=str(layout.live_dir(spec.name)), save_dvc_exp=False, dvcyaml=None, report=None) \
        if distributed.is_main_process() else None

    # DVCLive's step is the optimizer step: the training terms every few steps, the dev scores
    # and the epoch number (Figure 3's x axis) at each epoch's end.
    def log_at(step: int, metrics: dict[str, float]) -> None:
        live.step = step
        for key, value in metrics.items():
            live.log_metric(key, value)

    # How often surgery's task gradients conflicted, per epoch (runs with surgery log it).
    surgery_epochs: list[dict[str, float]] = []

    def log_epoch(epoch: int, step: int, metrics: dict[str, float]) -> None:
        log_at(step, {**{k: v for k, v in metrics.items() if k.startswith("dev/")}, "epoch": epoch + 1})
        if "train/surgery_conflict" in metrics:
            surgery_epochs.append({"conflict_share": metrics["train/surgery_conflict"],
                                   "mean_cosine": metrics["train/surgery_cosine"]})

    # The last epoch is scored on the whole dev set once, for its curve point and for the result.
    scored: dict[str, tuple[dict[str, float], dict[str, np.ndarray]]] = {}

    def score(model, split: str) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        if split not in scored:
            scored[split] = evaluate(model, features[split], params.train.eval_batch_size, device, autocast)
        return scored[split]

    with distributed.process_group():  # left before scoring: rank 0 scores and saves alone
        model = train(spec, params, features["train"], features["dev"], init=init,
                      resume_dir=layout.resume_dir(spec.name), on_epoch=log_epoch if live else lambda *a: None,
                      on_steps=log_at if live else lambda *a: None,
                      stop_after_epochs=stop_after_epochs, final_evaluation=lambda model: score(model, "dev")[0])
    train_seconds = time.perf_counter() - started
    if live:
        live.end()
    if stop_after_epochs is not None or not distributed.is_main_process():
        return {}

    # Scores only: what the run is lives in its RunSpec, written beside the model.
    record: dict = {}
    for split in ("dev", "test") if predicts_test(spec) else ("dev",):
        split_scores, predictions = score(model, split)
        for task in tasks:
            write_predictions(features[split][task].ids, predictions[task], task,
                              layout.predictions_file(spec.name, task, split))
        if split_scores:
            record[split] = split_scores
    if surgery_epochs:  # epochs of one run are equally long: the run's share is their mean
        record["surgery"] = {key: float(np.mean([epoch[key] for epoch in surgery_epochs]))
                             for key in surgery_epochs[0]}
    record["train_seconds"] = round(train_seconds, 1)

    with atomic_path(layout.model_dir(spec.name)) as directory:
        save_run(model.cpu(), spec, params, directory)
    write_json(record, layout.metrics_file(spec.name))
    shutil.rmtree(layout.resume_dir(spec.name), ignore_errors=True)
    log.info("%s: %s", spec.name, record.get("dev"))
    return record
