"""Which runs are current, their scores, and what happens to the outputs of the others.

A run ``<name>`` (see :mod:`smartmtl.variants`) owns a model, predictions, a metrics file and
DVCLive curves, where :class:`~smartmtl.layout.Layout` puts them. The stages that read results
find runs by the names the current params.yaml defines, never by listing folders. After the sweep or the presets change, a run
no longer defined leaves files behind: ``dvc exp run`` deletes the cached outputs of the stage
it dropped (model, predictions), but not always its metrics and curves, and ``dvc repro``
leaves all of them; :func:`move_stale` moves what is left to ``stale/`` so that no view shows
it as current.
"""

from __future__ import annotations

import logging
import shutil

from smartmtl.config import Params
from smartmtl.io import read_json
from smartmtl.layout import Layout
from smartmtl.variants import PRETRAIN, planned_runs

log = logging.getLogger(__name__)

ENSEMBLE_NAME = "ensemble"


def load_model_metrics(params: Params, layout: Layout = Layout()) -> dict[str, dict]:
    """The scores of every run ``params`` defines that has a metrics file, keyed by run name,
    each with its description (``row``, ``kind``, ``label``, ``config``) from its RunSpec."""
    found: dict[str, dict] = {}
    for spec in planned_runs(params):
        path = layout.metrics_file(spec.name)
        if path.exists():
            found[spec.name] = {"name": spec.name, "row": spec.row, "kind": spec.kind, "label": spec.label,
                                "config": spec.config(), **read_json(path)}
    return found


def move_stale(params: Params, layout: Layout = Layout()) -> list[str]:
    """Move the outputs of runs that ``params`` no longer defines to ``stale/``; return their names.

    Nothing is lost: models are in DVC's cache, metrics and curves in git's history, and
    ``stale/`` keeps the latest copy of each until a later move replaces it."""
    current = {spec.name for spec in planned_runs(params)} | {PRETRAIN, ENSEMBLE_NAME}
    folders = [layout.models, layout.predictions, layout.live]
    found = {path.name for folder in folders if folder.is_dir() for path in folder.iterdir() if path.is_dir()}
    if layout.finetune_metrics.is_dir():
        found |= {path.stem for path in layout.finetune_metrics.glob("*.json")}
    moved = sorted(found - current)
    for name in moved:
        for path in layout.owned_by(name):
            if path.exists():
                destination = layout.stale / path.relative_to(layout.root)
                if destination.is_dir():
                    shutil.rmtree(destination)
                destination.unlink(missing_ok=True)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), str(destination))
        log.info("%s: not defined by params.yaml any more; its outputs moved to %s/", name, layout.stale)
    return moved

