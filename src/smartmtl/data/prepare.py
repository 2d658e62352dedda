"""Data preparation for the three tasks (the paper's Table 1), and reading its results.

``prepare`` reads the nine raw tab-separated files with :mod:`smartmtl.data.raw`, which
validates every row, then removes duplicates and train/eval leakage, optionally subsamples
the splits, and writes one parquet file per task and split (:mod:`smartmtl.data.prepared` reads them):

    {task}-{split}.parquet   columns: id, sentence | sentence1, sentence2 [, label]
    {task}-probe.parquet     where ``probe_limit`` asks for more rows than ``train_limit`` keeps

``label`` is int64 for SST (0-4) and QQP (0/1), float64 for STS (0-5); it is present only
when the split is labelled (the distributed test files are not).

Policies (each one counted in :meth:`PrepareResult.metrics`, never applied silently; the
rules for rejecting a raw row are in :mod:`smartmtl.data.raw`):

* Exact duplicates (same text(s), same label; a pair and its swap are the same pair) are
  removed from train and dev, keeping the first occurrence. Exact duplicates in a test
  split are counted but kept: a prediction must be written for every test id.
* Leakage: a training row whose text (SST) or unordered pair (QQP, STS) also stands in
  that task's dev or test split is removed from train.
* Cleaning that removes more than a tenth of a split logs a warning naming the file and the
  cause; more than half (a dev file holding the training rows, say) stops prepare with a
  DataError before anything is written: results trained on what is left would mean nothing.
* ``train_limit`` subsamples a training set after cleaning: seeded, stratified by label
  with proportional (largest-remainder) allocation for SST and QQP, plain random for STS
  (and for unlabelled splits); kept rows stay in their original order. ``dev_limit`` and
  ``test_limit`` do the same to dev and test (reduced-scale presets only: a subsampled test
  split no longer has a prediction for every test id).
* ``probe_limit`` draws, the same way, further rows from the cleaned training rows that
  ``train_limit`` left out, up to that many training rows in all, into a ``probe`` file: rows
  only the heads' linear probe reads (:mod:`smartmtl.train.probe`), never a training step.

Outputs are written into ``out_dir`` as one atomic directory replacement and are
byte-for-byte identical for identical inputs and parameters.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smartmtl.config import SPLITS
from smartmtl.data.prepared import PROBE_SPLIT, output_name
from smartmtl.data.raw import LABEL, RAW_FILES, DataError, FileReport, check_raw_files, is_labelled, read_raw
from smartmtl.io import atomic_path
from smartmtl.tasks import TASKS

log = logging.getLogger(__name__)

# Cleaning a sound split removes a few rows (duplicates, a pair that also stands in dev): more
# than WARN_SHARE of a split is worth a look, more than STOP_SHARE means a wrong file.
WARN_SHARE = 0.1
STOP_SHARE = 0.5

PAPER_COUNTS = {
    "sst": {"train": 8544, "dev": 1101, "test": 2210},
    "qqp": {"train": 283010, "dev": 40429, "test": 80859},
    "sts": {"train": 6040, "dev": 863, "test": 1725},
}
SPLIT_TITLES = {"train": "Train", "dev": "Validation", "test": "Test"}


# ----------------------------------------------------------------------------- results


@dataclass
class SplitResult:
    task: str
    split: str
    report: FileReport
    frame: pd.DataFrame
    duplicates_removed: int = 0
    duplicates_kept: int = 0  # test splits: counted, kept
    leakage_removed: int = 0
    leaked_into: dict[str, int] = field(default_factory=dict)  # held-out file -> training rows also in it
    subsampled_from: int | None = None

    @property
    def labelled(self) -> bool:
        return is_labelled(self.frame)

    @property
    def rows(self) -> int:
        return len(self.frame)


@dataclass
class PrepareResult:
    splits: dict[tuple[str, str], SplitResult]
    seed: int
    limits: dict[str, dict[str, int | None]]  # split -> task -> rows kept (None: all)
    conflicts: dict[tuple[str, str], int] = field(default_factory=dict)
    dev_test_overlap: dict[str, int] = field(default_factory=dict)
    probe: dict[str, pd.DataFrame] = field(default_factory=dict)  # task -> rows only the probe reads

    def __getitem__(self, key: tuple[str, str]) -> SplitResult:
        return self.splits[key]

    def metrics(self) -> dict:
        tasks: dict[str, dict] = {}
        for task in TASKS:
            tasks[task] = {}
            for split in SPLITS:
                s = self.splits[(task, split)]
                r = s.report
                entry = {
                    "file": r.file,
                    "labelled": s.labelled,
                    "rows": s.rows,
                    "rows_read": r.rows_read,
                    "rows_valid": r.rows_valid,
                    "dropped": dict(sorted(r.dropped.items())),
                    "dropped_total": sum(r.dropped.values()),
                    "warnings": dict(sorted(r.warnings.items())),
                    "texts_stripped": r.texts_stripped,
                    "duplicates_removed": s.duplicates_removed,
                    "duplicates_kept": s.duplicates_kept,
                    "conflicting_label_groups": self.conflicts.get((task, split), 0),
                }
                if split == "train":
                    entry["leakage_removed"] = s.leakage_removed
                    entry["probe_rows"] = len(self.probe.get(task, ()))
                entry["subsampled_from"] = s.subsampled_from
                if split == "dev":
                    entry["overlap_with_test"] = self.dev_test_overlap.get(task, 0)
                if s.labelled:
                    entry["labels"] = label_distribution(s.frame, task)
                tasks[task][split] = entry
        return {
            "seed": self.seed,
            **{f"{split}_limit": self.limits[split] for split in (*SPLITS, PROBE_SPLIT)},
            "tasks": tasks,
        }

    def table1(self) -> pd.DataFrame:
        rows = []
        for task in TASKS:
            row: dict[str, object] = {"Task": TASKS[task].title, "Dataset": TASKS[task].dataset}
            for split in SPLITS:
                title = SPLIT_TITLES[split]
                row[f"{title} (ours)"] = self.splits[(task, split)].rows
                row[f"{title} (paper)"] = PAPER_COUNTS[task][split]
            rows.append(row)
        return pd.DataFrame(rows)


def label_distribution(frame: pd.DataFrame, task: str) -> dict:
    labels = frame[LABEL]
    classes = TASKS[task].classes
    if classes is None:
        return {
            "mean": round(float(labels.mean()), 4),
            "std": round(float(labels.std(ddof=0)), 4),
            "min": float(labels.min()),
            "max": float(labels.max()),
        }
    counts = labels.value_counts()
    return {str(c): int(counts.get(c, 0)) for c in range(len(classes))}


def prepare(
    raw_dir: str | Path,
    out_dir: str | Path,
    train_limit: Mapping[str, int | None] | None = None,
    seed: int = 0,
    dev_limit: Mapping[str, int | None] | None = None,
    test_limit: Mapping[str, int | None] | None = None,
    probe_limit: Mapping[str, int | None] | None = None,
) -> PrepareResult:
    """Read, validate, clean and write all nine splits; see the module docstring for the rules.

    ``train_limit`` maps a task to the number of training rows to keep (None: all); any
    object with ``.get(task)`` works (e.g. ``params.data.train_limit``). ``dev_limit`` and
    ``test_limit`` do the same for dev and test, after leakage has been removed against the
    whole of both, so that they change no training row. ``probe_limit`` (training rows in all,
    the kept ones included) adds the ``probe`` rows; it changes no training row either.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    given = {"train": train_limit, "dev": dev_limit, "test": test_limit, PROBE_SPLIT: probe_limit}
    limits = {split: _limits(limit, f"{split}_limit") for split, limit in given.items()}
    check_raw_files(raw_dir)

    splits: dict[tuple[str, str], SplitResult] = {}
    for key, raw in RAW_FILES.items():
        frame, report = read_raw(raw_dir, raw)
        splits[key] = SplitResult(raw.task, raw.split, report, frame)

    result = PrepareResult(splits=splits, seed=seed, limits=limits)
    for task in TASKS:
        for split in SPLITS:
            s = splits[(task, split)]
            s.frame, removed, conflicts = _deduplicate(s.frame, task, remove=split != "test")
            if split == "test":
                s.duplicates_kept = removed
            else:
                s.duplicates_removed = removed
            result.conflicts[(task, split)] = conflicts
            if removed:
                verb = "removed" if split != "test" else "found (kept: test rows are all predicted)"
                log.info("%s/%s: %d exact duplicate rows %s", task, split, removed, verb)
        _remove_leakage(splits, task)
        for split in SPLITS:
            _check_cleaning(splits[(task, split)], raw_dir)
        dev_keys = set(_keys(splits[(task, "dev")].frame, task))
        result.dev_test_overlap[task] = int(sum(k in dev_keys for k in _keys(splits[(task, "test")].frame, task)))
        for split in SPLITS:
            s = splits[(task, split)]
            limit = limits[split][task]
            if limit is not None and limit < s.rows:
                s.subsampled_from = s.rows
                kept = np.zeros(s.rows, dtype=bool)
                kept[subsample_rows(s.frame, task, limit, seed)] = True
                cleaned, s.frame = s.frame, s.frame[kept].reset_index(drop=True)
                log.info("%s/%s: subsampled %d of %d rows (seed %d)", task, split, s.rows, s.subsampled_from, seed)
                if split == "train" and (limits[PROBE_SPLIT][task] or 0) > s.rows:
                    result.probe[task] = subsample(cleaned[~kept].reset_index(drop=True), task,
                                                   limits[PROBE_SPLIT][task] - s.rows, seed)

    _write(splits, result.probe, out_dir)
    return result


# ----------------------------------------------------------------------------- cleaning


def _keys(frame: pd.DataFrame, task: str) -> list:
    """Text key of each row: the sentence, or the unordered pair of sentences."""
    columns = TASKS[task].text_columns
    if not TASKS[task].is_pair:
        return frame[columns[0]].tolist()
    return [tuple(sorted(pair)) for pair in zip(*(frame[column].tolist() for column in columns))]


def _deduplicate(frame: pd.DataFrame, task: str, *, remove: bool) -> tuple[pd.DataFrame, int, int]:
    """Drop (or only count) exact duplicates: same text key and same label. Also counts
    text keys that carry more than one distinct label (conflicts; all kept)."""
    keys = _keys(frame, task)
    labels = frame[LABEL].tolist() if is_labelled(frame) else [None] * len(frame)
    seen: set = set()
    keep = []
    label_sets: dict = {}
    for key, label in zip(keys, labels):
        full = (key, label)
        keep.append(full not in seen)
        seen.add(full)
        label_sets.setdefault(key, set()).add(label)
    duplicates = keep.count(False)
    conflicts = sum(len(v) > 1 for v in label_sets.values())
    if remove and duplicates:
        frame = frame[np.array(keep)].reset_index(drop=True)
    return frame, duplicates, conflicts


def _remove_leakage(splits: dict[tuple[str, str], SplitResult], task: str) -> None:
    train = splits[(task, "train")]
    train_keys = _keys(train.frame, task)
    leaked = np.zeros(len(train_keys), dtype=bool)
    for split in ("dev", "test"):
        held_out = splits[(task, split)]
        keys = set(_keys(held_out.frame, task))
        in_split = np.array([key in keys for key in train_keys], dtype=bool)
        if in_split.any():
            train.leaked_into[held_out.report.file] = int(in_split.sum())
        leaked |= in_split
    train.leakage_removed = int(leaked.sum())
    if train.leakage_removed:
        train.frame = train.frame[~leaked].reset_index(drop=True)
        log.info("%s/train: %d rows removed that also stand in dev or test", task, train.leakage_removed)


def _check_cleaning(s: SplitResult, raw_dir: Path) -> None:
    """Warn when cleaning removed more than WARN_SHARE of a split, stop when more than STOP_SHARE."""
    removed = s.duplicates_removed + s.leakage_removed
    before = s.rows + removed
    if removed <= WARN_SHARE * before:
        return
    causes = []
    if s.duplicates_removed:
        causes.append(f"{s.duplicates_removed:,} exact duplicates of earlier rows")
    if s.leakage_removed:
        files = " and ".join(f"{raw_dir / file} ({count:,})" for file, count in s.leaked_into.items())
        causes.append(f"{s.leakage_removed:,} rows that also stand in {files} (leakage into held-out data)")
    summary = (f"{raw_dir / s.report.file}: cleaning removes {removed:,} of its {before:,} {s.task} {s.split} rows "
               f"({removed / before:.0%}): {'; '.join(causes)}")
    if removed > STOP_SHARE * before:
        raise DataError(f"{summary}. {s.rows:,} would be left: is a file a copy of another (the training rows "
                        "in the dev file)? Nothing was written.")
    log.warning(summary)


def subsample(frame: pd.DataFrame, task: str, limit: int, seed: int) -> pd.DataFrame:
    """Keep ``limit`` rows: stratified by label (SST, QQP) or plain random (STS); order kept.

    The generator is seeded from ``seed`` and the task name, so the same seed always picks
    the same rows of the same frame.
    """
    if limit >= len(frame):
        return frame
    return frame.iloc[subsample_rows(frame, task, limit, seed)].reset_index(drop=True)


def subsample_rows(frame: pd.DataFrame, task: str, limit: int, seed: int) -> np.ndarray:
    """The positions, ascending, of the rows :func:`subsample` keeps."""
    if limit >= len(frame):
        return np.arange(len(frame))
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    if not TASKS[task].has_classes or not is_labelled(frame):
        chosen = rng.choice(len(frame), size=limit, replace=False)
    else:
        labels = frame[LABEL].to_numpy()
        classes, counts = np.unique(labels, return_counts=True)
        quotas = limit * counts / counts.sum()
        allocation = np.floor(quotas).astype(int)
        remainder = limit - allocation.sum()
        # Largest remainder first; ties go to the smaller class label (stable sort).
        order = np.argsort(-(quotas - allocation), kind="stable")
        allocation[order[:remainder]] += 1
        chosen = np.concatenate(
            [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c, n in zip(classes, allocation)]
        )
    return np.sort(chosen)


def _limits(given, name: str) -> dict[str, int | None]:
    if given is None:
        return {task: None for task in TASKS}
    if isinstance(given, Mapping):
        unknown = sorted(set(given) - set(TASKS))
        if unknown:
            raise DataError(f"{name}: unknown task(s) {unknown}; tasks are {list(TASKS)}")
    limits = {task: given.get(task) for task in TASKS}
    for task, limit in limits.items():
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DataError(f"{name}.{task}: {limit!r} is not a positive integer or null")
    return limits


# ----------------------------------------------------------------------------- writing


def _schema(task: str, labelled: bool) -> pa.Schema:
    fields = [pa.field("id", pa.string())] + [pa.field(c, pa.string()) for c in TASKS[task].text_columns]
    if labelled:
        fields.append(pa.field(LABEL, pa.from_numpy_dtype(np.dtype(TASKS[task].label_dtype))))
    return pa.schema(fields)


def _write(splits: dict[tuple[str, str], SplitResult], probe: dict[str, pd.DataFrame], out_dir: Path) -> None:
    """Write every split, and the probe's rows, into a fresh directory that replaces ``out_dir`` in one step."""
    frames = {key: s.frame for key, s in splits.items()} | {(task, PROBE_SPLIT): f for task, f in probe.items()}
    with atomic_path(out_dir) as staging:
        staging.mkdir()
        for (task, split), frame in frames.items():
            schema = _schema(task, is_labelled(frame))
            columns = {name: frame[name].tolist() for name in schema.names}
            table = pa.Table.from_pydict(columns, schema=schema)
            pq.write_table(table, staging / output_name(task, split), compression="zstd")


def table1_notes(result: PrepareResult, preset: str) -> list[str]:
    """What Table 1's counts mean and how they differ from the paper's."""
    qqp = result[("qqp", "train")].report.rows_read

    def show(limits: dict) -> str:
        return ", ".join(f"{task}={'all' if limits.get(task) is None else limits[task]}" for task in TASKS)

    notes = [
        "Ours: rows written after validation, removal of exact duplicates (train, dev) and of training "
        "rows that also stand in dev or test, and subsampling (train_limit); without test_limit every test row is kept.",
        f"QQP: the training set here is a {qqp:,}-pair subset (the union of the labelled QQP pairs that "
        "could be gathered) of the paper's 283,010 pairs, and QQP dev/test here are the two halves of the "
        "CS224N QQP dev file, so QQP figures are not comparable with the paper's.",
        f"Preset: {preset}; train_limit: {show(result.limits['train'])}; seed: {result.seed}.",
    ]
    if result.probe:
        notes.append("Beyond Train (ours), the heads' linear probe reads training rows no training step sees: "
                     + ", ".join(f"{task} {len(frame):,}" for task, frame in result.probe.items())
                     + " (probe_limit: " + ", ".join(f"{task}={limit}" for task, limit
                                                     in result.limits[PROBE_SPLIT].items() if limit) + " in all).")
    for split, consequence in (("dev", "dev scores are not comparable with the paper's"),
                               ("test", "the test predictions are a sample, not a submission")):
        if any(v is not None for v in result.limits[split].values()):
            notes.append(f"{split}_limit: {show(result.limits[split])} ({split} subsampled: {consequence}).")
    return notes
