"""Scoring, in one place: every stage that scores predictions calls these; which metric each
task takes (accuracy, Pearson) is the task table's (:mod:`smartmtl.tasks`).

Only :func:`predict` runs a model: it imports torch and the features (transformers) itself, so
that the stages scoring saved predictions (ensemble, analyze) start ~3 s sooner."""

from __future__ import annotations

import math

import numpy as np

from smartmtl.tasks import TASKS


def overall_score(sst: float, qqp: float, sts: float) -> float:
    """The leaderboard's overall score: STS Pearson is mapped from [-1, 1] to [0, 1]."""
    return (sst + qqp + (sts + 1) / 2) / 3


def task_metric(task: str, predictions: np.ndarray, gold: np.ndarray) -> float:
    """SST and QQP accuracy, STS Pearson correlation."""
    predictions, gold = np.asarray(predictions), np.asarray(gold)
    if predictions.shape != gold.shape:
        raise ValueError(f"{task}: {len(predictions)} predictions for {len(gold)} labels")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    return TASKS[task].metric(predictions, gold)


def scores(metrics_by_task: dict[str, float]) -> dict[str, float]:
    """Add ``overall`` when all three tasks were scored."""
    result = dict(metrics_by_task)
    if all(task in result and not math.isnan(result[task]) for task in TASKS):
        result["overall"] = overall_score(result["sst"], result["qqp"], result["sts"])
    return result


def predict(model, features, task: str, batch_size: int, device, autocast) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for every row of ``features`` in its own order, and the raw outputs."""
    import torch

    from smartmtl.features import sorted_batches

    was_training = model.training
    model.eval()
    outputs = torch.empty(TASKS[task].output_shape(len(features)))
    with torch.no_grad(), autocast():
        for indices in sorted_batches(features.lengths, batch_size):
            segments, _ = features.batch(indices, device)
            outputs[torch.as_tensor(indices)] = model(task, segments).float().cpu()
    model.train(was_training)
    return TASKS[task].to_predictions(outputs).numpy(), outputs.numpy()


def evaluate(model, features_by_task: dict, batch_size: int, device, autocast) -> tuple[dict[str, float], dict]:
    """Score each labelled task; return the scores and each task's predictions."""
    metrics, predictions = {}, {}
    for task, features in features_by_task.items():
        predictions[task], _ = predict(model, features, task, batch_size, device, autocast)
        if features.labels is not None:
            metrics[task] = task_metric(task, predictions[task], features.labels.numpy())
    return scores(metrics), predictions
