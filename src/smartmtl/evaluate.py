"""Scoring, in one place: every stage that scores predictions calls these; which metric each
task takes (accuracy, Pearson) is the task table's (:mod:`smartmtl.tasks`).

Running a model to get predictions is :mod:`smartmtl.model.inference`'s: this module imports no torch,
so the stages that score saved predictions (ensemble, analyze) never load the model's code."""

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
