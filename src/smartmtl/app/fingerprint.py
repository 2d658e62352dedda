"""Fingerprints of the code each stage runs, blind to comments, docstrings and layout.

DVC reruns a stage when a file it depends on changes, byte for byte: were a stage to depend on
its modules' files, a new comment would retrain every model. So the first stage of dvc.yaml,
``fingerprint`` (stages/fingerprint.py), depends on the folders src/smartmtl and stages (DVC
reruns it, in about a second, on any edit there) and writes one file per stage script,
``fingerprints/<script>.txt``: a line per file that script runs, with the hash of what that file
does. Every other stage depends on its script's fingerprint file instead of the code, and DVC
skips it when that file comes out byte-identical.

The files a script runs: the script, every ``smartmtl`` module in its import closure (imports
inside functions included) with the packages' ``__init__.py`` on the way, and the package data
folders those modules read (:data:`PACKAGE_DATA`).

What is hashed:

* a Python file: its syntax tree without docstrings, serialised here (:func:`canonical`) rather
  than by :func:`ast.dump`, whose format changed in Python 3.13 (it stopped printing empty
  fields). The serialisation names each node's type and its fields, and leaves out line and
  column numbers and every field that is None or empty: a field a newer Python adds to a node
  (``type_params`` in 3.12) is empty in code that does not use the new syntax, so the same code
  hashes the same on every Python the project supports. A docstring does change ``--help``
  (typer prints a stage function's docstring) but never a result.
* a YAML file: its parsed value, as JSON with sorted keys (comments and layout are not read).
* any other file: its bytes.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import yaml

from smartmtl.errors import UserError

PACKAGE = Path("src") / "smartmtl"
STAGES = Path("stages")
FINGERPRINTS = Path("fingerprints")
THIS_STAGE = "fingerprint"  # stages/fingerprint.py: DVC reruns it on any edit, it needs no fingerprint
# The package's folders of files read at run time, by the module (dotted below the package) that
# reads them: a stage importing that module runs that data as much as its code.
PACKAGE_DATA = {"presets": "presets"}


class FingerprintError(UserError):
    pass


def module_file(name: str, root: Path) -> Path:
    """The file of module ``name``, dotted below the package (``train.loop``), in project ``root``."""
    return root / PACKAGE / (name.replace(".", "/") + ".py")


def parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as error:
        raise FingerprintError(f"{path}:{error.lineno}: cannot be parsed: {error.msg}") from None


def imported_modules(path: Path, root: Path) -> set[str]:
    """The smartmtl modules ``path`` imports itself, dotted below the package
    (``smartmtl.train.loop`` -> ``train.loop``; ``from smartmtl.train import smart`` -> ``train.smart``)."""
    names = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "smartmtl":
            below = node.module.partition(".")[2]
            for alias in node.names:
                submodule = f"{below}.{alias.name}" if below else alias.name
                if module_file(submodule, root).exists():
                    names.add(submodule)
            if below and module_file(below, root).exists():
                names.add(below)
        elif isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[2] for alias in node.names
                         if alias.name.startswith("smartmtl.")
                         and module_file(alias.name.partition(".")[2], root).exists())
    return names


def module_closure(script: Path, root: Path) -> set[str]:
    """Every smartmtl module ``script`` imports, directly or through other modules."""
    seen: set[str] = set()
    todo = list(imported_modules(script, root))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(module_file(name, root), root))
    return seen


def covered_files(script: Path, root: Path) -> list[Path]:
    """The files ``script`` runs, relative to ``root``: itself first, then sorted, the modules
    of its import closure, the ``__init__.py`` of each package on their way, and the files of
    the package data folders they read."""
    closure = module_closure(script, root)
    files = {module_file(name, root) for name in closure}
    for name in closure:
        parts = name.split(".")
        files |= {root / PACKAGE / "/".join(parts[:depth]) / "__init__.py" for depth in range(len(parts))}
        if name in PACKAGE_DATA:
            folder = root / PACKAGE / PACKAGE_DATA[name]
            files |= {path for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    return [script.relative_to(root)] + sorted(path.relative_to(root) for path in files if path.exists())


def canonical(node: object) -> object:
    """A syntax tree as nested lists: each node's type and its non-empty fields, no positions."""
    if isinstance(node, ast.AST):
        return [type(node).__name__, [[name, canonical(value)] for name, value in ast.iter_fields(node)
                                      if value is not None and value != []]]
    if isinstance(node, list):
        return [canonical(item) for item in node]
    return [type(node).__name__, repr(node)]


def without_docstrings(tree: ast.Module) -> ast.Module:
    """``tree`` with the docstring of the module, and of each class and function, removed."""
    for node in ast.walk(tree):
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
                and isinstance(node.body[0].value.value, str)):
            node.body = node.body[1:]
    return tree


def normalised(path: Path) -> bytes:
    """What of ``path`` can change what the code does (see the module docstring)."""
    if path.suffix == ".py":
        return json.dumps(canonical(without_docstrings(parse(path)))).encode()
    if path.suffix in (".yaml", ".yml"):
        try:
            value = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise FingerprintError(f"{path}: cannot be parsed as YAML: {error}") from None
        return json.dumps(value, sort_keys=True, default=str).encode()
    return path.read_bytes()


def file_hash(path: Path) -> str:
    return hashlib.sha256(normalised(path)).hexdigest()[:20]


def fingerprint(script: Path, root: Path) -> str:
    """The text of ``script``'s fingerprint file: a header, then ``<hash>  <path>`` per file it runs."""
    lines = [f"# What {script.relative_to(root).as_posix()} runs: each file's hash without comments, docstrings or layout.",
             "# Written by stages/fingerprint.py (smartmtl.app.fingerprint): DVC reruns the stages that depend on this file when it changes."]
    lines += [f"{file_hash(root / path)}  {path.as_posix()}" for path in covered_files(script, root)]
    return "\n".join(lines) + "\n"


def stage_scripts(root: Path) -> list[Path]:
    """Every stage script that gets a fingerprint: stages/*.py but this stage's own."""
    return sorted(path for path in (root / STAGES).glob("*.py") if path.stem != THIS_STAGE)


def fingerprint_path(script: str | Path) -> Path:
    """Where the fingerprint of ``script`` (``stages/finetune.py``) is written, relative to the root."""
    return FINGERPRINTS / f"{Path(script).stem}.txt"


def write_fingerprints(root: Path) -> list[Path]:
    """Write the fingerprint file of every stage script of project ``root``; return their paths."""
    (root / FINGERPRINTS).mkdir(exist_ok=True)
    written = []
    for script in stage_scripts(root):
        path = root / fingerprint_path(script)
        path.write_text(fingerprint(script, root))
        written.append(path)
    return written
