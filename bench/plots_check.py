"""Render `dvc plots show` in a real headless browser, offline, and count what it drew.

Run from a project where `dvc repro` has run (the smoke copy will do):

    python bench/plots_check.py [--project .smoke]

Needs Debian's chromium (`apt-get install -y chromium`) and npm; the Vega scripts are
installed once into .cache/vega, since the page DVC writes loads them from a CDN this
machine cannot reach. Prints the number of charts DVC defined, the Vega charts the browser
rendered, the images, DVC's warnings, and where the screenshot is.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VEGA = {"vega": "5", "vega-lite": "5", "vega-embed": "6"}
TEMPLATE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>DVC plots</title>
<script src="vega.min.js"></script><script src="vega-lite.min.js"></script><script src="vega-embed.min.js"></script>
</head><body>{plot_divs}</body></html>
"""


def vega_scripts(cache: Path) -> list[Path]:
    modules = cache / "node_modules"
    if not (modules / "vega-embed").is_dir():
        packages = [f"{name}@{major}" for name, major in VEGA.items()]
        subprocess.run(["npm", "install", "--silent", "--prefix", str(cache), *packages], check=True)
    return [modules / name / "build" / f"{name}.min.js" for name in VEGA]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "plots")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium not found: apt-get install -y chromium")
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    template = out.parent / "plots_template.html"
    template.write_text(TEMPLATE)

    shown = subprocess.run(["dvc", "plots", "show", "-o", str(out), "--html-template", str(template)],
                           cwd=args.project, capture_output=True, text=True)
    if shown.returncode != 0:
        sys.exit(f"dvc plots show failed:\n{shown.stdout}\n{shown.stderr}")
    warnings = [line for line in shown.stderr.splitlines() if line.strip() and "file://" not in line]
    for script in vega_scripts(ROOT / ".cache" / "vega"):
        shutil.copy(script, out / script.name)

    page = out / "index.html"
    html = page.read_text()
    defined = len(re.findall(r"<div id\s*=", html))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000", "--allow-file-access-from-files"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=300).stdout
    rendered = len(re.findall(r"<svg[^>]*class=\"marks\"|<canvas[^>]*class=\"marks\"", dom))
    images = len(re.findall(r"<img ", dom))
    screenshot = out / "screenshot.png"
    subprocess.run([browser, *flags, "--window-size=1500,9000", f"--screenshot={screenshot}", page.as_uri()],
                   capture_output=True, timeout=300)
    print(f"Vega charts defined: {defined}, rendered by the browser: {rendered}; images: {images}; "
          f"DVC warnings: {len(warnings)}")
    for line in warnings:
        print("  warning:", line)
    print(f"page: {page}\nscreenshot: {screenshot}")
    return 0 if rendered == defined and not warnings else 1


if __name__ == "__main__":
    sys.exit(main())
