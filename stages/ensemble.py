"""Stage `ensemble`: combine the members' predictions (Table 4).

Members: ensemble.members, or with "auto" the ensemble.size best grid models by dev
overall. SST and QQP by majority vote (a tie goes to the highest-ranked member's class),
STS by median. Reads the metrics and predictions of the runs params.yaml defines; writes
predictions/ensemble/<task>-<split>.csv, metrics/ensemble.json and the headline
metrics/summary.json. First moves the outputs of runs params.yaml no longer defines to stale/.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.stage switches it back on

from pathlib import Path

import typer

from smartmtl.ensemble import build_ensemble
from smartmtl.outputs import move_stale
from smartmtl.stage import PARAMS_OPTION, stage_context

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(params: Path = PARAMS_OPTION) -> None:
    """Combine the members' dev and test predictions and score them."""
    with stage_context("ensemble", params) as settings:
        move_stale(settings)
        result = build_ensemble(settings)
    typer.echo(f"ensemble of {len(result['members'])} ({', '.join(result['members'])}): "
               f"dev overall {result['dev']['overall']:.3f}")


if __name__ == "__main__":
    app()
