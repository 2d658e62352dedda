"""The paper's metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smartmtl.evaluate import overall_score, scores, task_metric


@pytest.mark.parametrize("sst, qqp, sts, expected", [
    (0.545, 0.908, 0.894, 0.800),  # paper Table 4 (the ensemble)
    (0.530, 0.906, 0.873, 0.791),  # paper Table 2
])
def test_overall_score_matches_paper(sst, qqp, sts, expected):
    assert round(overall_score(sst, qqp, sts), 3) == expected


def test_overall_score_maps_pearson_to_0_1():
    assert overall_score(1.0, 1.0, 1.0) == pytest.approx(1.0)
    assert overall_score(0.0, 0.0, -1.0) == pytest.approx(0.0)
    assert overall_score(0.0, 0.0, 0.0) == pytest.approx(0.5 / 3)


def test_accuracy_on_hand_values():
    assert task_metric("sst", np.array([0, 1, 4, 2]), np.array([0, 1, 3, 2])) == pytest.approx(0.75)
    assert task_metric("qqp", np.array([1, 0, 0, 1, 1]), np.array([1, 1, 0, 0, 1])) == pytest.approx(0.6)
    # Labels read back as floats still compare as classes.
    assert task_metric("qqp", np.array([1, 0]), np.array([1.0, 0.0])) == 1.0


def test_pearson_on_hand_values():
    predictions = np.array([1.0, 2.0, 3.0, 4.0])
    assert task_metric("sts", predictions, np.array([2.0, 4.0, 6.0, 8.0])) == pytest.approx(1.0)
    assert task_metric("sts", predictions, np.array([4.0, 3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    # x = (1, 2, 3), y = (1, 3, 2): cov = 0.5, var_x = var_y = 1 (sample), r = 0.5.
    assert task_metric("sts", np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)


def test_constant_sts_predictions_score_zero_not_nan():
    value = task_metric("sts", np.full(4, 2.5), np.array([0.0, 1.0, 4.0, 5.0]))
    assert value == 0.0 and not math.isnan(value)


def test_length_mismatch_and_unknown_task():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        task_metric("sst", np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="unknown task"):
        task_metric("mnli", np.array([0]), np.array([0]))


def test_scores_adds_overall_only_with_all_tasks():
    full = scores({"sst": 0.5, "qqp": 0.9, "sts": 0.8})
    assert full["overall"] == pytest.approx(overall_score(0.5, 0.9, 0.8))
    assert "overall" not in scores({"sst": 0.5, "qqp": 0.9})
    assert "overall" not in scores({"sst": 0.5, "qqp": 0.9, "sts": float("nan")})
