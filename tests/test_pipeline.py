"""End to end: the real `dvc repro` on the smoke preset in a throwaway copy of the project.

It checks what a user relies on: every table, figure and metrics file appears with sane
values; a second `dvc repro` does nothing; changing one grid value or adding a seed reruns
only what depends on it; a bad variant name fails with a message naming what exists; an
experiment runs, lists and compares. (An experiment off the grid: test_experiment_off_grid.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from smoke_project import make_smoke_project

TRAINING_STAGES = {"pretrain", "finetune-descriptive", "finetune", "finetune-smart", "grid", "table2-cell", "sst_lambda"}

pytestmark = pytest.mark.slow


def sh(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = make_smoke_project(tmp_path_factory.mktemp("pipeline") / "project")
    sh("dvc", "repro", cwd=project)
    return project


def test_every_table_figure_and_metric_appears(project: Path):
    tables = project / "metrics" / "tables"
    for name in ("table1_data", "table2_methods", "table3_grid", "table4_ensemble", "table5_claims"):
        assert (tables / f"{name}.md").read_text().strip(), name
        assert not pd.read_csv(tables / f"{name}.csv").empty, name
    for figure in ("fig3_lambda_sst", "fig4_sst_confusion", "fig4_sts_scatter", "training_curves", "table5_claims"):
        assert (project / "plots" / f"{figure}.png").stat().st_size > 10_000, figure
    report = (project / "metrics" / "report.md").read_text()
    assert "Table 2" in report and "../plots/fig4_sts_scatter.png" in report

    ensemble = json.loads((project / "metrics" / "ensemble.json").read_text())
    assert len(ensemble["members"]) == 2
    dev = ensemble["dev"]
    assert 0 <= dev["sst"] <= 1 and 0 <= dev["qqp"] <= 1 and -1 <= dev["sts"] <= 1
    assert dev["overall"] == pytest.approx((dev["sst"] + dev["qqp"] + (dev["sts"] + 1) / 2) / 3)
    assert "test" not in ensemble  # the shipped test files carry no labels

    finetuned = {path.stem for path in (project / "metrics" / "finetune").glob("*.json")}
    assert {"pretrain", "baseline-s0", "cos_sim-s0", "concat-s0", "concat_smart-s0", "concat_smart_star-s0",
            "concat_star-s0", "concat_smart_surgery_pretrain-s0", "grid-d0.1-l1.0-s0", "grid-d0.3-l1.0-s0",
            "sst-l1.0-s0", "sst-l5.0-s0"} <= finetuned
    predictions = pd.read_csv(project / "predictions" / "ensemble" / "qqp-test.csv")
    assert list(predictions.columns) == ["id", "prediction"] and set(predictions["prediction"]) <= {0, 1}


def test_metrics_show_the_headline_and_plots_draw_without_warnings(project: Path):
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=project).stdout)
    files = shown[""]["data"]
    assert list(files) == ["metrics/summary.json"]  # numbers only; bookkeeping is in plain outputs
    summary = files["metrics/summary.json"]["data"]
    assert set(summary["dev_ensemble"]) == {"sst", "qqp", "sts", "overall"}
    assert "grid-d0.1-l1.0" in summary["dev_overall"] and "sst-l5.0" in summary["dev_sst"]
    plots = sh("dvc", "plots", "show", "--json", cwd=project)
    assert not plots.stderr.strip(), plots.stderr  # no warnings
    charts = json.loads(plots.stdout)["data"]
    assert 5 <= len(charts) <= 20, list(charts)
    overall = next(value for key, value in charts.items() if key.startswith("Dev overall"))
    series = {point["series"] for point in overall[0]["content"]["data"]["values"]}
    assert {"baseline", "grid-d0.1-l1.0", "concat_smart_star"} <= series  # one line per model


def test_second_repro_does_nothing_and_a_grid_change_reruns_only_its_dependents(project: Path):
    again = sh("dvc", "repro", cwd=project).stdout
    assert "Running stage" not in again

    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("- 0.1\n", "- 0.2\n", 1))
    changed = set(json.loads(sh("dvc", "status", "--json", cwd=project).stdout))
    assert "grid@0.2-1.0-0" in changed
    # table2-cell reads the grid to know whether it trains (here it does not); Table 2's rows do not read it.
    assert not {stage for stage in changed
                if stage.split("@")[0] in {"prepare", *TRAINING_STAGES} - {"grid", "table2-cell"}}
    (project / "params.yaml").write_text(params)


def test_settings_that_cannot_change_a_model_retrain_nothing(project: Path):
    params = (project / "params.yaml").read_text()
    for old, new in (("eval_batch_size: 256", "eval_batch_size: 128"), ("sigma: 0.01", "sigma: 0.02")):
        assert old in params, old
        (project / "params.yaml").write_text(params.replace(old, new, 1))
        changed = set(json.loads(sh("dvc", "status", "--json", cwd=project).stdout))
        (project / "params.yaml").write_text(params)
        training = {stage for stage in changed if stage.split("@")[0] in TRAINING_STAGES}
        if new.startswith("eval"):
            assert not training, training
        else:  # SMART's settings retrain the runs with SMART, not the others nor the QQP pretraining.
            assert {"finetune-smart@concat_smart-0", "grid@0.1-1.0-0", "sst_lambda@1.0-0"} <= training, training
            assert not {stage for stage in training if stage.startswith("finetune@")}, training
            assert "pretrain" not in changed


def test_a_sweep_written_with_integers_is_refused_before_any_work(project: Path):
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("sst_lambda_s:\n  - 0.0\n  - 1.0\n", "sst_lambda_s:\n  - 0.0\n  - 1\n", 1))
    result = sh("python", "stages/finetune.py", "sst-lambda", "--lambda-s", "1", "--seed", "0", cwd=project, check=False)
    (project / "params.yaml").write_text(params)
    assert result.returncode == 1 and "sweep.sst_lambda_s" in result.stderr and "write 1.0, not 1" in result.stderr


def test_a_new_seed_adds_only_its_own_training_stages(project: Path):
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("  seeds:\n  - 0\n", "  seeds:\n  - 0\n  - 1\n", 1))
    changed = set(json.loads(sh("dvc", "status", "--json", cwd=project).stdout))
    (project / "params.yaml").write_text(params)
    training = {stage for stage in changed if stage.split("@")[0] in TRAINING_STAGES}
    # table2-cell@0 reads sweep.seeds to know what it trains: it runs again, and trains nothing
    # (on the grid, seed 0 is the grid's). The descriptive rows and the grid keep their one seed.
    new = training - {"table2-cell@0"}
    assert new and all(stage.endswith(("-1", "@1")) for stage in new), sorted(training)
    assert {"finetune@concat-1", "table2-cell@1", "sst_lambda@5.0-1"} <= new
    assert not {stage for stage in new if stage.startswith(("finetune-descriptive@", "grid@"))}, new


def test_unknown_variant_names_what_exists(project: Path):
    result = sh("python", "stages/finetune.py", "variant", "no_such_model", "--seed", "0", cwd=project, check=False)
    assert result.returncode == 1
    assert "no_such_model" in result.stderr and "concat_smart_star" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_prints_all_three_tasks(project: Path):
    result = sh("smartmtl", "predict", "--model", "ensemble", "A fine film.", "A good movie.", cwd=project)
    assert "sentiment:" in result.stdout and "paraphrase:" in result.stdout and "similarity:" in result.stdout
    missing = sh("smartmtl", "predict", "--model", "nope", "x", cwd=project, check=False)
    assert missing.returncode == 1 and "nope" in missing.stderr and "grid-d0.1-l1.0-s0" in missing.stderr


def test_experiment_workflow(project: Path):
    """`dvc exp run -S` runs an experiment that `dvc exp show` lists and `dvc metrics diff` compares;
    the run it drops moves to stale/ and no view shows it."""
    sh("git", "add", "-A", cwd=project)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "smoke results", cwd=project)
    run = sh("dvc", "exp", "run", "-S", "sweep.sst_lambda_s=[0.0,1.0,10.0]", cwd=project).stdout
    assert "Running stage 'sst_lambda@10.0-0'" in run
    assert "Running stage 'grid" not in run and "Running stage 'sst_lambda@1.0-0'" not in run
    shown = json.dumps(json.loads(sh("dvc", "exp", "show", "--json", cwd=project).stdout))
    assert '"sst_lambda_s": [0.0, 1.0, 10.0]' in shown  # the experiment's parameter, as DVC records it
    diff = json.loads(sh("dvc", "metrics", "diff", "--json", cwd=project).stdout)["metrics/summary.json"]
    assert diff["dev_sst.sst-l10.0"]["old"] is None and diff["dev_sst.sst-l5.0"]["new"] is None
    # DVC itself removes the cached outputs (model, predictions) of the stage that no longer
    # exists; the ensemble stage moves the rest (metrics, curves) aside.
    assert (project / "stale" / "metrics" / "finetune" / "sst-l5.0-s0.json").exists()
    assert (project / "stale" / "dvclive" / "sst-l5.0-s0").is_dir()
    for gone in ("metrics/finetune/sst-l5.0-s0.json", "dvclive/sst-l5.0-s0", "models/sst-l5.0-s0"):
        assert not (project / gone).exists(), gone
