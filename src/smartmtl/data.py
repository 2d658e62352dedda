"""Data preparation for the three tasks (the paper's Table 1).

``prepare`` reads the nine raw tab-separated files of the CS224N "minBERT" project (see
``data/raw/README.md``), validates every row, removes duplicates and train/eval leakage,
optionally subsamples the training sets, and writes one parquet file per task and split:

    {task}-{split}.parquet   columns: id, sentence | sentence1, sentence2 [, label]

``label`` is int64 for SST (0-4) and QQP (0/1), float64 for STS (0-5); it is present only
when the split is labelled (the distributed test files are not).

Policies (each one counted in :meth:`PrepareResult.metrics`, never applied silently):

* A row that fails validation is dropped and counted under one reason, the first that
  applies in this order: ``wrong_field_count`` (the record has more or fewer fields than
  the header), ``empty_id``, ``empty_text``, ``missing_label``, ``bad_label``,
  ``duplicate_id`` (an id already seen on a valid row of the same file). The first
  :data:`MAX_EXAMPLES` rows of each reason are kept with file, line, field and value.
* Texts keep their exact content except surrounding whitespace, which is stripped (SST
  sentences all start with a space). Values such as ``NA`` or ``null`` stay text.
* Test splits: a row with an empty text is *kept* (a prediction must be written for every
  test id) and counted as the warning ``empty_text_kept``; on train/dev it is dropped.
  Exact duplicates in a test split are counted but kept, for the same reason.
* Exact duplicates (same text(s), same label; a pair and its swap are the same pair) are
  removed from train and dev, keeping the first occurrence.
* Leakage: a training row whose text (SST) or unordered pair (QQP, STS) also stands in
  that task's dev or test split is removed from train.
* ``train_limit`` subsamples a training set after cleaning: seeded, stratified by label
  with proportional (largest-remainder) allocation for SST and QQP, plain random for STS
  (and for unlabelled splits); kept rows stay in their original order. ``dev_limit`` and
  ``test_limit`` do the same to dev and test (reduced-scale presets only: a subsampled test
  split no longer has a prediction for every test id).

Outputs are written into ``out_dir`` as one atomic directory replacement and are
byte-for-byte identical for identical inputs and parameters.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smartmtl.config import SPLITS
from smartmtl.errors import UserError
from smartmtl.io import atomic_path
from smartmtl.tasks import TASKS

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5
ENCODING = "utf-8-sig"  # tolerate a byte-order mark on the header


class DataError(UserError, ValueError):
    """Raw data that cannot be prepared; the message names the file and what is wrong."""


@dataclass(frozen=True)
class RawFile:
    task: str
    split: str
    path: str  # relative to the raw data directory
    description: str


RAW_FILES: dict[tuple[str, str], RawFile] = {
    (f.task, f.split): f
    for f in (
        RawFile("sst", "train", "sst/ids-sst-train.csv", "SST-5 training sentences with sentiment labels 0-4"),
        RawFile("sst", "dev", "sst/ids-sst-dev.csv", "SST-5 development sentences with sentiment labels 0-4"),
        RawFile("sst", "test", "sst/ids-sst-test-student.csv", "SST-5 test sentences (unlabelled)"),
        RawFile("qqp", "train", "quora/quora-train.csv", "Quora question pairs for training, is_duplicate 0/1"),
        RawFile("qqp", "dev", "quora/quora-dev.csv", "Quora question pairs for development, is_duplicate 0/1"),
        RawFile("qqp", "test", "quora/quora-test-student.csv", "Quora question pairs for testing (unlabelled)"),
        RawFile("sts", "train", "sts/sts-train.csv", "STS-B sentence pairs for training, similarity 0-5"),
        RawFile("sts", "dev", "sts/sts-dev.csv", "STS-B sentence pairs for development, similarity 0-5"),
        RawFile("sts", "test", "sts/sts-test-student.csv", "STS-B sentence pairs for testing (unlabelled)"),
    )
}

RAW_LABEL_COLUMN = {"sst": "sentiment", "qqp": "is_duplicate", "sts": "similarity"}
LABEL = "label"

PAPER_COUNTS = {
    "sst": {"train": 8544, "dev": 1101, "test": 2210},
    "qqp": {"train": 283010, "dev": 40429, "test": 80859},
    "sts": {"train": 6040, "dev": 863, "test": 1725},
}
SPLIT_TITLES = {"train": "Train", "dev": "Validation", "test": "Test"}

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Issue:
    """One rejected (or flagged) row: where it is and which value is at fault."""

    reason: str
    file: str
    line: int  # 1-based physical line in the file where the record starts; header is line 1
    field: str
    value: str


@dataclass
class FileReport:
    task: str
    split: str
    file: str
    labelled: bool
    rows_read: int = 0
    rows_valid: int = 0
    texts_stripped: int = 0
    dropped: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    examples: dict[str, list[Issue]] = field(default_factory=dict)

    def add(self, issue: Issue, *, dropped: bool) -> None:
        (self.dropped if dropped else self.warnings)[issue.reason] += 1
        examples = self.examples.setdefault(issue.reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(issue)


@dataclass
class SplitResult:
    task: str
    split: str
    report: FileReport
    frame: pd.DataFrame
    duplicates_removed: int = 0
    duplicates_kept: int = 0  # test splits: counted, kept
    leakage_removed: int = 0
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
                entry["subsampled_from"] = s.subsampled_from
                if split == "dev":
                    entry["overlap_with_test"] = self.dev_test_overlap.get(task, 0)
                if s.labelled:
                    entry["labels"] = label_distribution(s.frame, task)
                tasks[task][split] = entry
        return {
            "seed": self.seed,
            **{f"{split}_limit": self.limits[split] for split in SPLITS},
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


# ----------------------------------------------------------------------------- public API


def is_labelled(frame: pd.DataFrame) -> bool:
    return LABEL in frame.columns


def output_name(task: str, split: str) -> str:
    return f"{task}-{split}.parquet"


def load_split(prepared_dir: str | Path, task: str, split: str) -> pd.DataFrame:
    """Read one prepared split; ``label`` is present only when the split is labelled."""
    if task not in TASKS or split not in SPLITS:
        raise ValueError(f"unknown task/split {task!r}/{split!r}; tasks: {tuple(TASKS)}, splits: {SPLITS}")
    path = Path(prepared_dir) / output_name(task, split)
    if not path.exists():
        raise DataError(f"{path}: prepared split not found (run the prepare stage first)")
    return pq.read_table(path).to_pandas()


def check_raw_files(raw_dir: str | Path) -> None:
    """Raise one DataError that lists every missing raw file, where it was looked for and what it is."""
    raw_dir = Path(raw_dir)
    missing = [f for f in RAW_FILES.values() if not (raw_dir / f.path).is_file()]
    if not missing:
        return
    lines = [f"{len(missing)} of {len(RAW_FILES)} raw data files are missing under {raw_dir.absolute()}:"]
    for f in missing:
        lines.append(f"  - {f.path} ({f.description}); looked for {(raw_dir / f.path).absolute()}")
    lines.append(
        "Hint: set data.raw_dir in params.yaml to the folder that holds sst/, quora/ and sts/, "
        "or link the shared data there (e.g. `ln -s ../shared/data data/raw`)."
    )
    raise DataError("\n".join(lines))


def prepare(
    raw_dir: str | Path,
    out_dir: str | Path,
    train_limit: Mapping[str, int | None] | None = None,
    seed: int = 0,
    dev_limit: Mapping[str, int | None] | None = None,
    test_limit: Mapping[str, int | None] | None = None,
) -> PrepareResult:
    """Read, validate, clean and write all nine splits; see the module docstring for the rules.

    ``train_limit`` maps a task to the number of training rows to keep (None: all); any
    object with ``.get(task)`` works (e.g. ``params.data.train_limit``). ``dev_limit`` and
    ``test_limit`` do the same for dev and test, after leakage has been removed against the
    whole of both, so that they change no training row.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    given = {"train": train_limit, "dev": dev_limit, "test": test_limit}
    limits = {split: _limits(given[split], f"{split}_limit") for split in SPLITS}
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
        dev_keys = set(_keys(splits[(task, "dev")].frame, task))
        result.dev_test_overlap[task] = int(sum(k in dev_keys for k in _keys(splits[(task, "test")].frame, task)))
        for split in SPLITS:
            s = splits[(task, split)]
            limit = limits[split][task]
            if limit is not None and limit < s.rows:
                s.subsampled_from = s.rows
                s.frame = subsample(s.frame, task, limit, seed)
                log.info("%s/%s: subsampled %d of %d rows (seed %d)", task, split, s.rows, s.subsampled_from, seed)

    _write(splits, out_dir)
    return result


# ----------------------------------------------------------------------------- reading


def read_raw(raw_dir: Path, raw: RawFile) -> tuple[pd.DataFrame, FileReport]:
    """Read and validate one raw file; returns the valid rows in the output schema."""
    path = raw_dir / raw.path
    task, split = raw.task, raw.split
    label_col = RAW_LABEL_COLUMN[task]
    try:
        table = pd.read_csv(
            path,
            sep="\t",
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            quoting=csv.QUOTE_MINIMAL,
            doublequote=True,
            on_bad_lines="skip",
            encoding=ENCODING,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header and rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be parsed as a tab-separated CSV file: {error}") from None

    columns = [str(c) for c in table.columns]
    required = ["id", *TASKS[task].text_columns] + ([label_col] if split != "test" else [])
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(
            f"{path}: missing required column(s) {', '.join(map(repr, missing))} "
            f"({raw.description}); columns found: {columns}"
        )
    labelled = label_col in columns
    report = FileReport(task, split, raw.path, labelled)

    lines, too_long = _record_lines(path, len(columns), len(table))
    report.rows_read = len(table) + len(too_long)
    for line in too_long:
        report.add(Issue("wrong_field_count", raw.path, line, "(record)", f"more than {len(columns)} fields"), dropped=True)

    field_counts = lines[1] if lines is not None else None
    line_numbers = lines[0] if lines is not None else [i + 2 for i in range(len(table))]
    texts = {c: table[c].tolist() for c in TASKS[task].text_columns}
    ids = table["id"].tolist()
    raw_labels = table[label_col].tolist() if labelled else None

    keep_rows, out_ids, out_labels = [], [], []
    out_texts: dict[str, list[str]] = {c: [] for c in TASKS[task].text_columns}
    seen_ids: set[str] = set()
    for i in range(len(table)):
        line = line_numbers[i]

        def issue(reason: str, column: str, value: str, line: int = line) -> Issue:
            return Issue(reason, raw.path, line, column, value)

        if field_counts is not None and field_counts[i] != len(columns):
            report.add(issue("wrong_field_count", "(record)", f"{field_counts[i]} fields, header has {len(columns)}"), dropped=True)
            continue
        if not ids[i].strip():
            report.add(issue("empty_id", "id", ids[i]), dropped=True)
            continue
        empty = [c for c in texts if not texts[c][i].strip()]
        if empty and split != "test":
            report.add(issue("empty_text", empty[0], texts[empty[0]][i]), dropped=True)
            continue
        label = None
        if labelled:
            value = raw_labels[i]
            if not value.strip():
                report.add(issue("missing_label", label_col, value), dropped=True)
                continue
            label = _parse_label(task, value)
            if label is None:
                report.add(issue("bad_label", label_col, value), dropped=True)
                continue
        if ids[i] in seen_ids:
            report.add(issue("duplicate_id", "id", ids[i]), dropped=True)
            continue
        seen_ids.add(ids[i])
        for c in empty:
            report.add(issue("empty_text_kept", c, texts[c][i]), dropped=False)
        for c in texts:
            text = texts[c][i]
            stripped = text.strip()
            if stripped != text:
                report.texts_stripped += 1
            out_texts[c].append(stripped)
        out_ids.append(ids[i])
        out_labels.append(label)
        keep_rows.append(i)

    report.rows_valid = len(out_ids)
    _log_report(report, path)
    if not out_ids:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.dropped.items())) or "the file has no data rows"
        raise DataError(f"{path}: no valid rows ({raw.description}); rows dropped by reason: {reasons}")

    frame = pd.DataFrame({"id": out_ids, **out_texts})
    frame = frame.astype({c: "str" for c in frame.columns})
    if labelled:
        frame[LABEL] = pd.Series(out_labels, dtype=TASKS[task].label_dtype)
    return frame, report


def _record_lines(path: Path, n_columns: int, n_rows: int) -> tuple[tuple[list[int], list[int]] | None, list[int]]:
    """Physical start line and field count of each record pandas kept, and lines it skipped.

    Uses the csv module with the same dialect as the pandas read, so quoted fields with
    newlines are counted right. Records with more fields than the header are skipped by
    pandas (``on_bad_lines="skip"``) and returned separately. If the two parsers disagree
    on the number of records, returns None and callers fall back to ``row index + 2``.
    """
    starts, counts, too_long = [], [], []
    with path.open(newline="", encoding=ENCODING) as handle:
        reader = csv.reader(handle, delimiter="\t", quotechar='"', doublequote=True)
        previous = 0
        header_seen = False
        try:
            for record in reader:
                start, previous = previous + 1, reader.line_num
                if not record:
                    continue
                if not header_seen:
                    header_seen = True
                    continue
                if len(record) > n_columns:
                    too_long.append(start)
                    continue
                starts.append(start)
                counts.append(len(record))
        except csv.Error:
            return None, too_long
    if len(starts) != n_rows:
        log.debug("%s: csv and pandas disagree on the record count; line numbers are row index + 2", path)
        return None, too_long
    return (starts, counts), too_long


def _parse_label(task: str, value: str) -> int | float | None:
    if not _NUMBER.fullmatch(value):
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    spec = TASKS[task]
    if not spec.has_classes:
        low, high = spec.score_range
        return number if low <= number <= high else None
    if number != int(number):
        return None
    number = int(number)
    return number if number in range(len(spec.classes)) else None


def _log_report(report: FileReport, path: Path) -> None:
    log.info(
        "%s: %d rows read, %d valid, %d dropped",
        report.file, report.rows_read, report.rows_valid, sum(report.dropped.values()),
    )
    for reason, examples in report.examples.items():
        count = report.dropped.get(reason) or report.warnings.get(reason, 0)
        action = "dropped" if reason in report.dropped else "kept"
        shown = "; ".join(f"line {e.line} {e.field}={e.value!r}" for e in examples)
        log.warning("%s: %d rows %s (%s), e.g. %s", path, count, action, reason, shown)


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
    held_out = set(_keys(splits[(task, "dev")].frame, task)) | set(_keys(splits[(task, "test")].frame, task))
    train = splits[(task, "train")]
    leaked = np.array([key in held_out for key in _keys(train.frame, task)], dtype=bool)
    train.leakage_removed = int(leaked.sum())
    if train.leakage_removed:
        train.frame = train.frame[~leaked].reset_index(drop=True)
        log.info("%s/train: %d rows removed that also stand in dev or test", task, train.leakage_removed)


def subsample(frame: pd.DataFrame, task: str, limit: int, seed: int) -> pd.DataFrame:
    """Keep ``limit`` rows: stratified by label (SST, QQP) or plain random (STS); order kept.

    The generator is seeded from ``seed`` and the task name, so the same seed always picks
    the same rows of the same frame.
    """
    if limit >= len(frame):
        return frame
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
    return frame.iloc[np.sort(chosen)].reset_index(drop=True)


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


def _write(splits: dict[tuple[str, str], SplitResult], out_dir: Path) -> None:
    """Write every split into a fresh directory that replaces ``out_dir`` in one step."""
    with atomic_path(out_dir) as staging:
        staging.mkdir()
        for (task, split), s in splits.items():
            schema = _schema(task, s.labelled)
            columns = {name: s.frame[name].tolist() for name in schema.names}
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
    for split, consequence in (("dev", "dev scores are not comparable with the paper's"),
                               ("test", "the test predictions are a sample, not a submission")):
        if any(v is not None for v in result.limits[split].values()):
            notes.append(f"{split}_limit: {show(result.limits[split])} ({split} subsampled: {consequence}).")
    return notes
