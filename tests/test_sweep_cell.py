"""bench/sweep_cell.py: the what-if tool trains one pretraining per setting and scores every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Several trainings in subprocesses (about five minutes here): run by `make test-all`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "sweep_cell.py"
RAW = ROOT / "tests" / "fixtures" / "raw"


def sweep(out: Path, *runs: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--preset", "smoke", "--raw-dir", str(RAW), "--out", str(out),
                           *runs, *extra], capture_output=True, text=True, cwd=ROOT)


def test_seed_and_dropout_overrides_share_one_pretraining_and_runs_are_ensembled(tmp_path: Path):
    result = sweep(tmp_path, "a:", "b:train.seed=1,model.dropout=0.1", "c:train.lr=2e-5",
                   extra=("--ensemble", "a,b,c"))
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"a", "b", "c", "ensemble(a,b,c)"}
    for record in results.values():
        assert 0 <= record["overall"] <= 1
    assert results["b"]["overrides"] == "train.seed=1,model.dropout=0.1"
    # a and b share the pretraining (seed and dropout vary only the cell); c's lr changes it.
    assert len(list(tmp_path.glob("pretrain-*.safetensors"))) == 2
    assert result.stdout.count("pretraining for") == 2


def test_an_unknown_key_is_named(tmp_path: Path):
    result = sweep(tmp_path, "x:trian.lr=1")
    assert result.returncode != 0
    assert "'trian.lr' is not a parameter" in result.stderr
