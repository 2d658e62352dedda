"""Running a model over a tokenised split: its predictions, and its scores where the split has labels.

The metrics themselves live in :mod:`smartmtl.evaluate`, which imports no torch, so that the
stages scoring saved predictions (ensemble, analyze) depend on neither the model nor the features.
"""

from __future__ import annotations

import numpy as np
import torch

from smartmtl.evaluate import scores, task_metric
from smartmtl.model.features import TaskFeatures, sorted_batches
from smartmtl.tasks import TASKS


def predict(model, features: TaskFeatures, task: str, batch_size: int, device,
            autocast) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for every row of ``features`` in its own order, and the raw outputs."""
    was_training = model.training
    model.eval()
    outputs = torch.empty(TASKS[task].output_shape(len(features)))
    with torch.no_grad(), autocast():
        for indices in sorted_batches(features.lengths, batch_size):
            segments, _ = features.batch(indices, device)
            outputs[torch.as_tensor(indices)] = model(task, segments).float().cpu()
    model.train(was_training)
    return TASKS[task].to_predictions(outputs).numpy(), outputs.numpy()


def evaluate(model, features_by_task: dict[str, TaskFeatures], batch_size: int, device,
             autocast) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Score each labelled task; return the scores and each task's predictions."""
    metrics, predictions = {}, {}
    for task, features in features_by_task.items():
        predictions[task], _ = predict(model, features, task, batch_size, device, autocast)
        if features.labels is not None:
            metrics[task] = task_metric(task, predictions[task], features.labels.numpy())
    return scores(metrics), predictions
