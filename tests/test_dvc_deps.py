"""dvc.yaml must list, for every stage, exactly the modules its script imports (directly or
through other modules), and the package folders those modules read: an unlisted module would
leave `dvc repro` thinking the stage's outputs are current, a needless one would rerun it for
nothing. DVC cannot append a shared list to a stage's deps, so the lists are written out per
stage, by this file: `python tests/test_dvc_deps.py` (`make deps`) rewrites them; the tests
fail while they differ.

`make deps` also drops from dvc.lock the entries of stages dvc.yaml no longer defines (a
renamed stage, a shrunk sweep): DVC keeps them (treeverse/dvc#5293), and it rereads and
rewrites the whole lock file after every stage it runs."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "smartmtl"
# The package's folders of files read at run time, by the module that reads them: a stage
# importing that module depends on the folder as much as on its code (the report stage prints
# the paper preset's settings from presets/paper.yaml).
PACKAGE_DATA = {"presets": "src/smartmtl/presets"}


def module_file(name: str) -> Path:
    """The file of module ``name``, dotted below the package (``train.loop``)."""
    return PACKAGE / (name.replace(".", "/") + ".py")


def imported_modules(path: Path) -> set[str]:
    """The smartmtl modules ``path`` imports itself, dotted below the package
    (``smartmtl.train.loop`` -> ``train.loop``; ``from smartmtl.train import smart`` -> ``train.smart``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "smartmtl":
            below = node.module.partition(".")[2]
            for alias in node.names:
                submodule = f"{below}.{alias.name}" if below else alias.name
                if module_file(submodule).exists():
                    names.add(submodule)
            if below and module_file(below).exists():
                names.add(below)
        elif isinstance(node, ast.Import):
            names.update(a.name.partition(".")[2] for a in node.names
                         if a.name.startswith("smartmtl.") and module_file(a.name.partition(".")[2]).exists())
    return names


def module_closure(script: Path) -> set[str]:
    seen, todo = set(), list(imported_modules(script))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(module_file(name)))
    return seen


def stages(text: str | None = None) -> list[tuple[str, str, list[str]]]:
    """(stage name, script, deps) for every stage of dvc.yaml (or of ``text``)."""
    found = []
    text = (ROOT / "dvc.yaml").read_text() if text is None else text
    for name, stage in yaml.safe_load(text)["stages"].items():
        body = stage.get("do", stage)
        script = re.search(r"stages/\w+\.py", body["cmd"]).group(0)
        found.append((name, script, [dep if isinstance(dep, str) else next(iter(dep)) for dep in body["deps"]]))
    return found


def test_every_stage_is_found():
    assert {name for name, _, _ in stages()} >= {"prepare", "pretrain", "finetune", "grid", "sst_lambda",
                                                  "ensemble", "analyze", "report"}


def test_the_import_walk_sees_through_modules():
    # runner imports train, which imports smart: the walk must reach smart from the stage.
    assert {"train.runner", "train.loop", "train.smart", "train.pcgrad"} <= module_closure(ROOT / "stages" / "finetune.py")


def module_deps(script: str) -> list[str]:
    """The modules a script imports, and the package folders they read."""
    closure = module_closure(ROOT / script)
    return sorted([str(module_file(module).relative_to(ROOT)) for module in closure]
                  + [PACKAGE_DATA[module] for module in closure if module in PACKAGE_DATA])


def test_every_folder_of_the_package_is_claimed_by_the_module_that_reads_it():
    folders = {f"src/smartmtl/{path.name}" for path in PACKAGE.iterdir()
               if path.is_dir() and path.name != "__pycache__" and not (path / "__init__.py").exists()}
    assert folders == set(PACKAGE_DATA.values())
    for module, folder in PACKAGE_DATA.items():
        assert Path(folder).name in module_file(module).read_text(), f"{module}.py does not read {folder}"


_STAGE = re.compile(r"^  ([\w-]+):$")
_MODULE = re.compile(r"^      - src/smartmtl/[\w/]+(\.py)?$")


def with_module_deps(text: str) -> str:
    """dvc.yaml's text with each stage's module lines replaced by the ones its script needs,
    right after the script's own line; everything else (comments included) is kept."""
    scripts = {name: script for name, script, _ in stages(text)}
    lines, stage = [], None
    for line in text.splitlines():
        if match := _STAGE.match(line):
            stage = match.group(1)
        if _MODULE.match(line):
            continue
        lines.append(line)
        if stage in scripts and line.strip() == f"- {scripts[stage]}":
            lines.extend(f"      - {path}" for path in module_deps(scripts[stage]))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name,script,deps", stages(), ids=[s[0] for s in stages()])
def test_stage_lists_its_script_and_exactly_the_modules_it_imports(name, script, deps):
    assert script in deps, f"stage {name}: {script} is not among its deps"
    listed = sorted(dep for dep in deps if dep.startswith("src/smartmtl/"))
    assert listed == module_deps(script), (f"stage {name}: dvc.yaml lists {listed}, its script imports "
                                           f"{module_deps(script)}; run `make deps`")


@pytest.mark.parametrize("name,script", [(name, script) for name, script, _ in stages()], ids=[s[0] for s in stages()])
def test_no_stage_depends_on_the_fused_groups_code(name, script):
    # The training loop trains a fused group too, but through an object the group passes it:
    # the loop's package imports nothing of fused/, so an edit there reruns no stage.
    assert not {module for module in module_closure(ROOT / script) if module.split(".")[0] == "fused"}, name


def test_make_deps_writes_what_the_test_expects_and_changes_nothing_twice():
    text = (ROOT / "dvc.yaml").read_text()
    once = with_module_deps(text)
    assert with_module_deps(once) == once
    for name, script, deps in stages(once):
        assert sorted(d for d in deps if d.startswith("src/")) == module_deps(script), name


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
    assert defined - expanded == {"prepare", "pretrain", "ensemble", "analyze", "report"}
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
    path = ROOT / "dvc.yaml"
    before = path.read_text()
    after = with_module_deps(before)
    path.write_text(after)
    print("dvc.yaml: module deps " + ("rewritten" if after != before else "already current"), file=sys.stderr)
    lock = ROOT / "dvc.lock"
    if lock.exists():
        before = lock.read_text()
        after = without_stale_entries(before, defined_stages())
        lock.write_text(after)
        print("dvc.lock: " + (f"entries of stages dvc.yaml no longer defines dropped ({len(before) - len(after):,} bytes)"
                              if after != before else "no stale entries"), file=sys.stderr)
