"""End to end: after a full `dvc repro` of the smoke project, which stages an edit of the code reruns.

A comment or a docstring anywhere reruns nothing but the fingerprint stage; an edit of a module
only the report stage imports reruns that stage alone; an edit of train/smart.py makes every
training stage stale. Checked both ways: what `dvc status` calls stale once the fingerprints are
current, and which stages `dvc repro` runs (its "Running stage" lines).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from smoke_project import make_smoke_project

pytestmark = pytest.mark.slow

TRAINING_STAGES = {"pretrain", "finetune-descriptive", "finetune", "finetune-smart", "grid", "table2-cell", "sst_lambda"}
ADDED_LINE = "A line the staleness test added."


def sh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # The copy's own code runs (as `make smoke` does), whichever smartmtl the test imports.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(cwd / "src")}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def ran(*args: str, project: Path) -> set[str]:
    """The stages `dvc repro *args` runs, from its output."""
    return set(re.findall(r"Running stage '([^']+)'", sh("dvc", "repro", *args, cwd=project).stdout))


def stale(project: Path) -> set[str]:
    """The stages `dvc status` calls out of date."""
    return set(json.loads(sh("dvc", "status", "--json", cwd=project).stdout or "{}"))


def with_comments_and_docstring_lines(source: str) -> str:
    """``source`` with a line added to every docstring (a docstring added where the module has
    none) and a comment before and after each top-level statement: the same code."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    documented = [node for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and ast.get_docstring(node, clean=False) is not None]
    statements = tree.body[1:] if tree in documented else tree.body
    # Applied bottom up, so that the line numbers above an edit hold; on one line, the comment after
    # the statement before the one above it (a stable sort keeps this list's order).
    edits = [(node.end_lineno, "comment after", node) for node in statements if node.end_lineno == node.lineno]
    edits += [(node.body[0].lineno, "docstring", node.body[0].value) for node in documented]
    edits += [(node.lineno, "comment before", node) for node in statements]
    for lineno, kind, node in sorted(edits, key=lambda edit: edit[0], reverse=True):
        line = lines[lineno - 1]
        if kind == "docstring":
            opening = re.compile(r"[rRuU]?(\"\"\"|\'\'\')").match(line, node.col_offset)
            if opening:
                lines[lineno - 1] = line[:opening.end()] + ADDED_LINE + "\n" + line[opening.end():]
        elif kind == "comment before":
            lines.insert(lineno - 1, " " * node.col_offset + "# A comment the staleness test added.\n")
        else:
            lines[lineno - 1] = line.rstrip("\n") + "  # and another\n"
    if tree not in documented:
        lines.insert(0, f'"""{ADDED_LINE}"""\n')
    return "".join(lines) + "\n\n# A comment at the end.\n"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: {old!r} is not there once; update this test"
    path.write_text(text.replace(old, new))


def test_the_edit_helper_changes_text_but_not_code():
    source = Path(__file__).read_text()
    edited = with_comments_and_docstring_lines(source)
    assert edited != source and ADDED_LINE in edited
    assert ast.dump(ast.parse(edited)) != ast.dump(ast.parse(source))  # docstrings differ...
    from smartmtl.app.fingerprint import canonical, without_docstrings
    assert (canonical(without_docstrings(ast.parse(edited)))  # ...and nothing else
            == canonical(without_docstrings(ast.parse(source))))


def test_only_a_change_of_what_a_stage_runs_reruns_it(tmp_path_factory):
    project = make_smoke_project(tmp_path_factory.mktemp("staleness") / "project")
    sh("dvc", "repro", cwd=project)
    stages = set(sh("dvc", "stage", "list", "--name-only", cwd=project).stdout.split())
    training = {name for name in stages if name.split("@")[0] in TRAINING_STAGES}
    assert len(training) > len(TRAINING_STAGES)  # the matrices are expanded

    # Comments and docstrings everywhere: only the fingerprint stage runs, and writes the same files.
    for path in [*(project / "src").rglob("*.py"), *(project / "stages").glob("*.py")]:
        path.write_text(with_comments_and_docstring_lines(path.read_text()))
    assert stale(project) == {"fingerprint"}
    assert ran(project=project) == {"fingerprint"}
    assert stale(project) == set()

    # A constant of a module only the report imports: the report alone.
    edit(project / "src/smartmtl/results/report.py", '"random": "random weights"', '"random": "random initial weights"')
    assert ran("fingerprint", project=project) == {"fingerprint"}
    assert stale(project) == {"report"}
    assert ran(project=project) == {"report"}

    # A constant of SMART: every training stage (what they write then reruns the stages after them).
    edit(project / "src/smartmtl/train/smart.py", "torch.finfo(torch.float32).tiny", "torch.finfo(torch.float32).tiny * 2")
    assert ran("fingerprint", project=project) == {"fingerprint"}
    assert stale(project) == training
