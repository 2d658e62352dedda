"""Train one model and write everything the pipeline keeps of it.

For a model ``<name>`` (see :mod:`smartmtl.variants`) it writes
- ``models/<name>/model.safetensors`` and ``models/<name>/run.json`` (the spec and parameters that made it);
- ``predictions/<name>/<task>-<split>.csv`` (``id,prediction``) for dev and test;
- ``metrics/finetune/<name>.json`` (dev metrics, test metrics where test labels exist);
- ``dvclive/<name>/`` (per-epoch curves).
Resume checkpoints live in ``checkpoints/<name>/`` (outside DVC's outputs, which DVC clears
before a stage runs) and are deleted once the model is complete.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from dvclive import Live
from smartmtl import distributed
from smartmtl.config import Params
from smartmtl.evaluate import predict, scores, task_metric
from smartmtl.features import TaskFeatures, load_features
from smartmtl.hardware import autocast_for, pick_device
from smartmtl.io import atomic_path, write_json
from smartmtl.schedules import tasks_of
from smartmtl.train import save_model, train
from smartmtl.variants import PRETRAIN, RunSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where a run's outputs go; tests point it at a temporary directory."""

    root: Path = Path(".")

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def predictions_dir(self, name: str) -> Path:
        return self.root / "predictions" / name

    def metrics_file(self, name: str) -> Path:
        return self.root / "metrics" / "finetune" / f"{name}.json"

    def live_dir(self, name: str) -> Path:
        return self.root / "dvclive" / name

    def resume_dir(self, name: str) -> Path:
        return self.root / "checkpoints" / name


def write_predictions(directory: Path, task: str, split: str, features: TaskFeatures, predictions) -> None:
    with atomic_path(directory / f"{task}-{split}.csv") as path:
        pd.DataFrame({"id": features.ids, "prediction": predictions}).to_csv(path, index=False)


def run(spec: RunSpec, params: Params, layout: Layout = Layout(), stop_after_epochs: int | None = None) -> dict:
    """Train ``spec`` and write its outputs; return its metrics record."""
    tasks = tasks_of(spec.schedule)
    features = load_features(params, tasks, spec.head)
    init = layout.model_dir(PRETRAIN) / "model.safetensors" if spec.pretrained else None
    if init is not None and not init.exists():
        raise FileNotFoundError(f"{spec.name} starts from the QQP pretrain checkpoint {init}, which does not "
                                "exist: run `dvc repro pretrain` first")

    started = time.perf_counter()
    live = Live(dir=str(layout.live_dir(spec.name)), save_dvc_exp=False, dvcyaml=None, report=None) \
        if distributed.is_main_process() else None

    def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            live.log_metric(key, value)
        live.next_step()

    model = train(spec, params, features["train"], features["dev"], init=init,
                  resume_dir=layout.resume_dir(spec.name), on_epoch=log_epoch if live else lambda *a: None,
                  stop_after_epochs=stop_after_epochs)
    train_seconds = time.perf_counter() - started
    distributed.stop()  # rank 0 scores and saves alone
    if live:
        live.end()
    if stop_after_epochs is not None or not distributed.is_main_process():
        return {}

    device = pick_device()
    autocast = autocast_for(device, params.train.precision)
    record = {"name": spec.name, "kind": spec.kind, "label": spec.label, "config": spec.config()}
    for split in ("dev", "test"):
        split_scores = {}
        for task in tasks:
            task_features = features[split][task]
            predictions, _ = predict(model, task_features, task, params.train.eval_batch_size, device, autocast)
            write_predictions(layout.predictions_dir(spec.name), task, split, task_features, predictions)
            if task_features.labels is not None:
                split_scores[task] = task_metric(task, predictions, task_features.labels.numpy())
        if split_scores:
            record[split] = scores(split_scores)
    record["train_seconds"] = round(train_seconds, 1)

    with atomic_path(layout.model_dir(spec.name)) as directory:
        directory.mkdir()
        save_model(model.cpu(), directory / "model.safetensors")
        write_json({"spec": asdict(spec), "params": params.model_dump(mode="json")}, directory / "run.json")
    write_json(record, layout.metrics_file(spec.name))
    shutil.rmtree(layout.resume_dir(spec.name), ignore_errors=True)
    log.info("%s: %s", spec.name, record.get("dev"))
    return record
