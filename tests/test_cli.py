"""The `smartmtl` command answers `--help` and `preset` without loading torch (about a second),
and reports a mistake in the input as one line, not a traceback."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_module_does_not_import_torch():
    probe = "import sys, smartmtl.app.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_mistake_in_the_input_is_one_line_and_exit_status_1(tmp_path):
    from typer.testing import CliRunner

    from smartmtl.app.cli import app

    result = CliRunner().invoke(app, ["preset", "no_such_preset", "--output", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1
    assert result.stderr.startswith("preset: unknown preset 'no_such_preset'") and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["score-test", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and result.stderr.startswith("score-test: ") and "nowhere" in result.stderr
    assert not (tmp_path / "params.yaml").exists()


def test_train_group_names_an_unknown_row_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from smartmtl import presets
    from smartmtl.app.cli import app

    presets.write("smoke", tmp_path / "params.yaml")
    result = CliRunner().invoke(app, ["train-group", "no_such_row", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1
    assert result.stderr.startswith("train-group: ") and "no_such_row" in result.stderr
    assert "Traceback" not in result.output


def test_train_group_table3_and_figure3_are_the_pipelines_runs_of_those_stages(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from smartmtl import presets
    from smartmtl.app.cli import app
    from smartmtl.config import load_params
    from smartmtl.fused import group as fused
    from smartmtl.variants import planned_runs

    trained = []
    monkeypatch.setattr(fused, "run_group",
                        lambda specs, params, layout: trained.append(specs) or [{"dev": {}}] * len(specs))
    monkeypatch.chdir(tmp_path)  # where the table3 group writes table2-cell's untrained runs
    presets.write("laptop", tmp_path / "params.yaml")  # on the grid: table2-cell trains more seeds of a cell
    for group in ("table3", "figure3"):
        result = CliRunner().invoke(app, ["train-group", group, "--params", str(tmp_path / "params.yaml")])
        assert result.exit_code == 0, result.output
    planned = planned_runs(load_params(tmp_path / "params.yaml"))
    table3, figure3 = trained
    assert table3 == [spec for spec in planned if spec.kind == "grid"]
    assert figure3 == [spec for spec in planned if spec.kind == "sst_lambda"]
    assert any(spec.name.startswith("table2-cell") for spec in table3)
    assert len({(spec.dropout, spec.lambda_s) for spec in table3}) > 1
    # table2-cell's runs the grid trains: its outputs, as the stage writes them (outputs.write_untrained)
    untrained = sorted(path.name for path in (tmp_path / "metrics" / "finetune").glob("table2-cell-s*.json"))
    cell_seeds = {spec.seed for spec in table3 if spec.name.startswith("table2-cell")}
    settings = load_params(tmp_path / "params.yaml")
    assert untrained == [f"table2-cell-s{seed}.json" for seed in settings.sweep.seeds if seed not in cell_seeds]
    assert untrained and (tmp_path / "models" / "table2-cell-s0").is_dir()
