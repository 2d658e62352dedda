"""Linear probing before fine-tuning (LP-FT, Kumar et al., ICLR 2022): a task's head starts
as the linear model fitted on the frozen encoder's features, not from random weights.

Why: in a short run a random head spends its first steps pushing large, arbitrary
gradients into the encoder, and the run ends before the head is any good. Measured on the
laptop preset (docs/results.md): a logistic regression on the frozen backbone's features of
the SST rows already scores above the three-task fine-tuned rows. The fit is scikit-learn's
L2-regularised logistic (class heads) or ridge (score heads) regression, on
the rows the run will train the task on and, where ``data.probe_limit`` prepared them, further
training rows that no step trains on: a forward each, so that the head of a short run starts
from more rows than the run trains on, which scored higher (docs/results.md, "The probe on
2,000 rows"). Its L2 strength is chosen by cross-validation on those rows (REGULARISATION).

A head is fitted when its task's training begins: at the first step for simultaneous runs,
at the start of its phase for sequential ones (the encoder has moved by then). A head the run's
starting checkpoint already trained is not refitted: a +Pretrain run's QQP head starts as the
QQP pretraining left it, trained on all its pairs, not as a probe of the few the run sees:
kept, it scored higher on QQP dev (docs/results.md, "The QQP pretraining's head kept").

Runs that start from one checkpoint and train a task on the same rows fit the same probe: the
rows are read in index order, whatever the seed's, and the runner keeps each fit for the next run
that would repeat it (:mod:`smartmtl.train.probecache`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from threadpoolctl import threadpool_limits

from smartmtl.model.features import TaskFeatures, sorted_batches
from smartmtl.tasks import TASKS, to_unit
from smartmtl.train.probecache import ProbeCache, probe_key
from smartmtl.train.schedules import Plan

logger = logging.getLogger(__name__)

# Of the rows a run trains a task on, the probe fits at most this many (the QQP pretraining's
# 8,000): each costs a forward; more rows come from data.probe_limit, a choice of the preset.
PROBE_MAX_ROWS = 1024
# The probe's L2 strength (ridge's alpha; 1 / C for the logistic fit) is chosen by
# cross-validation on the rows it fits, over this grid: at scikit-learn's defaults (alpha = C = 1)
# the probe all but interpolates a short run's rows, its task's loss starts near zero, and the
# encoder learns that task less (docs/results.md, "Heads that start as a linear probe").
REGULARISATION = np.logspace(-4, 4, 17)
# The logistic fits stop at 1: weaker penalties were never chosen on the backbone's features,
# and their nearly unregularised fits took most of the time, for the same C in the end
# (docs/results.md, "The probe on 2,000 rows").
LOGISTIC_REGULARISATION = REGULARISATION[REGULARISATION >= 1]
FOLDS = 5


def first_steps(plan: Plan, trained: Iterable[str] = ()) -> dict[str, int]:
    """The global step index at which each task's training begins, for the tasks whose heads
    are to be fitted: all but those in ``trained``, the heads the starting checkpoint trained."""
    first: dict[str, int] = {}
    for step, batches in enumerate(b for epoch in plan for b in epoch):
        for task in batches:
            first.setdefault(task, step)
    return {task: step for task, step in first.items() if task not in trained}


def planned_rows(plan: Plan, task: str) -> np.ndarray:
    """The rows the plan trains ``task`` on, the first PROBE_MAX_ROWS to appear, in index order.

    In index order, not the plan's: the order sets the probe's cross-validation folds, and runs
    that train the same rows in their own seeds' orders then fit the same probe, which
    :mod:`smartmtl.train.probecache` fits once for all of them."""
    seen = [batches[task] for epoch in plan for batches in epoch if task in batches]
    if not seen:
        return np.array([], dtype=np.int64)
    rows = np.concatenate(seen)
    _, first = np.unique(rows, return_index=True)
    return np.sort(rows[np.sort(first)][:PROBE_MAX_ROWS])


@torch.no_grad()
def head_inputs(model, task: str, features: TaskFeatures, rows: np.ndarray, batch_size: int, device,
                autocast) -> np.ndarray:
    """What ``model.heads[task]`` receives for ``rows``, the model in eval mode (no dropout)."""
    captured = {}
    hook = model.heads[task].register_forward_pre_hook(lambda _, args: captured.__setitem__("x", args[0]))
    was_training = model.training
    model.eval()
    inputs = np.zeros((len(rows), model.heads[task].in_features), dtype=np.float64)
    try:
        with autocast():
            for batch in sorted_batches(features.lengths[rows], batch_size):
                segments, _ = features.batch(rows[batch], device)
                model(task, segments)
                inputs[batch] = captured["x"].float().cpu().numpy()
    finally:
        hook.remove()
        model.train(was_training)
    return inputs


def fit_linear(task: str, inputs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The head's weight [outputs, features] and bias [outputs]; None where the rows cannot
    choose one (a class task with a class of fewer than two rows)."""
    spec = TASKS[task]
    if not spec.has_classes:  # leave-one-out over the grid: exact and instant for ridge
        ridge = RidgeCV(alphas=REGULARISATION).fit(inputs, to_unit(labels.astype(np.float64), spec.score_range))
        return ridge.coef_[None, :], np.atleast_1d(ridge.intercept_)
    present, counts = np.unique(labels, return_counts=True)
    folds = min(FOLDS, counts.min())
    if len(present) < 2 or folds < 2:
        return None
    # Solved tightly: a loose stop makes the fit jump with the features' last digits.
    # One BLAS thread: numpy and scipy each bring their own OpenBLAS pool, and on few cores the two
    # pools' threads contend at every L-BFGS step of these small products, which made the fit many
    # times slower (docs/results.md, "The probe at twice the rows"; bench/probe_fit.py).
    with threadpool_limits(limits=1, user_api="blas"):
        fitted = LogisticRegressionCV(Cs=1 / LOGISTIC_REGULARISATION, cv=folds, scoring="neg_log_loss", tol=1e-8,
                                      l1_ratios=(0.0,), max_iter=10_000, use_legacy_attributes=False).fit(inputs, labels)
    if spec.outputs == 1:  # one logit for the positive class, as binary_cross_entropy reads it
        return fitted.coef_, fitted.intercept_
    weight = np.zeros((spec.outputs, inputs.shape[1]))
    # A class the rows never show keeps a zero weight and the lowest fitted bias.
    bias = np.full(spec.outputs, fitted.intercept_.min())
    weight[present], bias[present] = fitted.coef_, fitted.intercept_
    return weight, bias


@torch.no_grad()
def fitted_head(model, task: str, features: TaskFeatures, rows: np.ndarray, batch_size: int, device,
                autocast, extra: TaskFeatures | None = None,
                cache: ProbeCache | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The weight and bias of the probe for ``model.heads[task]`` fitted on ``rows`` and all of
    ``extra`` (rows only the probe reads), in the head's dtype; None where the head keeps its
    weights. With a ``cache``, a probe an earlier run fitted on the same inputs is reused."""
    if task not in model.heads:  # the cosine head scores STS with no layer to fit
        return None
    if cache is not None:
        key = probe_key(model, task, features, rows, extra, batch_size, device, autocast)
        reused = cache.load(key)
        if reused is not None:
            return reused
        fitted = fitted_head(model, task, features, rows, batch_size, device, autocast, extra)
        if fitted is not None:
            cache.store(key, fitted)
        return fitted
    inputs = head_inputs(model, task, features, rows, batch_size, device, autocast)
    labels = features.labels[rows].numpy()
    if extra is not None:
        inputs = np.concatenate([inputs, head_inputs(model, task, extra, np.arange(len(extra)), batch_size, device,
                                                     autocast)])
        labels = np.concatenate([labels, extra.labels.numpy()])
    fitted = fit_linear(task, inputs, labels)
    if fitted is None:
        logger.warning("%s: a class has fewer than 2 of its %d rows, too few to choose the probe's L2 "
                       "strength: its head keeps its random start", task, len(labels))
        return None
    head = model.heads[task]
    return (torch.as_tensor(fitted[0], dtype=head.weight.dtype), torch.as_tensor(fitted[1], dtype=head.bias.dtype))


@torch.no_grad()
def fit_head(model, task: str, features: TaskFeatures, rows: np.ndarray, batch_size: int, device,
             autocast, extra: TaskFeatures | None = None, cache: ProbeCache | None = None) -> bool:
    """Set ``model.heads[task]`` to :func:`fitted_head`'s probe; False where it kept its weights."""
    fitted = fitted_head(model, task, features, rows, batch_size, device, autocast, extra, cache)
    if fitted is None:
        return False
    model.heads[task].weight.copy_(fitted[0])
    model.heads[task].bias.copy_(fitted[1])
    return True
