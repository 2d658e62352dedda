"""End to end: `dvc exp run` with a dropout off the smoke grid trains Table 2's
Concat+SMART+Pretrain row as a run of its own (the table2-cell stage); once the grid gains that
dropout, the grid's run is the row again. A project of its own, apart from test_pipeline.py's:
model.dropout reruns every stage, and as a file of its own `pytest -n` runs it beside the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from smoke_project import make_smoke_project
from test_pipeline import sh

pytestmark = pytest.mark.slow


def _table2_pretrain_row(project: Path) -> pd.Series:
    table = pd.read_csv(project / "metrics" / "tables" / "table2_methods.csv").set_index("Model")
    return table.loc["Concat+SMART+Pretrain"]


def _dev_overall(project: Path, run: str) -> float:
    return json.loads((project / "metrics" / "finetune" / f"{run}.json").read_text())["dev"]["overall"]


def test_an_experiment_off_the_grid_trains_table2s_pretrain_row_as_a_run_of_its_own(tmp_path: Path):
    """`dvc exp run -S model.dropout=0.2`, where the smoke grid has dropout 0.1 and 0.3; then the
    grid gains 0.2, and its run is the row again. A project of its own: the whole pipeline runs."""
    project = make_smoke_project(tmp_path / "project")
    run = sh("dvc", "exp", "run", "-S", "model.dropout=0.2", cwd=project).stdout
    assert "Running stage 'table2-cell@0'" in run and "Running stage 'grid@0.2" not in run
    spec = json.loads((project / "models" / "table2-cell-s0" / "run.json").read_text())["spec"]
    assert (spec["dropout"], spec["lambda_s"], spec["pretrained"], spec["smart"]) == (0.2, 1.0, True, True)
    row = _table2_pretrain_row(project)
    assert row["Our row"] == "table2-cell (dropout=0.2, lambda_s=1)"
    assert row["Overall"] == pytest.approx(_dev_overall(project, "table2-cell-s0"))
    assert "| table2-cell (dropout=0.2, lambda_s=1)" in (project / "metrics" / "report.md").read_text()
    claims = pd.read_csv(project / "metrics" / "tables" / "table5_claims.csv")
    assert (claims[claims["Claim"].str.startswith("QQP pretraining helps")]["n"] == 1).all()
    changed = json.loads(sh("dvc", "status", "--json", cwd=project).stdout)
    assert not [stage for stage in changed if not stage.endswith(".dvc")], changed

    sh("git", "add", "-A", cwd=project)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "off the grid", cwd=project)
    run = sh("dvc", "exp", "run", "-S", "sweep.dropout=[0.1,0.2,0.3]", cwd=project).stdout
    assert "Running stage 'grid@0.2-1.0-0'" in run and "Running stage 'finetune" not in run
    row = _table2_pretrain_row(project)
    assert row["Our row"] == "grid-d0.2-l1.0 (dropout=0.2, lambda_s=1)"
    assert row["Overall"] == pytest.approx(_dev_overall(project, "grid-d0.2-l1.0-s0"))
    # The table2-cell stage trained nothing: its outputs are empty, and stay (DVC would rerun it otherwise).
    assert not any((project / "models" / "table2-cell-s0").iterdir())
    assert json.loads((project / "metrics" / "finetune" / "table2-cell-s0.json").read_text()) == {
        "same_as": "grid-d0.2-l1.0-s0"}
    changed = json.loads(sh("dvc", "status", "--json", cwd=project).stdout)
    assert not [stage for stage in changed if not stage.endswith(".dvc")], changed
