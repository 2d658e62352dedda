"""Stage `analyze`: Figures 3 and 4, training curves and the Section 6 error analysis.

Reads predictions/<model>/{sst,sts}-dev.csv, the prepared dev data, metrics/finetune/<run>.json
and dvclive/; writes plots/fig3_lambda_sst.{png,csv}, plots/fig4_sst_confusion.png,
plots/sst_confusion.csv, plots/fig4_sts_scatter.png, plots/sts_scatter.csv,
plots/training_curves.png with its data in plots/curves/, and metrics/analysis.json.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.app.stage switches it back on

from pathlib import Path

import typer

from smartmtl.app.stage import PARAMS_OPTION, stage_context
from smartmtl.results.analysis import run_analysis

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(params: Path = PARAMS_OPTION,
         model: str = typer.Option("ensemble", help="Whose dev predictions Figure 4 shows (a predictions/ folder).")) -> None:
    """Draw Figures 3-4 and the training curves; find the worst STS pair and the most wrong SST sentence."""
    with stage_context("analyze", params) as settings:
        result = run_analysis(settings, model=model)
    worst = result["sts_worst_pair"]
    typer.echo(f"SST dev accuracy {result['sst_dev_accuracy']:.3f}; "
               f"worst STS pair gold {worst['gold']:.2f} predicted {worst['prediction']:.2f}")


if __name__ == "__main__":
    app()
