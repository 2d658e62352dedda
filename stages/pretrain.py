"""Stage `pretrain`: further-pretrain the encoder on QQP alone (the paper's "Pretrain").

Writes ``models/pretrain/`` (the checkpoint every ``+Pretrain`` model starts from),
``metrics/finetune/pretrain.json`` and ``dvclive/pretrain/``.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.app.stage switches it back on

from smartmtl.app.stage import stage_app
from smartmtl.config import Params
from smartmtl.train.runner import run
from smartmtl.variants import pretrain_spec


def pretrain(settings: Params) -> None:
    """Train the concat model on QQP for train.pretrain_epochs epochs."""
    run(pretrain_spec(settings), settings)


app = stage_app("pretrain", pretrain)

if __name__ == "__main__":
    app()
