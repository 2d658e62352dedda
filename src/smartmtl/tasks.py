"""The three tasks, one record each: what a task's data holds, what its head outputs, and how
its output is trained, perturbed, read as a prediction, scored and ensembled.

Every module that treats the tasks differently looks the difference up in :data:`TASKS`, so
that a fact about a task (SST has five classes, STS is scored by Pearson) is written once.
The functions below are the building blocks the records choose from; they work on any
task whose output is of their kind (logits over classes, one logit, or one score).

torch is imported only inside the functions that need it: the stages that read this table
without touching a tensor (prepare, ensemble, analyze) would otherwise pay for importing it
(docs/speed.md, "Start-up and the smoke pipeline").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import Tensor

Divergence = Callable[["Tensor", "Tensor"], "Tensor"]


# --------------------------------------------------------------------------------- losses
# The paper's per-task objectives. Outputs are cast to float32 first: under bf16 autocast the
# head's output is bf16, and the losses are then reduced over the batch in full precision.
def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), labels.long())


def binary_cross_entropy(logit: Tensor, labels: Tensor) -> Tensor:
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logit.float(), labels.float())


# A score head is trained on its range mapped onto [-1, 1]: on STS's 0-5 scale the squared
# error of a freshly initialised head (output near 0) is the labels' mean square, an order of
# magnitude above the other tasks' losses, and it swamped them in the summed, clipped gradient.
# On [-1, 1] it starts below them, the cosine head's similarity is such a score as it is, and
# SMART's squared-error divergence is on the same scale as a class head's.
def to_unit(scores, score_range: tuple[float, float]):
    low, high = score_range
    return (scores - (low + high) / 2) / ((high - low) / 2)


def from_unit(unit, score_range: tuple[float, float]):
    low, high = score_range
    return (low + high) / 2 + unit * ((high - low) / 2)


def unit_squared_error(unit_score: Tensor, labels: Tensor, score_range: tuple[float, float]) -> Tensor:
    """Mean squared error between a head's [-1, 1] output and the labels mapped onto [-1, 1]."""
    import torch.nn.functional as F

    return F.mse_loss(unit_score.float(), to_unit(labels.float(), score_range))


# ---------------------------------------------------------------------------- divergences
# SMART's l_s (smartmtl.train.smart): how far apart two outputs of the same model are.
def _per_example_mean(values: Tensor) -> Tensor:
    """Sum over all but the batch dimension, then mean over the batch."""
    if values.dim() == 0:
        return values
    return values.reshape(values.shape[0], -1).sum(dim=1).mean()


def symmetric_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """KL(P||Q) + KL(Q||P) of two softmax distributions over the last dim; batch mean.

    Equals sum_c (p_c - q_c)(log p_c - log q_c). Computed in float32.
    """
    log_p = logits_p.float().log_softmax(dim=-1)
    log_q = logits_q.float().log_softmax(dim=-1)
    per_example = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=-1)
    return _per_example_mean(per_example)


def symmetric_bernoulli_kl(logit_p: Tensor, logit_q: Tensor) -> Tensor:
    """Symmetric KL of two Bernoulli distributions given by single logits (shape [B]); batch mean.

    KL(P||Q) + KL(Q||P) = (p - q)(log p/(1-p) - log q/(1-q)) = (sigmoid(a) - sigmoid(b))(a - b).
    Computed in float32.
    """
    a, b = logit_p.float(), logit_q.float()
    return _per_example_mean((a.sigmoid() - b.sigmoid()) * (a - b))


def squared_error(pred_p: Tensor, pred_q: Tensor) -> Tensor:
    """Squared difference of two regression outputs (shape [B]); batch mean. Float32."""
    return _per_example_mean((pred_p.float() - pred_q.float()) ** 2)


# ---------------------------------------------------------------------------- predictions
def most_likely_class(logits: Tensor) -> Tensor:
    return logits.argmax(-1)


def positive_logit(logit: Tensor) -> Tensor:
    """1 where the probability is above one half, else 0."""
    return (logit > 0).long()


def score_in_range(unit_score: Tensor, score_range: tuple[float, float]) -> Tensor:
    """A head's [-1, 1] output as a score on the labels' range."""
    return from_unit(unit_score.float(), score_range)


# -------------------------------------------------------------------------------- metrics
def accuracy(predictions: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(predictions.astype(np.int64) == gold.astype(np.int64)))


def pearson(predictions: np.ndarray, gold: np.ndarray) -> float:
    if np.std(predictions) == 0:  # Pearson is undefined for a constant prediction
        return 0.0
    # numpy rather than scipy.stats: importing scipy.stats costs every training stage a second.
    return float(np.corrcoef(predictions.astype(np.float64), gold.astype(np.float64))[0, 1])


# ---------------------------------------------------------------- ensembles (Table 4)
def vote(stacked: np.ndarray) -> np.ndarray:
    """Mode per column of ``stacked`` (members x examples, rows best first).

    Ties: among the classes sharing the top count, the class of the highest-ranked member
    (lowest row) that voted for one of them.
    """
    stacked = np.asarray(stacked).astype(np.int64)
    classes = np.unique(stacked)
    counts = np.stack([(stacked == value).sum(axis=0) for value in classes])  # classes x examples
    top = counts.max(axis=0)
    count_of_vote = counts[np.searchsorted(classes, stacked), np.arange(stacked.shape[1])]
    in_tie = count_of_vote == top  # members x examples: this member voted for a top class
    first = in_tie.argmax(axis=0)  # highest-ranked such member
    return stacked[first, np.arange(stacked.shape[1])]


def median(stacked: np.ndarray) -> np.ndarray:
    """Median per column; for an even number of members, the mean of the two middle scores."""
    return np.median(np.asarray(stacked, dtype=np.float64), axis=0)


# ---------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Task:
    name: str
    title: str  # the paper's name for the task (Table 1)
    dataset: str
    text_columns: tuple[str, ...]  # of a prepared split, in the order the model reads them
    # Labels are either classes, label i naming classes[i], or a score in score_range.
    classes: tuple[str, ...] | None
    score_range: tuple[float, float] | None
    outputs: int  # the head's output width: logits per class, or one logit, or one score
    loss: Callable[[Tensor, Tensor], Tensor]  # (output, labels) -> the training loss
    divergence: Divergence  # SMART's distance between two outputs
    to_predictions: Callable[[Tensor], Tensor]  # output -> labels or scores
    metric: Callable[[np.ndarray, np.ndarray], float]  # (predictions, gold) -> the paper's score
    combine: Callable[[np.ndarray], np.ndarray]  # members x examples -> the ensemble's predictions

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def has_classes(self) -> bool:
        return self.classes is not None

    @property
    def label_dtype(self) -> str:
        """The prepared label column's dtype (pandas/numpy name)."""
        return "int64" if self.has_classes else "float64"

    @property
    def label_tensor_dtype(self) -> torch.dtype:
        """The labels' dtype in a training batch: class indices, or float32 scores like the output."""
        import torch

        return torch.long if self.has_classes else torch.float32

    def output_shape(self, rows: int) -> tuple[int, ...]:
        """The head's output for ``rows`` examples: [rows, outputs], a single output squeezed to [rows]."""
        return (rows, self.outputs) if self.outputs > 1 else (rows,)


SST = Task(
    name="sst", title="Sentiment Analysis", dataset="SST", text_columns=("sentence",),
    classes=("negative", "somewhat negative", "neutral", "somewhat positive", "positive"), score_range=None,
    outputs=5, loss=cross_entropy, divergence=symmetric_kl, to_predictions=most_likely_class,
    metric=accuracy, combine=vote,
)
QQP = Task(
    name="qqp", title="Paraphrase Detection", dataset="QQP", text_columns=("sentence1", "sentence2"),
    classes=("not duplicate", "duplicate"), score_range=None,
    outputs=1, loss=binary_cross_entropy, divergence=symmetric_bernoulli_kl, to_predictions=positive_logit,
    metric=accuracy, combine=vote,
)
STS_RANGE = (0.0, 5.0)
STS = Task(
    name="sts", title="Semantic Textual Similarity", dataset="STS", text_columns=("sentence1", "sentence2"),
    classes=None, score_range=STS_RANGE, outputs=1,
    loss=partial(unit_squared_error, score_range=STS_RANGE), divergence=squared_error,
    to_predictions=partial(score_in_range, score_range=STS_RANGE), metric=pearson, combine=median,
)

# This order fixes the order of every per-task loop, file and table.
TASKS: dict[str, Task] = {task.name: task for task in (SST, QQP, STS)}


def task_loss(task: str, output: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy (SST), binary cross-entropy on one logit (QQP), MSE on [-1, 1] (STS)."""
    return TASKS[task].loss(output, labels)


def combine(task: str, stacked: np.ndarray) -> np.ndarray:
    """The ensemble's predictions from its members' (members x examples, best first): the mode with
    the rank tie rule for classes, the median for scores."""
    return TASKS[task].combine(stacked)
