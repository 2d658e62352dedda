"""Stage `report`: Tables 2-4 beside the paper's numbers, and metrics/report.md.

Reads metrics/finetune/*.json, metrics/ensemble.json, metrics/analysis.json,
metrics/tables/table1_data.md, metrics/data.json and the figures in plots/; writes
metrics/tables/table{2,3,4}_*.{md,csv} and metrics/report.md.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.app.stage switches it back on

import typer

from smartmtl.app.stage import stage_app
from smartmtl.config import Params
from smartmtl.results.report import build_report


def report(settings: Params) -> None:
    """Write Tables 2-4 and the one-page report."""
    typer.echo(f"wrote {build_report(settings)}")


app = stage_app("report", report)

if __name__ == "__main__":
    app()
