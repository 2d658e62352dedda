"""dvc.yaml must list, for every stage, each of our modules its script imports (directly or
through other modules): a change to an unlisted module would leave `dvc repro` thinking the
stage's outputs are current. DVC cannot append a shared list to a stage's deps, so the
lists are written out per stage, and this test keeps them complete."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "smartmtl"


def imported_modules(path: Path) -> set[str]:
    """The smartmtl modules ``path`` imports itself (``smartmtl.x`` -> ``x``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "smartmtl":
            if node.module == "smartmtl":  # from smartmtl import a, b
                names.update(alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").exists())
            else:
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("smartmtl."))
    return names


def module_closure(script: Path) -> set[str]:
    seen, todo = set(), list(imported_modules(script))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(PACKAGE / f"{name}.py"))
    return seen


def stages() -> list[tuple[str, str, list[str]]]:
    """(stage name, script, deps) for every stage of dvc.yaml."""
    found = []
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        script = re.search(r"stages/\w+\.py", body["cmd"]).group(0)
        found.append((name, script, [dep if isinstance(dep, str) else next(iter(dep)) for dep in body["deps"]]))
    return found


def test_every_stage_is_found():
    assert {name for name, _, _ in stages()} >= {"prepare", "pretrain", "finetune", "grid", "sst_lambda",
                                                  "ensemble", "analyze", "report"}


def test_the_import_walk_sees_through_modules():
    # runner imports train, which imports smart: the walk must reach smart from the stage.
    assert {"runner", "train", "smart", "pcgrad"} <= module_closure(ROOT / "stages" / "finetune.py")


@pytest.mark.parametrize("name,script,deps", stages(), ids=[s[0] for s in stages()])
def test_stage_lists_its_script_and_every_module_it_imports(name, script, deps):
    assert script in deps, f"stage {name}: {script} is not among its deps"
    missing = sorted(f"src/smartmtl/{module}.py" for module in module_closure(ROOT / script)
                     if f"src/smartmtl/{module}.py" not in deps)
    assert not missing, f"stage {name} imports modules dvc.yaml does not list as its deps: {missing}"
