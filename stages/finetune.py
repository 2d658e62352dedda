"""Stage `finetune`: train one run (a row of Table 2, a cell of Table 3's grid or a Figure 3
curve, with one seed) and score it.

Writes ``models/<run>/``, ``predictions/<run>/``, ``metrics/finetune/<run>.json`` and
``dvclive/<run>/``, where ``<run>`` is ``<row>-s<seed>``. An interrupted run started again
resumes from its last finished epoch.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.app.stage switches it back on

from pathlib import Path

import typer

from smartmtl.app.stage import PARAMS_OPTION, stage_context
from smartmtl.results.outputs import write_untrained
from smartmtl.variants import (
    TABLE2_CELL,
    grid_spec,
    run_name,
    smart_pretrain_row,
    sst_lambda_spec,
    table2_cell_seeds,
    table2_cell_spec,
    table2_spec,
)

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
SEED = typer.Option(..., help="The run's seed (a value of sweep.seeds).")


def run(spec, settings) -> None:
    # Imported on use, so that table2-cell on the grid (which trains nothing) starts without
    # torch and transformers; with the collector off while they load, as smartmtl.app.stage explains.
    gc.disable()
    from smartmtl.train.runner import run as train_and_score

    gc.freeze()
    gc.enable()
    train_and_score(spec, settings)


@app.command()
def variant(name: str = typer.Argument(..., help="A key of `variants` or `smart_variants` in params.yaml (a Table 2 row)."),
            seed: int = SEED, params: Path = PARAMS_OPTION) -> None:
    """Train a Table 2 model, as `variants.<name>` or `smart_variants.<name>` in params.yaml describes it."""
    with stage_context("finetune", params) as settings:
        run(table2_spec(settings, name, seed), settings)


@app.command()
def grid(dropout: float = typer.Option(..., help="A value of sweep.dropout."),
         lambda_s: float = typer.Option(..., "--lambda-s", help="A value of sweep.lambda_s."),
         seed: int = SEED, params: Path = PARAMS_OPTION) -> None:
    """Train Concat+SMART+Pretrain at one dropout x lambda_s cell of Table 3."""
    with stage_context("finetune", params) as settings:
        run(grid_spec(settings, dropout, lambda_s, seed), settings)


@app.command("table2-cell")
def table2_cell(seed: int = SEED, params: Path = PARAMS_OPTION) -> None:
    """Train Table 2's Concat+SMART+Pretrain at (model.dropout, smart.lambda_s) unless the grid trains that run."""
    with stage_context("finetune", params) as settings:
        if seed in table2_cell_seeds(settings):
            run(table2_cell_spec(settings, seed), settings)
        else:
            write_untrained(run_name(TABLE2_CELL, seed), stand_in=run_name(smart_pretrain_row(settings), seed))


@app.command("sst-lambda")
def sst_lambda(lambda_s: float = typer.Option(..., "--lambda-s", help="A value of sweep.sst_lambda_s."),
               seed: int = SEED, params: Path = PARAMS_OPTION) -> None:
    """Train SST alone with SMART at one lambda_s (Figure 3)."""
    with stage_context("finetune", params) as settings:
        run(sst_lambda_spec(settings, lambda_s, seed), settings)


if __name__ == "__main__":
    app()
