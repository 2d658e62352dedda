"""The nine raw files of the CS224N "minBERT" project, read and validated row by row.

:func:`read_raw` reads one tab-separated file (see ``data/raw/README.md``) and returns its valid
rows in the prepared schema, ``id, sentence | sentence1, sentence2 [, label]``, with a
:class:`FileReport` of what it dropped and why; :mod:`smartmtl.data.prepare` cleans and writes them.

* A row that fails validation is dropped and counted under one reason, the first that
  applies in this order: ``wrong_field_count`` (the record has more or fewer fields than
  the header), ``empty_id``, ``empty_text``, ``missing_label``, ``bad_label``,
  ``duplicate_id`` (an id already seen on a valid row of the same file). The first
  :data:`MAX_EXAMPLES` rows of each reason are kept with file, line, field and value.
* Texts keep their exact content except surrounding whitespace, which is stripped (SST
  sentences all start with a space). Values such as ``NA`` or ``null`` stay text.
* Test splits: a row with an empty text is *kept* (a prediction must be written for every
  test id) and counted as the warning ``empty_text_kept``; on train/dev it is dropped.
* A file whose last line has too few fields and no newline after it stops the preparation:
  it was cut short (a copy that stopped half-way), which one dropped row would hide.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from smartmtl.errors import UserError
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

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


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


def is_labelled(frame: pd.DataFrame) -> bool:
    return LABEL in frame.columns


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

    Raises a DataError when the last record has too few fields and no newline ends the file:
    the file was cut short, and dropping that one row would hide that the rest is missing.
    """
    starts, counts, too_long = [], [], []
    last = None  # (start line, field count) of the last record
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
                last = start, len(record)
                if len(record) > n_columns:
                    too_long.append(start)
                    continue
                starts.append(start)
                counts.append(len(record))
        except csv.Error:
            return None, too_long
    if last is not None and last[1] < n_columns and not _ends_in_newline(path):
        raise DataError(f"{path}: ends in the middle of a row (line {last[0]} has {last[1]} fields, "
                        f"expected {n_columns}): cut short?")
    if len(starts) != n_rows:
        log.debug("%s: csv and pandas disagree on the record count; line numbers are row index + 2", path)
        return None, too_long
    return (starts, counts), too_long


def _ends_in_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) in (b"\n", b"\r")


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
