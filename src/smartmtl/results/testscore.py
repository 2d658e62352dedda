"""``smartmtl score-test DIR``: score every run's test predictions against labelled test files.

The shipped test files carry no labels, so the pipeline writes test predictions for every run
(``predictions/<run>/<task>-test.csv``) and scores none. A user who has the labels puts the
three test files, with their label column, in a folder laid out as ``data.raw_dir`` (same
file names) and scores every run and the ensemble in one command, without retraining: the
selection was made on dev, and this is where it is judged.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from smartmtl.data.raw import RAW_FILES, RAW_LABEL_COLUMN, is_labelled, read_raw
from smartmtl.errors import UserError
from smartmtl.evaluate import scores, task_metric
from smartmtl.io import read_predictions
from smartmtl.tasks import TASKS


class ScoringError(UserError, ValueError):
    pass


def read_test_labels(labelled_dir: Path) -> dict[str, pd.DataFrame]:
    """Each task's test ids and gold labels, read and validated as the prepare stage reads data."""
    gold = {}
    for task in TASKS:
        raw = RAW_FILES[(task, "test")]
        if not (labelled_dir / raw.path).exists():
            raise ScoringError(f"{labelled_dir / raw.path}: not found (the labelled {raw.description.split(' (')[0]})")
        frame, _ = read_raw(labelled_dir, raw)
        if not is_labelled(frame):
            raise ScoringError(f"{labelled_dir / raw.path}: no '{RAW_LABEL_COLUMN[task]}' column, so nothing to score "
                                 "against (the shipped test files carry no labels)")
        gold[task] = frame.assign(id=frame["id"].astype(str))[["id", "label"]]
    return gold


def score_test(labelled_dir: str | Path, predictions_dir: str | Path = "predictions") -> pd.DataFrame:
    """One row per run (and the ensemble): test scores on the ids both sides have, and how many."""
    gold = read_test_labels(Path(labelled_dir))
    rows = []
    for run_dir in sorted(path for path in Path(predictions_dir).iterdir() if path.is_dir()):
        task_scores, counts = {}, {}
        for task in TASKS:
            path = run_dir / f"{task}-test.csv"
            if not path.exists():
                continue
            joined = read_predictions(path).merge(gold[task], on="id", how="inner")
            if joined.empty:
                raise ScoringError(f"{path}: none of its ids is in the labelled {task} test file")
            task_scores[task] = task_metric(task, joined["prediction"].to_numpy(), joined["label"].to_numpy())
            counts[f"n_{task}"] = len(joined)
        if task_scores:
            rows.append({"run": run_dir.name, **scores(task_scores), **counts})
    if not rows:
        raise ScoringError(f"no test predictions under {predictions_dir}: run `dvc repro` first")
    return pd.DataFrame(rows)
