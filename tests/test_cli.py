"""The `smartmtl` command answers `--help` and `preset` without loading torch (about a second),
and reports a mistake in the input as one line, not a traceback."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_module_does_not_import_torch():
    probe = "import sys, smartmtl.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_mistake_in_the_input_is_one_line_and_exit_status_1(tmp_path):
    from typer.testing import CliRunner

    from smartmtl.cli import app

    result = CliRunner().invoke(app, ["preset", "no_such_preset", "--output", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1
    assert result.stderr.startswith("preset: unknown preset 'no_such_preset'") and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["score-test", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and result.stderr.startswith("score-test: ") and "nowhere" in result.stderr
    assert not (tmp_path / "params.yaml").exists()


def test_train_group_names_an_unknown_row_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from smartmtl import presets
    from smartmtl.cli import app

    presets.write("smoke", tmp_path / "params.yaml")
    result = CliRunner().invoke(app, ["train-group", "no_such_row", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1
    assert result.stderr.startswith("train-group: ") and "no_such_row" in result.stderr
    assert "Traceback" not in result.output
