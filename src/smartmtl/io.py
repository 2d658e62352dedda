"""Writing outputs so that a failed or interrupted stage never leaves half a file behind, and
reading and writing the prediction files every run and the ensemble leave.

Every file a stage produces goes through :func:`atomic_path`: it is written under a
temporary name beside its destination and renamed into place only once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from smartmtl.errors import UserError
from smartmtl.tasks import TASKS


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path (file or directory) that replaces ``destination`` on success."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent)) / destination.name
    try:
        yield temporary
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        os.replace(temporary, destination)
    finally:
        shutil.rmtree(temporary.parent, ignore_errors=True)


def write_json(data: dict, destination: str | Path) -> None:
    with atomic_path(destination) as path:
        path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(source: str | Path) -> dict:
    return json.loads(Path(source).read_text())


def write_table(frame: pd.DataFrame, stem: str | Path, title: str, notes: list[str] = ()) -> None:
    """Write ``frame`` as ``<stem>.csv`` and as ``<stem>.md`` with a title and notes."""
    stem = Path(stem)
    with atomic_path(stem.with_suffix(".csv")) as path:
        frame.to_csv(path, index=False)
    markdown = [f"### {title}", "", frame.to_markdown(index=False, floatfmt=".3f")]
    if notes:
        markdown += ["", *[f"- {note}" for note in notes]]
    with atomic_path(stem.with_suffix(".md")) as path:
        path.write_text("\n".join(markdown) + "\n")


class PredictionFileError(UserError, ValueError):
    """A prediction file is not an ``id,prediction`` table with one row per id."""


def write_predictions(ids, predictions, task: str, destination: str | Path) -> None:
    """An ``id,prediction`` CSV in the order of ``ids``; a class task's labels are written as integers."""
    predictions = np.asarray(predictions)
    if TASKS[task].has_classes:
        predictions = predictions.astype(np.int64)
    with atomic_path(destination) as path:
        pd.DataFrame({"id": ids, "prediction": predictions}).to_csv(path, index=False)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A ``id,prediction`` CSV; ids are kept as strings so they match however written."""
    path = Path(path)
    frame = pd.read_csv(path, dtype={"id": str})
    missing = {"id", "prediction"} - set(frame.columns)
    if missing:
        raise PredictionFileError(f"{path}: missing column(s) {sorted(missing)}; expected header id,prediction")
    if frame["id"].duplicated().any():
        duplicated = frame.loc[frame["id"].duplicated(), "id"].iloc[0]
        raise PredictionFileError(f"{path}: id {duplicated!r} appears more than once")
    return frame[["id", "prediction"]]
