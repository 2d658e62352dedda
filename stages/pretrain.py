"""Stage `pretrain`: further-pretrain the encoder on QQP alone (the paper's "Pretrain").

Writes ``models/pretrain/`` (the checkpoint every ``+Pretrain`` model starts from),
``metrics/finetune/pretrain.json`` and ``dvclive/pretrain/``.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.stage switches it back on

from pathlib import Path

import typer

from smartmtl.runner import run
from smartmtl.stage import stage_context
from smartmtl.variants import pretrain_spec

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file.")) -> None:
    """Train the concat model on QQP for train.pretrain_epochs epochs."""
    with stage_context("pretrain", params) as settings:
        run(pretrain_spec(settings), settings)


if __name__ == "__main__":
    app()
