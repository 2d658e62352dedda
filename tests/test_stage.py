"""Every stage script imports with the garbage collector off, and works with it on (smartmtl.app.stage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from smartmtl import presets

ROOT = Path(__file__).resolve().parents[1]

# In a child process, so that this test process keeps its own collector as it is.
PROBE = """
import gc, importlib.util, json, sys
from smartmtl.app.stage import stage_context

found = {}
for script in sys.argv[2:]:
    gc.enable()
    gc.unfreeze()  # so that each script's count is its own freeze
    spec = importlib.util.spec_from_file_location("stage_script", script)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    found[script] = {"collecting after its imports": gc.isenabled()}
    with stage_context("probe", sys.argv[1]):
        found[script].update({"collecting in its work": gc.isenabled(), "frozen": gc.get_freeze_count()})
print(json.dumps(found))
"""


def test_each_stage_script_imports_without_collecting_then_works_with_imports_frozen(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(presets.render("smoke")))
    # The fingerprint stage reads source files only (no torch, no pandas): nothing to keep out
    # of collections, so it is left as a plain script.
    scripts = sorted(str(path) for path in (ROOT / "stages").glob("*.py") if path.name != "fingerprint.py")
    assert len(scripts) == 6
    child = subprocess.run([sys.executable, "-c", PROBE, str(params), *scripts],
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    for script, state in json.loads(child.stdout).items():
        assert state["collecting after its imports"] is False, script
        assert state["collecting in its work"] is True, script
        assert state["frozen"] > 10_000, script  # at least torch's or pandas' objects, kept out of collections
