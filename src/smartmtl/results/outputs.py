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
from collections.abc import Mapping
from dataclasses import dataclass, field

from smartmtl.config import Params
from smartmtl.io import read_json, write_json
from smartmtl.layout import Layout
from smartmtl.variants import PRETRAIN, TABLE2_CELL, RunSpec, planned_runs, run_name

log = logging.getLogger(__name__)

ENSEMBLE_NAME = "ensemble"


Scores = Mapping[str, float]  # a split's scores by metric: sst, qqp, sts, overall


@dataclass(frozen=True)
class RunRecord:
    """One run as the results stages read it: what it is (from its RunSpec, so from params.yaml)
    and what it scored (from its metrics file). A split it was not scored on is empty."""

    name: str
    row: str  # the configuration this run repeats with its seed (smartmtl.variants)
    kind: str  # table2 | grid | sst_lambda
    label: str
    seed: int
    lambda_s: float
    dropout: float
    dev: Scores = field(default_factory=dict)  # its final dev scores (last epoch)
    test: Scores = field(default_factory=dict)
    dev_start: Scores = field(default_factory=dict)  # before its first optimizer step; empty in older runs
    train_seconds: float | None = None
    surgery: Mapping[str, float] = field(default_factory=dict)  # gradient surgery's statistics, if it ran

    def scores(self, split: str) -> Scores:
        """The scores of ``split``: "dev", "test" or "dev_start"."""
        if split not in ("dev", "test", "dev_start"):
            raise ValueError(f"no split {split!r} in a run's record: dev, test or dev_start")
        return getattr(self, split)


def run_record(spec: RunSpec, scored: dict) -> RunRecord:
    """The record of run ``spec`` from the contents of its metrics file (a run that trained
    nothing, such as a table2-cell stand-in, wrote no scores)."""
    seconds = scored.get("train_seconds")
    return RunRecord(name=spec.name, row=spec.row, kind=spec.kind, label=spec.label, seed=spec.seed,
                     lambda_s=spec.lambda_s, dropout=spec.dropout, dev=scored.get("dev") or {},
                     test=scored.get("test") or {}, dev_start=scored.get("dev_start") or {},
                     train_seconds=None if seconds is None else float(seconds), surgery=scored.get("surgery") or {})


def load_model_metrics(params: Params, layout: Layout = Layout()) -> dict[str, RunRecord]:
    """The record of every run ``params`` defines that has a metrics file, keyed by run name."""
    found: dict[str, RunRecord] = {}
    for spec in planned_runs(params):
        path = layout.metrics_file(spec.name)
        if path.exists():
            found[spec.name] = run_record(spec, read_json(path))
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
