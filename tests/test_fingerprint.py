"""smartmtl.app.fingerprint on small projects: what changes a fingerprint and what does not.

(tests/test_dvc_deps.py checks the real project's wiring; tests/test_staleness.py what DVC then reruns.)
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from smartmtl.app.fingerprint import FingerprintError, covered_files, file_hash, fingerprint, write_fingerprints

SMART = '''\
"""SMART's regulariser."""

from __future__ import annotations

STEPS = 1  # one ascent step


def perturb(x, scale=1e-5):
    """Nudge x."""
    return x + scale * STEPS
'''

SAME_SMART = '''\
"""SMART's regulariser, with a longer docstring.

Now on two lines.
"""
# A comment added on its own line.
from __future__ import annotations

STEPS = (
    1
)


def perturb(x,
            scale=1e-5):  # the default
    # The body's comment.
    return x + scale * STEPS  # noqa
'''


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write(tmp_path, {
        "src/smartmtl/__init__.py": "",
        "src/smartmtl/train/__init__.py": "",
        "src/smartmtl/train/smart.py": SMART,
        "src/smartmtl/train/loop.py": """
            from smartmtl.train import smart

            def train():
                from smartmtl import presets  # imported inside a function: still run
                return smart.perturb(presets.read())
        """,
        "src/smartmtl/presets.py": "def read():\n    return open('presets/paper.yaml').read()\n",
        "src/smartmtl/presets/paper.yaml": "# the paper's settings\nlr: 1.0e-5  # as in the paper\nseeds: [0, 1]\n",
        "src/smartmtl/results/__init__.py": "",
        "src/smartmtl/results/report.py": "TITLE = 'Table 2'\n",
        "stages/finetune.py": "from smartmtl.train.loop import train\n\ntrain()\n",
        "stages/report.py": "import smartmtl.results.report\n",
        "stages/fingerprint.py": "from smartmtl.app import fingerprint\n",
    })


def test_a_script_covers_itself_its_import_closure_their_packages_and_the_data_they_read(project: Path):
    assert [str(path) for path in covered_files(project / "stages" / "finetune.py", project)] == [
        "stages/finetune.py",
        "src/smartmtl/__init__.py",
        "src/smartmtl/presets/paper.yaml",
        "src/smartmtl/presets.py",
        "src/smartmtl/train/__init__.py",
        "src/smartmtl/train/loop.py",
        "src/smartmtl/train/smart.py",
    ]
    assert [str(path) for path in covered_files(project / "stages" / "report.py", project)] == [
        "stages/report.py", "src/smartmtl/__init__.py", "src/smartmtl/results/__init__.py",
        "src/smartmtl/results/report.py"]


def test_comments_docstrings_and_layout_do_not_change_a_hash(project: Path):
    path = project / "src/smartmtl/train/smart.py"
    before = file_hash(path)
    path.write_text(SAME_SMART)
    assert file_hash(path) == before


def test_a_changed_constant_or_statement_changes_the_hash(project: Path):
    path = project / "src/smartmtl/train/smart.py"
    before = file_hash(path)
    for edit in (SMART.replace("STEPS = 1", "STEPS = 2"), SMART.replace("scale=1e-5", "scale=1e-6"),
                 SMART.replace("x + scale", "x - scale"), SMART + "\nEXTRA = None\n",
                 SMART.replace('    """Nudge x."""\n', '    """Nudge x."""\n    print("nudged")\n')):
        path.write_text(edit)
        assert file_hash(path) != before, edit


def test_a_string_that_is_not_a_docstring_counts(project: Path):
    path = project / "src/smartmtl/results/report.py"
    before = file_hash(path)
    path.write_text("TITLE = 'Table 3'\n")
    assert file_hash(path) != before


def test_yaml_comments_and_layout_do_not_count_but_values_do(project: Path):
    path = project / "src/smartmtl/presets/paper.yaml"
    before = file_hash(path)
    path.write_text("seeds:\n  - 0\n  - 1\n# moved\nlr: 0.00001\n")
    assert file_hash(path) == before
    path.write_text("lr: 2.0e-5\nseeds: [0, 1]\n")
    assert file_hash(path) != before


def test_only_the_fingerprints_of_scripts_that_run_an_edited_file_change(project: Path):
    written = write_fingerprints(project)
    assert [path.name for path in written] == ["finetune.txt", "report.txt"]  # none for the fingerprint stage
    before = {path.name: path.read_bytes() for path in written}
    (project / "src/smartmtl/train/smart.py").write_text(SAME_SMART)
    assert {path.name: path.read_bytes() for path in write_fingerprints(project)} == before
    (project / "src/smartmtl/train/smart.py").write_text(SMART.replace("STEPS = 1", "STEPS = 2"))
    after = {path.name: path.read_bytes() for path in write_fingerprints(project)}
    assert after["report.txt"] == before["report.txt"] and after["finetune.txt"] != before["finetune.txt"]
    changed = set(after["finetune.txt"].decode().splitlines()) - set(before["finetune.txt"].decode().splitlines())
    assert [line.split("  ")[1] for line in changed] == ["src/smartmtl/train/smart.py"]  # the diff names the file


def test_the_hash_ignores_positions_but_sees_indentation_that_changes_the_code(project: Path):
    path = project / "src/smartmtl/train/smart.py"
    path.write_text("def f(x):\n    if x:\n        x = 1\n    return x\n")
    before = file_hash(path)
    path.write_text("\n\ndef f(x):\n  if x:\n    x = 1\n  return x\n")
    assert file_hash(path) == before
    path.write_text("def f(x):\n    if x:\n        x = 1\n        return x\n")
    assert file_hash(path) != before


def test_a_syntax_error_names_the_file_and_line(project: Path):
    path = project / "src/smartmtl/train/smart.py"
    path.write_text("x = 1\ndef broken(:\n")
    with pytest.raises(FingerprintError, match=r"src/smartmtl/train/smart\.py:2: cannot be parsed"):
        fingerprint(project / "stages" / "finetune.py", project)
