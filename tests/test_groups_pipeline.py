"""End to end, the GPU path run on the CPU: `make groups` on the smoke preset in a throwaway copy
of the project. The fused groups (`smartmtl groups`, each trained by `smartmtl train-group`)
must write exactly the outputs the fine-tuning stages declare, so that `dvc commit` records
them and the `dvc repro` that follows trains nothing, only ensembles, analyses and reports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from smoke_project import make_smoke_project
from test_pipeline import TRAINING_STAGES, sh

pytestmark = pytest.mark.slow


def test_make_groups_trains_every_run_once_and_dvc_repro_trains_nothing_more(tmp_path):
    project = make_smoke_project(tmp_path / "project")
    bin_dir = Path(sys.executable).parent
    # -o setup: the venv running this test is the set-up (the copy has none of its own). One
    # group at a time: on a 2-core CPU two torch processes slow each other (4 min against 2.5).
    made = sh("make", "-o", "setup", "groups", f"BIN={bin_dir}", "GROUPS_AT_ONCE=1", cwd=project).stdout
    groups = sh("smartmtl", "groups", cwd=project).stdout.split()
    assert {"table3", "figure3", "concat_smart_star"} <= set(groups)
    assert [line for line in made.splitlines() if line.endswith(" trained")] != []
    assert {f"group {name} trained" for name in groups} <= set(made.splitlines())

    after_commit = made.split("dvc commit", 1)[1]
    ran = {line.split("'")[1].split("@")[0] for line in after_commit.splitlines() if line.startswith("Running stage")}
    assert ran == {"ensemble", "analyze", "report"}, ran
    assert not ran & TRAINING_STAGES
    assert sh("dvc", "status", cwd=project).stdout.strip() == "Data and pipelines are up to date."
    record = json.loads((project / "metrics" / "finetune" / "grid-d0.1-l1.0-s0.json").read_text())
    assert record["group"] > 1  # trained in a group, not by its stage
