"""Reading the prepared data: one parquet file per task and split, written by
:mod:`smartmtl.data.prepare`.

    {task}-{split}.parquet   columns: id, sentence | sentence1, sentence2 [, label]
    {task}-probe.parquet     training rows only the heads' linear probe reads

``label`` is int64 for SST (0-4) and QQP (0/1), float64 for STS (0-5); it is present only
when the split is labelled (the distributed test files are not).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from smartmtl.config import SPLITS
from smartmtl.data.raw import DataError
from smartmtl.tasks import TASKS

# Not a split of the raw data: training rows outside ``train`` that only the heads' probe reads.
PROBE_SPLIT = "probe"


def output_name(task: str, split: str) -> str:
    return f"{task}-{split}.parquet"


def load_split(prepared_dir: str | Path, task: str, split: str) -> pd.DataFrame:
    """Read one prepared split; ``label`` is present only when the split is labelled."""
    if task not in TASKS or split not in (*SPLITS, PROBE_SPLIT):
        raise ValueError(f"unknown task/split {task!r}/{split!r}; tasks: {tuple(TASKS)}, "
                         f"splits: {(*SPLITS, PROBE_SPLIT)}")
    path = Path(prepared_dir) / output_name(task, split)
    if not path.exists():
        raise DataError(f"{path}: prepared split not found (run the prepare stage first)")
    return pq.read_table(path).to_pandas()


def read_prepared(prepared_dir: str | Path, task: str, split: str) -> pd.DataFrame | None:
    """The prepared split with ``id`` as strings, or None when the file does not exist."""
    if not (Path(prepared_dir) / output_name(task, split)).exists():
        return None
    frame = load_split(prepared_dir, task, split)
    frame["id"] = frame["id"].astype(str)
    return frame
