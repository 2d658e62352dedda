"""dvc.yaml wires each stage to the code it runs through its fingerprint file: the first stage,
``fingerprint``, depends on all the code and writes fingerprints/<script>.txt per stage script
(:mod:`smartmtl.app.fingerprint`); every other stage depends on its script's fingerprint and on
no code file, so that a comment reruns nothing but an edit of what a stage runs reruns it.

`make deps` (`python tests/test_dvc_deps.py`) drops from dvc.lock the entries of stages dvc.yaml
no longer defines (a renamed stage, a shrunk sweep): DVC keeps them (treeverse/dvc#5293), and it
rereads and rewrites the whole lock file after every stage it runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smartmtl.app.fingerprint import (
    FINGERPRINTS,
    PACKAGE,
    PACKAGE_DATA,
    fingerprint,
    fingerprint_path,
    module_closure,
    module_file,
    stage_scripts,
)

ROOT = Path(__file__).resolve().parents[1]


def dvc_stages() -> dict[str, dict]:
    """Every stage of dvc.yaml, by name, as written (a matrix stage once)."""
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def script_of(stage: dict) -> str:
    return re.search(r"stages/\w+\.py", stage["cmd"]).group(0)


def paths(entries: list) -> list[str]:
    """The paths of a deps or outs list (an entry is a path, or a path with options)."""
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]


WORK_STAGES = {name: stage for name, stage in dvc_stages().items() if name != "fingerprint"}


def test_every_stage_is_found():
    assert set(WORK_STAGES) >= {"prepare", "pretrain", "finetune", "grid", "sst_lambda", "ensemble", "analyze", "report"}


def test_the_import_walk_sees_through_modules():
    # runner imports loop, which imports smart: the walk must reach smart from the stage.
    closure = module_closure(ROOT / "stages" / "finetune.py", ROOT)
    assert {"train.runner", "train.loop", "train.smart", "train.pcgrad"} <= closure


@pytest.mark.parametrize("script", stage_scripts(ROOT), ids=lambda path: path.stem)
def test_no_stage_imports_a_fused_module(script):
    # smartmtl.fused trains on a GPU only, outside DVC's stages (`make groups`).
    assert not {name for name in module_closure(script, ROOT) if name.split(".")[0] == "fused"}


def test_every_folder_of_the_package_is_claimed_by_the_module_that_reads_it():
    package = ROOT / PACKAGE
    folders = {path.name for path in package.iterdir()
               if path.is_dir() and path.name != "__pycache__" and not (path / "__init__.py").exists()}
    assert folders == set(PACKAGE_DATA.values())
    for module, folder in PACKAGE_DATA.items():
        assert folder in module_file(module, ROOT).read_text(), f"{module}.py does not read {folder}"


def test_the_fingerprint_stage_depends_on_all_the_code_and_writes_one_file_per_script():
    stage = dvc_stages()["fingerprint"]
    assert stage["cmd"] == "python stages/fingerprint.py"
    assert sorted(paths(stage["deps"])) == ["src/smartmtl", "stages"]
    assert paths(stage["outs"]) == [str(fingerprint_path(script)) for script in stage_scripts(ROOT)]
    # Committed to git, not DVC's cache: a fresh clone has them, and `dvc status` is clean there.
    assert all(options == {"cache": False} for out in stage["outs"] for options in out.values())


@pytest.mark.parametrize("name", sorted(WORK_STAGES))
def test_each_stage_depends_on_its_scripts_fingerprint_and_on_no_code_file(name):
    deps = paths(WORK_STAGES[name]["deps"])
    assert deps[0] == str(fingerprint_path(script_of(WORK_STAGES[name]))), name
    assert [dep for dep in deps if dep.startswith(("src/", "stages/", f"{FINGERPRINTS}/"))] == deps[:1], name


@pytest.mark.parametrize("script", stage_scripts(ROOT), ids=lambda path: path.stem)
def test_each_fingerprint_covers_exactly_the_files_its_script_runs(script):
    closure = module_closure(script, ROOT)
    packages = {".".join(name.split(".")[:depth]) for name in closure for depth in range(len(name.split(".")))}
    expected = {str(script.relative_to(ROOT))}
    expected |= {str(module_file(name, ROOT).relative_to(ROOT)) for name in closure}
    expected |= {str((ROOT / PACKAGE / package.replace(".", "/") / "__init__.py").relative_to(ROOT))
                 for package in packages}
    expected |= {str(path.relative_to(ROOT)) for name in closure if name in PACKAGE_DATA
                 for path in (ROOT / PACKAGE / PACKAGE_DATA[name]).glob("*.yaml")}
    listed = [line.split("  ", 1)[1] for line in fingerprint(script, ROOT).splitlines() if not line.startswith("#")]
    assert len(listed) == len(set(listed)) and set(listed) == expected
    committed = ROOT / fingerprint_path(script)
    assert committed.exists(), f"{committed} is not written: run `dvc repro fingerprint` and commit it"


def test_the_committed_lock_records_the_code_and_fingerprints_of_this_checkout():
    # Else a fresh clone's `dvc status` reports the fingerprint stage as changed, and `dvc repro`
    # reruns it for an edit that was already committed.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["dvc", "status", "--json", "fingerprint"], cwd=ROOT, env=env, capture_output=True,
                            text=True, check=True)
    assert json.loads(result.stdout) == {}, (
        f"dvc.lock is behind src/ or stages/ ({result.stdout.strip()}): run `dvc repro fingerprint` "
        "and commit dvc.lock with the edit")


_LOCK_ENTRY = re.compile(r"^  (\S+):$")


def without_stale_entries(lock_text: str, defined: set[str]) -> str:
    """dvc.lock's text without the entries of stages not in ``defined``; other lines are kept as
    they are, so DVC's own formatting survives."""
    kept, keep = [], True
    for line in lock_text.splitlines(keepends=True):
        if match := _LOCK_ENTRY.match(line.rstrip("\n")):
            keep = match.group(1) in defined
        elif not line.startswith("  "):  # a top-level key (schema, stages)
            keep = True
        if keep:
            kept.append(line)
    return "".join(kept)


def defined_stages() -> set[str]:
    """Every stage name dvc.yaml defines, matrix items expanded (finetune-descriptive@baseline-0, ...)."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {stage.addressing for stage in repo.index.stages if stage.relpath == "dvc.yaml"}


LOCK_EXAMPLE = """schema: '2.0'
stages:
  prepare:
    cmd: python stages/prepare.py
    deps:
    - path: data/raw
  finetune@concat_smart-0:
    cmd: python stages/finetune.py variant concat_smart --seed 0
  finetune-smart@concat_smart-0:
    cmd: python stages/finetune.py variant concat_smart --seed 0
    outs:
    - path: models/concat_smart-s0
"""


def test_stale_lock_entries_are_dropped_and_nothing_else():
    defined = {"prepare", "finetune-smart@concat_smart-0"}
    pruned = without_stale_entries(LOCK_EXAMPLE, defined)
    expected = yaml.safe_load(LOCK_EXAMPLE)
    del expected["stages"]["finetune@concat_smart-0"]
    assert yaml.safe_load(pruned) == expected
    assert without_stale_entries(pruned, defined) == pruned
    assert without_stale_entries(LOCK_EXAMPLE, defined | {"finetune@concat_smart-0"}) == LOCK_EXAMPLE


def test_defined_stages_are_dvc_yamls_stages_with_each_matrix_item_expanded():
    from smartmtl.config import load_params
    from smartmtl.variants import planned_runs

    params = load_params(ROOT / "params.yaml")
    defined = defined_stages()
    expanded = {name for name in defined if "@" in name}
    assert defined - expanded == {"fingerprint", "prepare", "pretrain", "ensemble", "analyze", "report"}
    assert {name.split("@")[0] for name in expanded} == {"finetune-descriptive", "finetune", "finetune-smart", "grid",
                                                         "table2-cell", "sst_lambda"}
    # One stage per run the sweep plans, and one table2-cell stage per seed: it trains only the
    # seeds of Table 2's cell that the grid does not train.
    cells = {name for name in expanded if name.startswith("table2-cell@")}
    assert len(cells) == len(params.sweep.seeds)
    planned = planned_runs(params)
    assert len(expanded - cells) == len([spec for spec in planned if not spec.name.startswith("table2-cell")])
    assert f"finetune-descriptive@baseline-{params.sweep.descriptive_seeds[0]}" in expanded


if __name__ == "__main__":  # make deps
    lock = ROOT / "dvc.lock"
    if lock.exists():
        before = lock.read_text()
        after = without_stale_entries(before, defined_stages())
        lock.write_text(after)
        print("dvc.lock: " + (f"entries of stages dvc.yaml no longer defines dropped ({len(before) - len(after):,} bytes)"
                              if after != before else "no stale entries"), file=sys.stderr)
