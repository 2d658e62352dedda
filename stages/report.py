"""Stage `report`: Tables 2-4 beside the paper's numbers, and metrics/report.md.

Reads metrics/finetune/*.json, metrics/ensemble.json, metrics/analysis.json,
metrics/tables/table1_data.md and the figures in plots/; writes
metrics/tables/table{2,3,4}_*.{md,csv} and metrics/report.md.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.stage switches it back on

from pathlib import Path

import typer

from smartmtl.report import build_report
from smartmtl.stage import PARAMS_OPTION, stage_context

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(params: Path = PARAMS_OPTION) -> None:
    """Write Tables 2-4 and the one-page report."""
    with stage_context("report", params) as settings:
        path = build_report(settings)
    typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
