"""The package's layout follows the pipeline, and these tests keep it that way.

Each package may import the shared modules at the top of ``smartmtl`` and the packages of the
pipeline's earlier steps, never a later one: data is read before a model exists, a model before
it is trained, and the results (tables, statistics, figures) read what training wrote without
touching a tensor, so the stages that only make tables never pay for importing torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "smartmtl"

# What each package may import besides itself; "shared" is the modules at the top of smartmtl.
MAY_IMPORT = {
    "shared": {"shared"},
    "data": {"shared"},
    "model": {"shared", "data"},
    "train": {"shared", "data", "model"},
    "results": {"shared", "data"},
    "fused": {"shared", "data", "model", "train", "results"},
    "app": {"shared", "data", "model", "train", "fused", "results"},
}
# Packages whose modules must import without torch: the stages that read and tabulate.
WITHOUT_TORCH = ("results", "data")


def package_of(dotted: str) -> str:
    """The package a ``smartmtl...`` module belongs to ("shared" for the top-level modules)."""
    parts = dotted.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1] / "__init__.py").exists():
        return parts[1]
    return "shared"


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def dotted_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every smartmtl module ``path`` imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smartmtl"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("smartmtl"))
    return {name for name in names if name != "smartmtl"}


def test_the_packages_are_the_pipelines_steps():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(MAY_IMPORT) - {"shared"}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_package_imports_only_earlier_steps_of_the_pipeline(path):
    own = package_of(dotted_name(path))
    later = {name for name in imported(path) if package_of(name) not in MAY_IMPORT[own] | {own}}
    assert not later, f"{path.relative_to(PACKAGE)} ({own}) imports {sorted(later)}, a later step of the pipeline"


def test_the_layering_check_sees_a_backward_import(tmp_path):
    # The rule above must be able to fail: a results module importing the training loop.
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from smartmtl.train.loop import train\n")
    assert {package_of(name) for name in imported(module)} == {"train"}
    assert "train" not in MAY_IMPORT["results"]


@pytest.mark.parametrize("package", WITHOUT_TORCH)
def test_reading_and_tabulating_never_import_torch(package):
    names = [dotted_name(p) for p in modules() if package_of(dotted_name(p)) == package]
    assert names
    code = f"import sys\nfor name in {names!r}:\n    __import__(name)\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", f"importing smartmtl.{package} loads torch"
