"""Stage: Figures 3 and 4, training curves and the Section 6 error analysis."""

from __future__ import annotations

from pathlib import Path

import typer

from smartmtl.analysis import AnalysisError, run_analysis
from smartmtl.config import ConfigError, load_params
from smartmtl.ensemble import EnsembleError

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (reads data.prepared_dir)."),
    model: str = typer.Option("ensemble", "--model", help="Whose dev predictions Figure 4 shows (a predictions/ folder name)."),
) -> None:
    """Write plots/fig3_lambda_sst.{png,csv}, plots/fig4_sst_confusion.png, plots/sst_confusion.csv,
    plots/fig4_sts_scatter.png, plots/sts_scatter.csv, plots/training_curves.png and metrics/analysis.json.

    Reads predictions/<model>/{sst,sts}-dev.csv, the prepared dev data, metrics/finetune/*.json and dvclive/.
    """
    try:
        result = run_analysis(load_params(params), model=model)
    except (ConfigError, AnalysisError, EnsembleError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    worst = result["sts_worst_pair"]
    typer.echo(f"SST dev accuracy {result['sst_dev_accuracy']:.3f}; worst STS pair gold {worst['gold']:.2f} predicted {worst['prediction']:.2f}")


if __name__ == "__main__":
    app()
