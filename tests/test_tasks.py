"""The task table: complete, consistent, and deciding what the per-task branches decided before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from smartmtl.io import write_predictions
from smartmtl.tasks import TASKS, Task

ROWS = 6


def _outputs(task: Task, seed: int = 0) -> torch.Tensor:
    return torch.randn(task.output_shape(ROWS), generator=torch.Generator().manual_seed(seed))


def _labels(task: Task) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    if task.has_classes:
        return torch.randint(0, len(task.classes), (ROWS,), generator=generator).to(task.label_tensor_dtype)
    low, high = task.score_range
    return (low + (high - low) * torch.rand(ROWS, generator=generator)).to(task.label_tensor_dtype)


def test_the_table_lists_the_configured_tasks_in_their_order():
    # Loops over TASKS fix the order of files, tables and the models' heads.
    assert tuple(TASKS) == ("sst", "qqp", "sts")
    assert all(task.name == name for name, task in TASKS.items())


@pytest.mark.parametrize("task", TASKS.values(), ids=list(TASKS))
def test_every_field_is_filled_and_consistent(task):
    for field in dataclasses.fields(Task):
        if field.name not in ("classes", "score_range"):
            assert getattr(task, field.name) is not None, field.name
    assert len(task.text_columns) in (1, 2)
    # Labels are classes or a score range, never both.
    assert (task.classes is None) != (task.score_range is None)
    if task.has_classes:
        # Logits per class, or one logit for two classes.
        assert task.outputs == len(task.classes) or (task.outputs == 1 and len(task.classes) == 2)
    else:
        assert task.outputs == 1 and task.score_range[0] < task.score_range[1]


@pytest.mark.parametrize("task", TASKS.values(), ids=list(TASKS))
def test_output_flows_through_loss_divergence_prediction_metric_and_combination(task):
    output, labels = _outputs(task), _labels(task)
    loss = task.loss(output.bfloat16(), labels)
    assert loss.dim() == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert task.divergence(output, output).item() == pytest.approx(0.0, abs=1e-7)
    assert task.divergence(output, _outputs(task, seed=2)).item() > 0
    predictions = task.to_predictions(output)
    assert predictions.shape == (ROWS,)
    if task.has_classes:
        assert predictions.dtype == torch.long and set(predictions.tolist()) <= set(range(len(task.classes)))
    # Perfect predictions score 1; identical members leave their predictions unchanged.
    gold = predictions.numpy()
    assert task.metric(gold, gold) == pytest.approx(1.0)
    assert np.array_equal(task.combine(np.stack([gold, gold, gold])), gold)


def test_prediction_rules():
    assert TASKS["sst"].to_predictions(torch.tensor([[0.1, 2.0, 0.3, 0.0, -1.0], [3.0, 0, 0, 0, 0]])).tolist() == [1, 0]
    # QQP: a positive logit is a duplicate; exactly 0 (probability one half) is not.
    assert TASKS["qqp"].to_predictions(torch.tensor([1.5, -0.5, 0.0])).tolist() == [1, 0, 0]
    # STS: the head's [-1, 1] output read on the labels' 0-5 range.
    scores = TASKS["sts"].to_predictions(torch.tensor([-1.0, 0.0, 0.75]).bfloat16())
    assert scores.dtype == torch.float32 and scores.tolist() == [0.0, 2.5, 4.375]


def test_losses_are_the_papers():
    logits, classes = torch.tensor([[2.0, 0.5, -1.0, 0.0, 0.3]]), torch.tensor([3])
    assert torch.equal(TASKS["sst"].loss(logits, classes), torch.nn.functional.cross_entropy(logits, classes))
    logit, duplicate = torch.tensor([0.7, -1.2]), torch.tensor([1, 0])
    assert torch.equal(TASKS["qqp"].loss(logit, duplicate),
                       torch.nn.functional.binary_cross_entropy_with_logits(logit, duplicate.float()))
    # STS: labels 5 and 1 are 1.0 and -0.6 on [-1, 1]; outputs 0.6 and -0.6 miss by 0.4 and 0.
    assert TASKS["sts"].loss(torch.tensor([0.6, -0.6]), torch.tensor([5.0, 1.0])).item() == pytest.approx(0.08)


def test_metrics_and_combinations_by_kind():
    assert TASKS["sst"].metric(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5
    assert TASKS["qqp"].metric(np.array([1, 0]), np.array([1.0, 1.0])) == 0.5
    assert TASKS["sts"].metric(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    members = np.array([[1, 0], [2, 0], [2, 1]])
    assert TASKS["sst"].combine(members).tolist() == [2, 0]  # mode
    assert TASKS["sts"].combine(members).tolist() == [2.0, 0.0]  # median, as floats


def test_class_predictions_are_written_as_integers_scores_as_floats(tmp_path):
    for name in TASKS:
        write_predictions(["a", "b"], [1.0, 0.0], name, tmp_path / f"{name}.csv")
    assert (tmp_path / "sst.csv").read_text() == (tmp_path / "qqp.csv").read_text() == "id,prediction\na,1\nb,0\n"
    assert (tmp_path / "sts.csv").read_text() == "id,prediction\na,1.0\nb,0.0\n"
