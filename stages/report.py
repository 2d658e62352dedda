"""Stage: Tables 2-4 beside the paper's numbers, and metrics/report.md."""

from __future__ import annotations

from pathlib import Path

import typer

from smartmtl.config import ConfigError, load_params
from smartmtl.report import ReportError, build_report

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (model, smart, sweep, variants, preset, train)."),
) -> None:
    """Write metrics/tables/table2_methods.{md,csv}, table3_grid.{md,csv}, table4_ensemble.{md,csv}
    and metrics/report.md from metrics/finetune/*.json, metrics/ensemble.json, metrics/analysis.json,
    metrics/tables/table1_data.md (if present) and the figures in plots/.
    """
    try:
        path = build_report(load_params(params))
    except (ConfigError, ReportError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
