"""Stage `ensemble`: combine the members' predictions (Table 4).

Members: ensemble.members, or with "auto" the ensemble.size best grid models by dev
overall. SST and QQP by majority vote (a tie goes to the highest-ranked member's class),
STS by median. Reads the metrics and predictions of the runs params.yaml defines; writes
predictions/ensemble/<task>-<split>.csv, metrics/ensemble.json and the headline
metrics/summary.json. First moves the outputs of runs params.yaml no longer defines to stale/.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.app.stage switches it back on

import typer

from smartmtl.app.stage import stage_app
from smartmtl.config import Params
from smartmtl.results.ensemble import build_ensemble
from smartmtl.results.outputs import move_stale


def ensemble(settings: Params) -> None:
    """Combine the members' dev and test predictions and score them."""
    move_stale(settings)
    result = build_ensemble(settings)
    typer.echo(f"ensemble of {len(result['members'])} ({', '.join(result['members'])}): "
               f"dev overall {result['dev']['overall']:.3f}")


app = stage_app("ensemble", ensemble)

if __name__ == "__main__":
    app()
