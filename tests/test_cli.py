"""The `smartmtl` command answers `--help` and `preset` without loading torch (about a second)."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_module_does_not_import_torch():
    probe = "import sys, smartmtl.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
