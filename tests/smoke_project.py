"""A copy of this working tree set to the smoke preset: the project `make smoke` runs and the
end-to-end test (tests/test_pipeline.py) checks, made in one place so that both run the same.

The copy holds what git would commit (tracked files, and untracked ones git does not ignore)
and the raw data. It leaves out the committed results and their dvc.lock: no smoke stage could
reuse them, and DVC rereads and rewrites the whole lock file after every stage.

    python tests/smoke_project.py DESTINATION
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from smartmtl import presets

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = {"dvc.lock", "metrics", "plots"}  # top-level paths: the committed results
GIT = ["git", "-c", "user.name=smoke", "-c", "user.email=smoke@localhost"]


def project_files(source: Path) -> list[str]:
    """The paths git would commit, relative to ``source``, less LEFT_OUT."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=source, capture_output=True, text=True, check=True).stdout
    return [path for path in listing.split("\0") if path and path.split("/")[0] not in LEFT_OUT]


def make_smoke_project(destination: Path, source: Path = ROOT) -> Path:
    """Replace ``destination`` with a smoke copy of ``source``, committed, params.yaml set to smoke."""
    raw_data = source / "data" / "raw"
    if not (raw_data / "sst" / "ids-sst-train.csv").exists():
        raise FileNotFoundError(f"the smoke project needs the real data at {raw_data} (`make setup` copies it)")
    shutil.rmtree(destination, ignore_errors=True)
    for relative in project_files(source):
        origin = source / relative
        if origin.is_file():  # a tracked file deleted in the working tree is left out
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, destination / relative)
    shutil.copytree(raw_data, destination / "data" / "raw")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "smoke"]):
        subprocess.run([*GIT, *command], cwd=destination, check=True)
    presets.write("smoke", destination / "params.yaml")
    return destination


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} DESTINATION")
    print(make_smoke_project(Path(sys.argv[1]).resolve()))
