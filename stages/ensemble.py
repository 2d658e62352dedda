"""Stage: combine the ensemble members' predictions (Table 4)."""

from __future__ import annotations

from pathlib import Path

import typer

from smartmtl.config import ConfigError, load_params
from smartmtl.ensemble import EnsembleError, build_ensemble

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (reads ensemble.*, data.prepared_dir)."),
) -> None:
    """Combine the members' dev/test predictions: SST and QQP by majority vote (ties go to the
    highest-ranked member), STS by median.

    Members: ensemble.members, or with "auto" the ensemble.size best grid models by dev overall.
    Reads metrics/finetune/*.json and predictions/<member>/; writes predictions/ensemble/<task>-<split>.csv
    and metrics/ensemble.json.
    """
    try:
        result = build_ensemble(load_params(params))
    except (ConfigError, EnsembleError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    dev = result["dev"]
    typer.echo(f"ensemble of {len(result['members'])} ({', '.join(result['members'])}): dev overall {dev['overall']:.3f}")


if __name__ == "__main__":
    app()
