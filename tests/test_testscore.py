"""`smartmtl score-test`: every run's test predictions scored against labelled test files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from smartmtl.results.testscore import ScoringError, score_test

FIXTURES = Path(__file__).parent / "fixtures" / "raw"


def labelled_tests(root: Path) -> Path:
    """The fixture's test files with a label column added, as a user with the labels has them."""
    raw = root / "labelled"
    shutil.copytree(FIXTURES, raw)
    sst = raw / "sst" / "ids-sst-test-student.csv"
    sst.write_text("\tid\tsentence\tsentiment\n0\tsst-test-01\t A fine film .\t4\n1\tsst-test-02\t Dull .\t0\n")
    quora = raw / "quora" / "quora-test-student.csv"
    quora.write_text("\tid\tsentence1\tsentence2\tis_duplicate\n0\tq1\ta ?\tb ?\t1.0\n1\tq2\tc ?\td ?\t0.0\n")
    sts = raw / "sts" / "sts-test-student.csv"
    sts.write_text("\tid\tsentence1\tsentence2\tsimilarity\n0\tt1\ta\tb\t1.0\n1\tt2\tc\td\t4.0\n2\tt3\te\tf\t2.0\n")
    return raw


def predictions(root: Path, run: str, sst, qqp, sts) -> None:
    folder = root / "predictions" / run
    folder.mkdir(parents=True)
    pd.DataFrame({"id": ["sst-test-01", "sst-test-02"], "prediction": sst}).to_csv(folder / "sst-test.csv", index=False)
    pd.DataFrame({"id": ["q1", "q2"], "prediction": qqp}).to_csv(folder / "qqp-test.csv", index=False)
    pd.DataFrame({"id": ["t1", "t2", "t3"], "prediction": sts}).to_csv(folder / "sts-test.csv", index=False)


def test_every_run_is_scored_against_the_labels(tmp_path):
    raw = labelled_tests(tmp_path)
    predictions(tmp_path, "concat-s0", [4, 1], [1, 0], [1.0, 4.0, 2.0])
    predictions(tmp_path, "ensemble", [4, 0], [0, 0], [4.0, 1.0, 2.0])
    frame = score_test(raw, tmp_path / "predictions").set_index("run")
    assert frame.loc["concat-s0", "sst"] == 0.5 and frame.loc["concat-s0", "qqp"] == 1.0
    assert frame.loc["concat-s0", "sts"] == pytest.approx(1.0)
    assert frame.loc["concat-s0", "overall"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert frame.loc["ensemble", "sst"] == 1.0 and frame.loc["ensemble", "qqp"] == 0.5
    assert frame.loc["ensemble", "n_sts"] == 3


def test_the_shipped_unlabelled_files_are_refused_by_name(tmp_path):
    predictions(tmp_path, "concat-s0", [4, 1], [1, 0], [1.0, 4.0, 2.0])
    with pytest.raises(ScoringError, match=r"ids-sst-test-student\.csv: no 'sentiment' column"):
        score_test(FIXTURES, tmp_path / "predictions")
