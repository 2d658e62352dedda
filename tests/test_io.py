"""Prediction files: what a run or the ensemble writes is read back as it was written, and a
malformed file is refused naming the file."""

from __future__ import annotations

import pytest

from smartmtl.errors import UserError
from smartmtl.io import read_predictions, write_predictions


def test_predictions_read_back_as_written_with_ids_as_strings(tmp_path):
    path = tmp_path / "sst-dev.csv"
    write_predictions(["007", "12"], [4, 0], "sst", path)
    frame = read_predictions(path)
    assert frame["id"].tolist() == ["007", "12"]  # not 7: ids match the prepared data's strings
    assert frame["prediction"].tolist() == [4, 0]


@pytest.mark.parametrize("text,reason", [
    ("id,label\na,1\n", r"missing column\(s\) \['prediction'\]"),
    ("id,prediction\na,1\na,0\n", "id 'a' appears more than once"),
])
def test_a_malformed_prediction_file_is_refused_naming_it(tmp_path, text, reason):
    path = tmp_path / "qqp-dev.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=rf"qqp-dev.csv: {reason}"):
        read_predictions(path)
