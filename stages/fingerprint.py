"""Stage `fingerprint`: for each stage script, the hashes of the code it runs, comments left out.

Reads stages/*.py and src/smartmtl/ (the modules each script imports, and the package data
they read); writes fingerprints/<script>.txt for every other script in stages/. DVC reruns this
stage on any edit of the code, and then only the stages whose fingerprint file changed. All the
logic lives in :mod:`smartmtl.app.fingerprint`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from smartmtl.app.fingerprint import write_fingerprints
from smartmtl.app.stage import user_errors

ROOT = Path(__file__).resolve().parents[1]  # the project whose files DVC tracks, whichever smartmtl runs


def fingerprint() -> None:
    """Write fingerprints/<script>.txt for every stage script."""
    with user_errors("fingerprint"):
        for path in write_fingerprints(ROOT):
            typer.echo(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    typer.run(fingerprint)
