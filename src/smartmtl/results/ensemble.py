"""Table 4: an ensemble of trained models, combined prediction by prediction.

Members are either named in ``params.ensemble.members`` or, with ``"auto"``, the
``params.ensemble.size`` best grid runs (Table 3's cells, each seed a run) by dev overall
score, ties broken by name: cells and seeds compete, so the ensemble takes whichever mix
dev prefers (members of other seeds make different mistakes; docs/lab-notes.md compares
the two). The member list is a ranking, best first, and the ranking breaks voting ties.

Combination rules, per task and split, example by example (matched on ``id``):

- SST and QQP: the mode of the members' labels. When several classes share the highest
  vote count, the ensemble takes the tied class predicted by the highest-ranked member
  (the first member in the list whose prediction is one of the tied classes).
- STS: the median of the members' scores (for an even number of members, the mean of the
  two middle scores).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from smartmtl.config import Params
from smartmtl.data.prepared import read_prepared
from smartmtl.errors import UserError
from smartmtl.evaluate import overall_score, task_metric
from smartmtl.io import read_predictions, write_json, write_predictions
from smartmtl.layout import Layout
from smartmtl.results.claims import runs_by_row, spread
from smartmtl.results.outputs import ENSEMBLE_NAME, RunRecord, load_model_metrics
from smartmtl.tasks import TASKS, combine

PREDICTION_SPLITS = ("dev", "test")


class EnsembleError(UserError, RuntimeError):
    """The ensemble cannot be built from what was trained; the message says why."""


# -------------------------------------------------------------------------- members


def _dev_overall(record: RunRecord) -> float:
    value = record.dev.get("overall")
    return float(value) if value is not None else math.nan


# -------------------------------------------------------------------------- members


def select_members(params: Params, metrics: dict[str, RunRecord], layout: Layout) -> list[str]:
    """The member names, best first; raises if a member has no metrics or predictions."""
    setting = params.ensemble.members
    existing = ", ".join(sorted(metrics)) or "(none)"
    if setting == "auto":
        grid = [(name, _dev_overall(record)) for name, record in metrics.items() if record.kind == "grid"]
        grid = [(name, score) for name, score in grid if not math.isnan(score)]
        if not grid:
            raise EnsembleError(
                "ensemble.members is 'auto' but no grid model with a dev overall score was found; "
                f"trained models: {existing}"
            )
        grid.sort(key=lambda item: (-item[1], item[0]))
        members = [name for name, _ in grid[: params.ensemble.size]]
    else:
        members = list(setting)
        if len(set(members)) != len(members):
            raise EnsembleError(f"ensemble.members lists a model more than once: {members}")
    for name in members:
        if name not in metrics:
            raise EnsembleError(
                f"ensemble member {name!r} was not trained (no metrics json); trained models: {existing}"
            )
        for task in TASKS:
            path = layout.predictions_file(name, task, "dev")
            if not path.exists():
                raise EnsembleError(
                    f"ensemble member {name!r} has no predictions ({path} is missing); trained models: {existing}"
                )
    return members


# ---------------------------------------------------------------------- combination


def _describe_ids(ids: list[str]) -> str:
    shown = ", ".join(repr(value) for value in sorted(ids)[:3])
    return f"{len(ids)} (e.g. {shown})"


def align_predictions(frames: dict[str, pd.DataFrame], where: str = "") -> tuple[pd.Index, np.ndarray]:
    """Stack the members' predictions as rows of an array, columns ordered by the first member's ids.

    ``frames`` is ordered by rank. Every member must predict exactly the first member's ids.
    """
    names = list(frames)
    reference = frames[names[0]]
    ids = pd.Index(reference["id"])
    rows = []
    for name in names:
        frame = frames[name]
        theirs = set(frame["id"])
        ours = set(ids)
        if theirs != ours:
            missing = sorted(ours - theirs)
            extra = sorted(theirs - ours)
            parts = []
            if missing:
                parts.append(f"lacks {_describe_ids(missing)} ids that {names[0]!r} has")
            if extra:
                parts.append(f"has {_describe_ids(extra)} ids that {names[0]!r} lacks")
            raise EnsembleError(f"{where}member {name!r} predicts different ids: " + "; ".join(parts))
        rows.append(frame.set_index("id")["prediction"].reindex(ids).to_numpy())
    return ids, np.vstack(rows)


def combine_members(task: str, frames: dict[str, pd.DataFrame], where: str = "") -> pd.DataFrame:
    """The ensemble's ``id,prediction`` frame from the members' frames (ordered best first)."""
    ids, stacked = align_predictions(frames, where)
    return pd.DataFrame({"id": ids.to_numpy(), "prediction": combine(task, stacked)})


# ------------------------------------------------------------------------- scoring


def score_split(predictions: dict[str, pd.DataFrame], prepared: dict[str, pd.DataFrame | None]) -> dict | None:
    """{sst, qqp, sts, overall} against the prepared labels, or None if any task is unlabelled."""
    result: dict[str, float] = {}
    for task in TASKS:
        gold = prepared.get(task)
        if gold is None or "label" not in gold.columns:
            return None
        merged = gold[["id", "label"]].merge(predictions[task], on="id", how="left")
        missing = merged["prediction"].isna()
        if missing.any():
            raise EnsembleError(
                f"{task}: the ensemble has no prediction for {_describe_ids(list(merged.loc[missing, 'id']))} "
                "labelled ids of the prepared data"
            )
        result[task] = task_metric(task, merged["prediction"].to_numpy(), merged["label"].to_numpy())
    result["overall"] = overall_score(result["sst"], result["qqp"], result["sts"])
    return result


def gains(ensemble_dev: dict[str, float], members_dev: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """The ensemble's dev scores minus its mean member's and minus its best member's (by overall)."""
    best = max(members_dev, key=lambda scores: scores.get("overall", -math.inf))
    return {
        "over_mean_member": {m: ensemble_dev[m] - float(np.mean([s[m] for s in members_dev])) for m in ensemble_dev},
        "over_best_member": {m: ensemble_dev[m] - best[m] for m in ensemble_dev},
    }


# ---------------------------------------------------------------------------- stage


def build_ensemble(params: Params, layout: Layout = Layout()) -> dict:
    """Combine the members' dev and test predictions, write them and the ensemble's metrics.

    Writes the ensemble's predictions for every task and split in (dev, test) that all members
    predicted, its metrics (members, scores, gains) and the pipeline's summary (the headline:
    numbers only, for `dvc metrics` and `dvc exp show`). Returns the metrics.
    """
    prepared_dir = layout.prepared_dir(params)
    metrics = load_model_metrics(params, layout)
    members = select_members(params, metrics, layout)

    result: dict = {"members": members}
    for split in PREDICTION_SPLITS:
        paths = {
            task: {name: layout.predictions_file(name, task, split) for name in members} for task in TASKS
        }
        present = [path.exists() for by_member in paths.values() for path in by_member.values()]
        if split != "dev" and not any(present):
            continue  # nobody predicted this split
        if not all(present):
            lacking = sorted(
                str(path) for by_member in paths.values() for path in by_member.values() if not path.exists()
            )
            raise EnsembleError(f"{split} predictions missing for some members: {', '.join(lacking)}")
        combined: dict[str, pd.DataFrame] = {}
        for task in TASKS:
            frames = {name: read_predictions(path) for name, path in paths[task].items()}
            combined[task] = combine_members(task, frames, where=f"{task}-{split}: ")
        prepared = {task: read_prepared(prepared_dir, task, split) for task in TASKS}
        scored = score_split(combined, prepared)
        if split == "dev" and scored is None:
            raise EnsembleError(f"dev labels not found in {prepared_dir} (need <task>-dev.parquet with a label column)")
        for task in TASKS:
            write_predictions(combined[task]["id"], combined[task]["prediction"], task,
                              layout.predictions_file(ENSEMBLE_NAME, task, split))
        if scored is not None:
            result[split] = scored
    result["members_dev"] = {name: dict(metrics[name].dev) for name in members}
    result["gain"] = gains(result["dev"], list(result["members_dev"].values()))
    write_json(result, layout.ensemble_metrics)
    write_json(headline(result, metrics), layout.summary)
    return result


def headline(result: dict, metrics: dict[str, RunRecord]) -> dict:
    """The pipeline's headline for `dvc metrics show` and `dvc exp show` (which sort columns by
    name): the ensemble's dev scores, then each row's dev overall (dev SST accuracy for the
    SST-only rows of Figure 3) averaged over its seeds, then the ensemble's test scores
    when the test split is labelled. Each run's own scores stay in metrics/finetune/."""
    by_row: dict[str, dict[str, float]] = {"dev_overall": {}, "dev_sst": {}}
    for row, by_seed in runs_by_row(metrics).items():
        key, metric = ("dev_overall", "overall") if all("overall" in s for s in by_seed.values()) else ("dev_sst", "sst")
        by_row[key][row] = spread(by_seed, metric)[0]
    summary = {"dev_ensemble": result["dev"]}
    summary |= by_row
    if "test" in result:
        summary["test_ensemble"] = result["test"]
    return summary
