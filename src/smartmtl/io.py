"""Writing outputs so that a failed or interrupted stage never leaves half a file behind.

Every file a stage produces goes through :func:`atomic_path`: it is written under a
temporary name beside its destination and renamed into place only once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path (file or directory) that replaces ``destination`` on success."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent)) / destination.name
    try:
        yield temporary
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        os.replace(temporary, destination)
    finally:
        shutil.rmtree(temporary.parent, ignore_errors=True)


def write_json(data: dict, destination: str | Path) -> None:
    with atomic_path(destination) as path:
        path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(source: str | Path) -> dict:
    return json.loads(Path(source).read_text())


def write_table(frame: pd.DataFrame, stem: str | Path, title: str, notes: list[str] = ()) -> None:
    """Write ``frame`` as ``<stem>.csv`` and as ``<stem>.md`` with a title and notes."""
    stem = Path(stem)
    with atomic_path(stem.with_suffix(".csv")) as path:
        frame.to_csv(path, index=False)
    markdown = [f"### {title}", "", frame.to_markdown(index=False, floatfmt=".3f")]
    if notes:
        markdown += ["", *[f"- {note}" for note in notes]]
    with atomic_path(stem.with_suffix(".md")) as path:
        path.write_text("\n".join(markdown) + "\n")
