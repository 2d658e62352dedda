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
from smartmtl.io import read_json, write_json
from smartmtl.layout import Layout
from smartmtl.variants import PRETRAIN, TABLE2_CELL, planned_runs, run_name

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
    # The table2-cell stage exists for every seed, and writes its outputs even where it trains nothing.
    table2_cell = {run_name(TABLE2_CELL, seed) for seed in params.sweep.seeds}
    current = {spec.name for spec in planned_runs(params)} | table2_cell | {PRETRAIN, ENSEMBLE_NAME}
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


def write_untrained(name: str, stand_in: str, layout: Layout = Layout()) -> None:
    """Write run ``name``'s outputs for a stage that trains nothing: its folders empty, its
    metrics file naming the run ``stand_in`` that is its row's result.

    The `table2-cell` stage trains Table 2's Concat+SMART+Pretrain row only when the grid lacks
    its (dropout, lambda_s) cell; when the grid has it, that cell's run is the row. DVC cannot
    make a stage exist or not by a parameter's value (a matrix's list is taken as written; no
    expression can pick the cells the grid lacks) and fails a stage that does not write every
    output it declares. So the stage always exists, and on the grid it writes these outputs
    instead of training the cell a second time."""
    for folder in (layout.model_dir(name), layout.predictions_dir(name), layout.live_dir(name)):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    write_json({"same_as": stand_in}, layout.metrics_file(name))
