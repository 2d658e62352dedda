"""Tests of the data preparation (smartmtl.data.prepare, reading the raw files with smartmtl.data.raw)
and its stage (stages/prepare.py).

The fixtures under tests/fixtures/raw mirror the nine raw files, with the real files'
quirks; tests that need bad rows edit a copy in tmp_path.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from smartmtl.config import SPLITS
from smartmtl.data.prepare import prepare, table1_notes
from smartmtl.data.prepared import load_split
from smartmtl.data.raw import RAW_FILES, DataError, is_labelled
from smartmtl.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "raw"
REAL_DATA = Path("/work/shared/data")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    target = tmp_path / "raw"
    shutil.copytree(FIXTURES, target)
    return target


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare(FIXTURES, out, {}, seed=0)


def append(path: Path, *rows: str) -> int:
    """Append raw lines; return the 1-based physical line number of the first one."""
    text = path.read_text()
    first = text.count("\n") + 1
    path.write_text(text + "".join(row + "\n" for row in rows))
    return first


def ids(frame: pd.DataFrame) -> list[str]:
    return frame["id"].tolist()


# ----------------------------------------------------------------------------- quirks


def test_sst_test_extra_index_column_and_float_counter(prepared):
    out, _ = prepared
    test = load_split(out, "sst", "test")
    assert list(test.columns) == ["id", "sentence"]
    assert ids(test) == ["sst-test-01", "sst-test-02", "sst-test-03", "sst-test-04"]
    assert test["sentence"].iloc[0] == "Effective but too-tepid biopic"
    assert not is_labelled(test)


def test_leading_space_stripped_and_ptb_quotes_kept(prepared):
    out, result = prepared
    train = load_split(out, "sst", "train").set_index("id")
    assert train.loc["sst-train-01", "sentence"] == "A gorgeous , witty film ."
    assert train.loc["sst-train-03", "sentence"] == "It 's a `` comedy '' of sorts ."
    sts = load_split(out, "sts", "train").set_index("id")
    assert sts.loc["sts-train-08", "sentence1"] == "A leading space."
    assert sts.loc["sts-train-08", "sentence2"] == "A trailing space."
    assert result.metrics()["tasks"]["sst"]["train"]["texts_stripped"] == 12


def test_quoted_fields_with_doubled_quotes(prepared):
    out, _ = prepared
    qqp = load_split(out, "qqp", "train").set_index("id")
    assert qqp.loc["qqp-train-02", "sentence1"] == 'What is "carpe diem"?'
    assert qqp.loc["qqp-train-02", "sentence2"] == 'What does "carpe diem" mean?'
    sts = load_split(out, "sts", "test").set_index("id")
    assert sts.loc["sts-test-03", "sentence1"] == 'She said "hello".'


def test_float_labels_and_na_like_text(prepared):
    out, _ = prepared
    qqp = load_split(out, "qqp", "train").set_index("id")
    assert qqp["label"].dtype == "int64"
    assert qqp.loc["qqp-train-01", "label"] == 1 and qqp.loc["qqp-train-03", "label"] == 0
    assert (qqp.loc["qqp-train-05", "sentence1"], qqp.loc["qqp-train-05", "sentence2"]) == ("NA", "null")
    sts = load_split(out, "sts", "train").set_index("id")
    assert sts.loc["sts-train-01", "label"] == pytest.approx(4.8)
    assert sts.loc["sts-train-09", "label"] == 5.0 and sts.loc["sts-train-10", "label"] == 0.0


def test_empty_question_kept_in_unlabelled_test(prepared):
    out, result = prepared
    test = load_split(out, "qqp", "test")
    assert ids(test) == ["qqp-test-01", "qqp-test-02", "qqp-test-03"]
    row = test.set_index("id").loc["qqp-test-02"]
    assert row["sentence1"] == '"Given a set of busy intervals", how do I find free time?'
    assert row["sentence2"] == ""
    report = result[("qqp", "test")].report
    assert dict(report.warnings) == {"empty_text_kept": 1} and not report.dropped
    (issue,) = report.examples["empty_text_kept"]
    assert (issue.file, issue.line, issue.field, issue.value) == ("quora/quora-test-student.csv", 3, "sentence2", "")


# ----------------------------------------------------------------------------- schema


def test_output_schema(prepared):
    out, _ = prepared
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}-{s}.parquet" for t in TASKS for s in SPLITS)
    for task in TASKS:
        texts = ["sentence"] if task == "sst" else ["sentence1", "sentence2"]
        for split in SPLITS:
            frame = load_split(out, task, split)
            schema = pq.read_schema(out / f"{task}-{split}.parquet")
            expected = ["id", *texts] + (["label"] if split != "test" else [])
            assert list(frame.columns) == expected == schema.names
            for column in ["id", *texts]:
                assert str(schema.field(column).type) == "string"
            if split != "test":
                assert str(schema.field("label").type) == ("double" if task == "sts" else "int64")
                assert frame["label"].dtype == ("float64" if task == "sts" else "int64")
            assert is_labelled(frame) == (split != "test")


def test_load_split_errors(prepared, tmp_path):
    out, _ = prepared
    with pytest.raises(ValueError, match="unknown task"):
        load_split(out, "mnli", "train")
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path, "sst", "train")


# ----------------------------------------------------------------------------- bad rows

BAD_ROWS = [
    # (file, appended line, reason, field, offending value)
    ("sst/ids-sst-train.csv", "12\tbad-01\t Fine film .\t3.5", "bad_label", "sentiment", "3.5"),
    ("sst/ids-sst-train.csv", "12\tbad-01\t Fine film .\t7", "bad_label", "sentiment", "7"),
    ("sst/ids-sst-train.csv", "12\tbad-01\t Fine film .\tabc", "bad_label", "sentiment", "abc"),
    ("sst/ids-sst-train.csv", "12\tbad-01\t Fine film .\t-1", "bad_label", "sentiment", "-1"),
    ("sst/ids-sst-train.csv", "12\tbad-01\t Fine film .\t", "missing_label", "sentiment", ""),
    ("sst/ids-sst-train.csv", "12\t\t Fine film .\t3", "empty_id", "id", ""),
    ("sst/ids-sst-train.csv", "12\tbad-01\t   \t3", "empty_text", "sentence", "   "),
    ("sst/ids-sst-train.csv", "12\tsst-train-01\t Another film .\t3", "duplicate_id", "id", "sst-train-01"),
    ("sst/ids-sst-dev.csv", "9\tbad-01\t Fine film .\t4.0\textra", "wrong_field_count", "(record)", None),
    ("sst/ids-sst-dev.csv", "9\tbad-01\t Fine film .", "wrong_field_count", "(record)", None),
    ("quora/quora-train.csv", "9\tbad-01\tA?\tB?\t2.0", "bad_label", "is_duplicate", "2.0"),
    ("quora/quora-train.csv", "9\tbad-01\tA?\tB?\t0.5", "bad_label", "is_duplicate", "0.5"),
    ("quora/quora-train.csv", "9\tbad-01\tA?\tB?\tyes", "bad_label", "is_duplicate", "yes"),
    ("quora/quora-dev.csv", "9\tbad-01\tA?\t\t1.0", "empty_text", "sentence2", ""),
    ("sts/sts-train.csv", "9\tbad-01\tA.\tB.\t5.5", "bad_label", "similarity", "5.5"),
    ("sts/sts-train.csv", "9\tbad-01\tA.\tB.\t-0.1", "bad_label", "similarity", "-0.1"),
    ("sts/sts-train.csv", "9\tbad-01\tA.\tB.\tnan", "bad_label", "similarity", "nan"),
    ("sts/sts-dev.csv", "9\tbad-01\tA.\tB.\tNA", "bad_label", "similarity", "NA"),
    ("sts/sts-test-student.csv", "9\t \tA.\tB.", "empty_id", "id", " "),
]


@pytest.mark.parametrize(("file", "line", "reason", "field", "value"), BAD_ROWS)
def test_bad_row_is_dropped_and_reported(raw, tmp_path, file, line, reason, field, value):
    raw_file = next(f for f in RAW_FILES.values() if f.path == file)
    clean = prepare(FIXTURES, tmp_path / "clean", {}, 0)[(raw_file.task, raw_file.split)]
    number = append(raw / file, line)

    result = prepare(raw, tmp_path / "out", {}, 0)
    split = result[(raw_file.task, raw_file.split)]
    assert dict(split.report.dropped) == {reason: 1}
    assert split.report.rows_read == clean.report.rows_read + 1
    assert split.rows == clean.rows
    assert "bad-01" not in ids(load_split(tmp_path / "out", raw_file.task, raw_file.split))
    (issue,) = split.report.examples[reason]
    assert (issue.reason, issue.file, issue.line, issue.field) == (reason, file, number, field)
    if value is not None:
        assert issue.value == value
    task_metrics = result.metrics()["tasks"][raw_file.task][raw_file.split]
    assert task_metrics["dropped"] == {reason: 1} and task_metrics["dropped_total"] == 1


def test_line_numbers_count_quoted_newlines(raw, tmp_path):
    first = append(
        raw / "sst/ids-sst-train.csv",
        '12\tmulti-01\t" A film ""in"" two\nlines ."\t2',
        "13\tbad-01\t Fine film .\t9",
    )
    result = prepare(raw, tmp_path / "out", {}, 0)
    (issue,) = result[("sst", "train")].report.examples["bad_label"]
    assert issue.line == first + 2  # the quoted field spans two physical lines
    train = load_split(tmp_path / "out", "sst", "train").set_index("id")
    assert train.loc["multi-01", "sentence"] == 'A film "in" two\nlines .'


def test_many_bad_rows_counted_examples_capped(raw, tmp_path):
    first = append(raw / "sst/ids-sst-train.csv", *[f"{20 + i}\tbad-{i:02d}\t Film {i} .\t{5 + i}" for i in range(8)])
    report = prepare(raw, tmp_path / "out", {}, 0)[("sst", "train")].report
    assert report.dropped["bad_label"] == 8
    examples = report.examples["bad_label"]
    assert 1 <= len(examples) < 8
    assert [e.line for e in examples] == list(range(first, first + len(examples)))


def test_empty_text_dropped_from_dev_but_kept_in_test(raw, tmp_path):
    append(raw / "sts/sts-dev.csv", "99\tsts-dev-empty\tA.\t \t2.0")
    append(raw / "sts/sts-test-student.csv", "99\tsts-test-empty\t\tB.")
    result = prepare(raw, tmp_path / "out", {}, 0)
    assert dict(result[("sts", "dev")].report.dropped) == {"empty_text": 1}
    assert dict(result[("sts", "test")].report.warnings) == {"empty_text_kept": 1}
    assert "sts-test-empty" in ids(load_split(tmp_path / "out", "sts", "test"))
    assert "sts-dev-empty" not in ids(load_split(tmp_path / "out", "sts", "dev"))


# ----------------------------------------------------------------------------- file errors


def test_missing_column_names_file_column_and_columns_found(raw, tmp_path):
    path = raw / "sts/sts-train.csv"
    path.write_text(path.read_text().replace("\tsimilarity\n", "\tscore\n", 1))
    with pytest.raises(DataError) as caught:
        prepare(raw, tmp_path / "out", {}, 0)
    message = str(caught.value)
    assert "sts-train.csv" in message and "'similarity'" in message and "'score'" in message
    assert not (tmp_path / "out").exists()


def test_missing_text_column_in_test_file(raw, tmp_path):
    path = raw / "quora/quora-test-student.csv"
    path.write_text(path.read_text().replace("\tsentence2\n", "\tquestion2\n", 1))
    with pytest.raises(DataError, match=r"quora-test-student\.csv.*'sentence2'.*question2"):
        prepare(raw, tmp_path / "out", {}, 0)


def test_no_valid_rows(raw, tmp_path):
    path = raw / "sst/ids-sst-dev.csv"
    header = path.read_text().splitlines()[0]
    path.write_text(header + "\n0\ta\t Good .\t5\n1\tb\t Bad .\tx\n2\t\t Ugly .\t1\n")
    with pytest.raises(DataError) as caught:
        prepare(raw, tmp_path / "out", {}, 0)
    message = str(caught.value)
    assert "ids-sst-dev.csv" in message and "no valid rows" in message
    assert "bad_label: 2" in message and "empty_id: 1" in message


def test_header_only_file_has_no_valid_rows(raw, tmp_path):
    path = raw / "sts/sts-test-student.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match=r"sts-test-student\.csv.*no valid rows"):
        prepare(raw, tmp_path / "out", {}, 0)


def test_file_cut_in_the_middle_of_a_row_stops_naming_file_and_line(raw, tmp_path):
    path = raw / "sst/ids-sst-train.csv"
    lines = path.read_text().splitlines(keepends=True)
    half = len(lines) // 2
    partial = lines[half][: len(lines[half]) // 2]  # a copy that stopped half-way through a row
    path.write_text("".join(lines[:half]) + partial)
    fields = partial.count("\t") + 1
    with pytest.raises(DataError) as caught:
        prepare(raw, tmp_path / "out", {}, 0)
    assert str(caught.value) == (f"{path}: ends in the middle of a row (line {half + 1} has {fields} fields, "
                                 "expected 4): cut short?")
    assert not (tmp_path / "out").exists()


def test_complete_last_row_without_a_newline_is_read(raw, tmp_path):
    clean = prepare(FIXTURES, tmp_path / "clean", {}, 0)[("sst", "train")]
    path = raw / "sst/ids-sst-train.csv"
    path.write_text(path.read_text().rstrip("\n"))
    split = prepare(raw, tmp_path / "out", {}, 0)[("sst", "train")]
    assert split.report.rows_read == clean.report.rows_read and not split.report.dropped
    assert ids(split.frame) == ids(clean.frame)


def test_missing_files_all_listed(raw, tmp_path):
    (raw / "sst/ids-sst-dev.csv").unlink()
    shutil.rmtree(raw / "quora")
    with pytest.raises(DataError) as caught:
        prepare(raw, tmp_path / "out", {}, 0)
    message = str(caught.value)
    missing = ["sst/ids-sst-dev.csv", "quora/quora-train.csv", "quora/quora-dev.csv", "quora/quora-test-student.csv"]
    for name in missing:
        raw_file = next(f for f in RAW_FILES.values() if f.path == name)
        assert str((raw / name).absolute()) in message
        assert raw_file.description in message
    assert "4 of 9" in message
    assert "sst/ids-sst-train.csv" not in message
    assert "data.raw_dir" in message and "params.yaml" in message


# ----------------------------------------------------------------------------- cleaning


def test_duplicates_and_leakage_removed(prepared):
    out, result = prepared
    metrics = result.metrics()["tasks"]
    expected = {  # task: (duplicates removed, leakage removed, removed ids)
        "sst": (1, 2, {"sst-train-06", "sst-train-10", "sst-train-12"}),
        "qqp": (1, 1, {"qqp-train-04", "qqp-train-06"}),  # both pairs stand swapped elsewhere
        "sts": (1, 1, {"sts-train-04", "sts-train-07"}),
    }
    for task, (duplicates, leakage, removed) in expected.items():
        assert metrics[task]["train"]["duplicates_removed"] == duplicates
        assert metrics[task]["train"]["leakage_removed"] == leakage
        raw_ids = set(pd.read_csv(FIXTURES / RAW_FILES[(task, "train")].path, sep="\t", dtype=str)["id"])
        assert set(ids(load_split(out, task, "train"))) == raw_ids - removed
        assert metrics[task]["dev"]["rows"] == metrics[task]["dev"]["rows_read"]
    assert {t: (m["train"]["rows"], m["dev"]["rows"], m["test"]["rows"]) for t, m in metrics.items()} == {
        "sst": (9, 4, 4),
        "qqp": (6, 3, 3),
        "sts": (8, 3, 3),
    }


def test_a_dev_file_holding_the_training_rows_stops_prepare_naming_the_files_and_losing_nothing(raw, tmp_path):
    shutil.copy(raw / "sst/ids-sst-train.csv", raw / "sst/ids-sst-dev.csv")  # a user's copy mistake
    out = tmp_path / "out"
    prepare(FIXTURES, out, {}, 0)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    with pytest.raises(DataError) as error:
        prepare(raw, out, {}, 0)
    message = str(error.value)
    assert message.startswith(f"{raw / 'sst/ids-sst-train.csv'}: cleaning removes 12 of its 12 sst train rows (100%)")
    assert f"also stand in {raw / 'sst/ids-sst-dev.csv'} (11)" in message and "leakage" in message
    assert "0 would be left" in message and "Nothing was written" in message
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_cleaning_most_of_a_split_stops_prepare_even_when_rows_are_left(raw, tmp_path):
    first = (raw / "sts/sts-train.csv").read_text().splitlines()[1]
    append(raw / "sts/sts-train.csv", *[first.replace("sts-train-01", f"sts-train-copy-{n}") for n in range(20)])
    with pytest.raises(DataError, match=r"sts-train\.csv: cleaning removes 22 of its 30 sts train rows \(73%\): "
                                        r"21 exact duplicates of earlier rows; .* 8 would be left"):
        prepare(raw, tmp_path / "out", {}, 0)
    assert not (tmp_path / "out").exists()


def test_cleaning_more_than_a_tenth_of_a_split_warns_naming_the_file_and_the_causes(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="smartmtl.data.prepare"):
        prepare(FIXTURES, tmp_path / "out", {}, 0)
    warnings = {record.getMessage().split(":")[0]: record.getMessage() for record in caplog.records}
    # The fixtures are small: removing 3 of SST's 12 training rows is a quarter of them.
    assert warnings[str(FIXTURES / "sst/ids-sst-train.csv")] == (
        f"{FIXTURES / 'sst/ids-sst-train.csv'}: cleaning removes 3 of its 12 sst train rows (25%): "
        f"1 exact duplicates of earlier rows; 2 rows that also stand in {FIXTURES / 'sst/ids-sst-dev.csv'} (1) "
        f"and {FIXTURES / 'sst/ids-sst-test-student.csv'} (1) (leakage into held-out data)")
    assert str(FIXTURES / "sst/ids-sst-test-student.csv") not in warnings  # nothing removed there


def test_same_pair_with_other_label_is_not_a_duplicate(raw, tmp_path):
    append(raw / "quora/quora-train.csv", "99\tqqp-train-99\tWhy is grass green?\tWhy is the sky blue?\t1.0")
    append(raw / "quora/quora-dev.csv", "99\tqqp-dev-99\tCan you measure happiness?\tHow can happiness be measured?\t1.0")
    result = prepare(raw, tmp_path / "out", {}, 0)
    assert "qqp-train-99" in ids(load_split(tmp_path / "out", "qqp", "train"))
    assert result[("qqp", "train")].duplicates_removed == 1  # only the fixture's own duplicate
    assert result[("qqp", "dev")].duplicates_removed == 1
    assert "qqp-dev-99" not in ids(load_split(tmp_path / "out", "qqp", "dev"))
    assert result.metrics()["tasks"]["qqp"]["train"]["conflicting_label_groups"] == 1


def test_duplicates_in_test_are_counted_not_removed(raw, tmp_path):
    append(raw / "sst/ids-sst-test-student.csv", "5\t4.0\tsst-test-05\t Forgettable .")
    result = prepare(raw, tmp_path / "out", {}, 0)
    assert result[("sst", "test")].duplicates_kept == 1
    assert ids(load_split(tmp_path / "out", "sst", "test"))[-1] == "sst-test-05"


def test_labelled_test_file_keeps_labels(raw, tmp_path):
    path = raw / "sst/ids-sst-test-student.csv"
    path.write_text(
        "\tid\tsentence\tsentiment\n"
        "0\tsst-test-01\t Effective but too-tepid biopic\t2\n"
        "1\tsst-test-02\t Lovely .\t4.0\n"
        "2\tsst-test-03\t Broken label .\t9\n"
    )
    result = prepare(raw, tmp_path / "out", {}, 0)
    test = load_split(tmp_path / "out", "sst", "test")
    assert is_labelled(test)
    assert test["label"].dtype == "int64"
    assert test.set_index("id")["label"].to_dict() == {"sst-test-01": 2, "sst-test-02": 4}
    assert dict(result[("sst", "test")].report.dropped) == {"bad_label": 1}
    assert result.metrics()["tasks"]["sst"]["test"]["labels"] == {"0": 0, "1": 0, "2": 1, "3": 0, "4": 1}
    assert result.table1().set_index("Dataset").loc["SST", "Test (ours)"] == 2


# ----------------------------------------------------------------------------- subsampling


def _big_train(raw: Path, task: str, counts: dict[int, int]) -> None:
    """Replace a training file with many labelled rows, classes interleaved."""
    raw_file = RAW_FILES[(task, "train")]
    path = raw / raw_file.path
    header = path.read_text().splitlines()[0]
    lines, n = [header], 0
    remaining = dict(counts)
    while any(remaining.values()):
        for label in sorted(remaining):
            if remaining[label]:
                remaining[label] -= 1
                label_text = f"{label}.0" if task == "qqp" else str(label)
                texts = [f" Big film number {n} ."] if task == "sst" else [f"Question {n} a?", f"Question {n} b?"]
                lines.append("\t".join([str(n), f"{task}-big-{n:04d}", *texts, label_text]))
                n += 1
    path.write_text("\n".join(lines) + "\n")


def test_subsampling_is_seeded_stratified_and_keeps_order(raw, tmp_path):
    counts = {0: 80, 1: 60, 2: 30, 3: 20, 4: 10}
    _big_train(raw, "sst", counts)
    a = prepare(raw, tmp_path / "a", {"sst": 50}, seed=1)
    prepare(raw, tmp_path / "b", {"sst": 50}, seed=1)
    c = prepare(raw, tmp_path / "c", {"sst": 50}, seed=2)
    rows_a, rows_b, rows_c = (load_split(tmp_path / d, "sst", "train") for d in "abc")
    assert len(rows_a) == 50
    assert ids(rows_a) == ids(rows_b)
    assert ids(rows_a) != ids(rows_c)
    assert ids(rows_a) == sorted(ids(rows_a))  # the file's order (ids increase down the file)
    for frame in (rows_a, rows_c):
        kept = frame["label"].value_counts().to_dict()
        for label, n in counts.items():
            assert abs(kept.get(label, 0) - 50 * n / 200) <= 1
    assert a[("sst", "train")].subsampled_from == 200
    assert a.metrics()["tasks"]["sst"]["train"]["subsampled_from"] == 200
    assert a.table1().set_index("Dataset").loc["SST", "Train (ours)"] == 50
    # other tasks untouched, dev/test never subsampled
    assert a[("qqp", "train")].subsampled_from is None and a[("sst", "dev")].rows == 4
    assert c[("sst", "train")].rows == 50


def test_subsampling_qqp_stratified_and_sts_random(raw, tmp_path):
    _big_train(raw, "qqp", {0: 90, 1: 30})
    result = prepare(raw, tmp_path / "out", {"qqp": 40, "sts": 5, "sst": 1000}, seed=0)
    qqp = load_split(tmp_path / "out", "qqp", "train")
    assert qqp["label"].value_counts().to_dict() == {0: 30, 1: 10}
    sts = load_split(tmp_path / "out", "sts", "train")
    assert len(sts) == 5 and result[("sts", "train")].subsampled_from == 8
    all_sts = ids(prepare(raw, tmp_path / "full", {}, seed=0)[("sts", "train")].frame)
    assert [all_sts.index(i) for i in ids(sts)] == sorted(all_sts.index(i) for i in ids(sts))
    # a limit above the row count keeps every row
    assert result[("sst", "train")].subsampled_from is None and result[("sst", "train")].rows == 9


def test_dev_and_test_limits_subsample_their_own_split_only(tmp_path):
    full = prepare(FIXTURES, tmp_path / "full", {}, 0)
    result = prepare(FIXTURES, tmp_path / "out", {}, 0, dev_limit={"sst": 2, "qqp": 2}, test_limit={"sst": 3})
    metrics = result.metrics()["tasks"]
    assert (metrics["sst"]["dev"]["rows"], metrics["sst"]["test"]["rows"]) == (2, 3)
    assert (metrics["sst"]["dev"]["subsampled_from"], metrics["sst"]["test"]["subsampled_from"]) == (4, 4)
    assert (metrics["qqp"]["dev"]["rows"], metrics["qqp"]["test"]["subsampled_from"]) == (2, None)
    assert metrics["sts"]["test"]["rows"] == 3
    # leakage is removed against the full dev and test sets, so no limit changes a training row
    assert metrics["sst"]["train"]["leakage_removed"] == 2
    for task in ("sst", "qqp", "sts"):
        assert load_split(tmp_path / "out", task, "train").equals(load_split(tmp_path / "full", task, "train"))
    # a test limit leaves dev as it is, and each limit is reported under its split's name
    assert load_split(tmp_path / "out", "sts", "dev").equals(load_split(tmp_path / "full", "sts", "dev"))
    assert result.metrics()["test_limit"] == {"sst": 3, "qqp": None, "sts": None}
    assert full.metrics()["dev_limit"] == {"sst": None, "qqp": None, "sts": None}


def test_probe_limit_adds_only_rows_train_limit_left_out(raw, tmp_path):
    counts = {0: 80, 1: 60, 2: 30, 3: 20, 4: 10}
    _big_train(raw, "sst", counts)
    alone = prepare(raw, tmp_path / "alone", {"sst": 50}, seed=1)
    result = prepare(raw, tmp_path / "out", {"sst": 50}, seed=1, probe_limit={"sst": 120})
    again = prepare(raw, tmp_path / "again", {"sst": 50}, seed=1, probe_limit={"sst": 120})
    train, extra = load_split(tmp_path / "out", "sst", "train"), load_split(tmp_path / "out", "sst", "probe")
    # the training rows are those without probe_limit; the probe's are 70 others of the same cleaned file
    assert train.equals(load_split(tmp_path / "alone", "sst", "train"))
    assert len(extra) == 70 and not set(ids(extra)) & set(ids(train))
    assert set(ids(extra)) <= set(ids(prepare(raw, tmp_path / "full", {}, seed=1)[("sst", "train")].frame))
    assert ids(extra) == ids(again.probe["sst"])  # seeded
    kept = extra["label"].value_counts().to_dict()
    assert all(abs(kept.get(label, 0) - 70 * n / 200) <= 1 for label, n in counts.items())  # stratified
    assert result.metrics()["tasks"]["sst"]["train"]["probe_rows"] == 70
    assert result.metrics()["probe_limit"] == {"sst": 120, "qqp": None, "sts": None}
    assert alone.metrics()["tasks"]["sst"]["train"]["probe_rows"] == 0
    # tasks without a probe_limit, and a run without any, have no probe file
    assert sorted(p.name for p in (tmp_path / "out").glob("*-probe.parquet")) == ["sst-probe.parquet"]
    assert not list((tmp_path / "alone").glob("*-probe.parquet"))
    assert any("sst 70" in note for note in table1_notes(result, "laptop"))
    # a probe_limit above the cleaned rows takes every row train_limit left out
    everything = prepare(raw, tmp_path / "all", {"sst": 50}, seed=1, probe_limit={"sst": 10_000})
    assert len(everything.probe["sst"]) == 150


@pytest.mark.parametrize("limit", [{"sst": 0}, {"sst": 2.5}, {"mnli": 3}])
def test_bad_train_limit(tmp_path, limit):
    with pytest.raises(DataError, match="train_limit"):
        prepare(FIXTURES, tmp_path / "out", limit, 0)
    with pytest.raises(DataError, match="dev_limit"):
        prepare(FIXTURES, tmp_path / "out", {}, 0, dev_limit=limit)
    with pytest.raises(DataError, match="test_limit"):
        prepare(FIXTURES, tmp_path / "out", {}, 0, test_limit=limit)
    with pytest.raises(DataError, match="probe_limit"):
        prepare(FIXTURES, tmp_path / "out", {}, 0, probe_limit=limit)


# ----------------------------------------------------------------------------- outputs


def test_prepare_twice_is_byte_identical(tmp_path):
    first = prepare(FIXTURES, tmp_path / "out", {"sts": 4}, 7)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    second = prepare(FIXTURES, tmp_path / "out", {"sts": 4}, 7)
    after = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert before == after and len(before) == 9
    assert json.dumps(first.metrics()) == json.dumps(second.metrics())
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary leftovers


def test_rerun_replaces_stale_outputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.parquet").write_bytes(b"old")
    prepare(FIXTURES, out, {}, 0)
    assert not (out / "stale.parquet").exists()


def test_table1_and_metrics(prepared):
    _, result = prepared
    table = result.table1()
    assert list(table.columns) == [
        "Task", "Dataset",
        "Train (ours)", "Train (paper)", "Validation (ours)", "Validation (paper)", "Test (ours)", "Test (paper)",
    ]
    assert table["Task"].tolist() == ["Sentiment Analysis", "Paraphrase Detection", "Semantic Textual Similarity"]
    assert table["Dataset"].tolist() == ["SST", "QQP", "STS"]
    assert table["Train (paper)"].tolist() == [8544, 283010, 6040]
    assert table["Validation (paper)"].tolist() == [1101, 40429, 863]
    assert table["Test (paper)"].tolist() == [2210, 80859, 1725]
    assert table["Train (ours)"].tolist() == [9, 6, 8]
    metrics = result.metrics()
    json.dumps(metrics)  # serialisable
    assert metrics["tasks"]["sst"]["dev"]["labels"] == {"0": 1, "1": 0, "2": 1, "3": 1, "4": 1}
    assert metrics["tasks"]["qqp"]["train"]["labels"] == {"0": 3, "1": 3}
    sts = metrics["tasks"]["sts"]["dev"]["labels"]
    assert sts["min"] == 1.0 and sts["max"] == 4.6 and sts["mean"] == pytest.approx((1.0 + 4.6 + 2.2) / 3, abs=1e-4)
    assert "labels" not in metrics["tasks"]["sts"]["test"]


# ----------------------------------------------------------------------------- stage


def _stage():
    spec = importlib.util.spec_from_file_location("prepare_stage", ROOT / "stages" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_writes_metrics_and_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(
        f"preset: laptop\ndata:\n  raw_dir: {FIXTURES}\n  prepared_dir: data/prepared\n  train_limit: {{sts: 4}}\n"
        "  dev_limit: {sst: 3}\n  test_limit: {qqp: 2}\n"
    )
    result = CliRunner().invoke(_stage().app, ["--params", "params.yaml"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(Path("metrics/data.json").read_text())
    assert metrics["preset"] == "laptop" and metrics["tasks"]["sts"]["train"]["rows"] == 4
    assert metrics["tasks"]["sst"]["dev"]["rows"] == 3
    table = Path("metrics/tables/table1_data.md").read_text()
    assert "283,010" in table and "two halves" in table and "laptop" in table and "sts=4" in table
    assert "dev_limit: sst=3, qqp=all" in table and "test_limit: sst=all, qqp=2" in table
    assert pd.read_csv("metrics/tables/table1_data.csv")["Train (ours)"].tolist() == [9, 6, 4]
    assert len(list(Path("data/prepared").glob("*.parquet"))) == 9


def test_stage_reports_errors_without_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("data:\n  raw_dir: nowhere\n")
    result = CliRunner().invoke(_stage().app, ["--params", "params.yaml"])
    assert result.exit_code == 1
    assert "9 of 9 raw data files are missing" in result.stderr
    assert "Traceback" not in result.output
    Path("bad.yaml").write_text("data:\n  raw_dri: x\n")
    result = CliRunner().invoke(_stage().app, ["--params", "bad.yaml"])
    assert result.exit_code == 1 and "raw_dri" in result.stderr
    assert not Path("metrics").exists()


def test_stage_stops_on_a_dev_file_holding_the_training_rows(raw, tmp_path, monkeypatch):
    shutil.copy(raw / "sst/ids-sst-train.csv", raw / "sst/ids-sst-dev.csv")
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(f"data:\n  raw_dir: {raw}\n  prepared_dir: data/prepared\n")
    result = CliRunner().invoke(_stage().app, ["--params", "params.yaml"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"prepare: {raw / 'sst/ids-sst-train.csv'}: cleaning removes 12 of its 12")
    assert "Traceback" not in result.output and not Path("metrics").exists()


# ----------------------------------------------------------------------------- real data


def test_real_data(tmp_path):
    if not REAL_DATA.is_dir():
        pytest.skip(f"{REAL_DATA} not present")
    result = prepare(REAL_DATA, tmp_path / "out", {}, 0)
    read = {  # rows per file in the data README
        ("sst", "train"): 8544, ("sst", "dev"): 1101, ("sst", "test"): 2210,
        ("qqp", "train"): 27154, ("qqp", "dev"): 10107, ("qqp", "test"): 10107,
        ("sts", "train"): 6040, ("sts", "dev"): 863, ("sts", "test"): 1725,
    }
    for key, rows in read.items():
        split = result[key]
        assert split.report.rows_read == rows, key
        assert sum(split.report.dropped.values()) <= 5, (key, split.report.dropped)
        assert split.labelled == (key[1] != "test")
        if key[1] == "test":
            assert split.rows == rows  # every test id gets a prediction
        else:
            assert rows - 100 <= split.rows <= rows
    assert result[("qqp", "test")].report.warnings["empty_text_kept"] == 1
    assert result.metrics()["tasks"]["qqp"]["train"]["labels"] == {"0": 17224, "1": 9930}
    assert result[("sst", "train")].frame["sentence"].str.startswith(" ").sum() == 0
