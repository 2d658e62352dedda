"""Stage `prepare`: raw TSV files -> validated parquet splits, data metrics and Table 1.

Reads ``data.raw_dir``, writes ``data.prepared_dir/{task}-{split}.parquet``,
``metrics/data.json`` and ``metrics/tables/table1_data.{csv,md}``. All the logic lives in
:mod:`smartmtl.data`; this file only wires parameters to it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from smartmtl import io
from smartmtl.config import TASKS, ConfigError, load_params
from smartmtl.data import DataError, PrepareResult, prepare

METRICS = Path("metrics/data.json")
TABLE = Path("metrics/tables/table1_data")

app = typer.Typer(add_completion=False, help=__doc__)


def table_notes(result: PrepareResult, preset: str) -> list[str]:
    qqp = result[("qqp", "train")].report.rows_read

    def show(limits: dict) -> str:
        return ", ".join(f"{task}={'all' if limits.get(task) is None else limits[task]}" for task in TASKS)

    notes = [
        "Ours: rows written after validation, removal of exact duplicates (train, dev) and of training "
        "rows that also stand in dev or test, and subsampling (train_limit); without eval_limit every test row is kept.",
        f"QQP: the training set here is a {qqp:,}-pair subset (the union of the labelled QQP pairs that "
        "could be gathered) of the paper's 283,010 pairs, and QQP dev/test here are the two halves of the "
        "CS224N QQP dev file, so QQP figures are not comparable with the paper's.",
        f"Preset: {preset}; train_limit: {show(result.train_limit)}; seed: {result.seed}.",
    ]
    if any(v is not None for v in result.eval_limit.values()):
        notes.append(f"eval_limit: {show(result.eval_limit)} (dev and test subsampled: a smoke run, not comparable).")
    return notes


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (reads data.raw_dir, data.prepared_dir, data.train_limit, data.eval_limit, data.seed)."),
) -> None:
    """Validate and clean the nine raw files, write the prepared splits, data metrics and Table 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_params(params)
        data = settings.data
        result = prepare(data.raw_dir, data.prepared_dir, data.train_limit, data.seed, eval_limit=data.eval_limit)
    except (DataError, ConfigError) as error:
        print(f"prepare: {error}", file=sys.stderr)
        raise typer.Exit(code=1) from None
    io.write_json({"preset": settings.preset, **result.metrics()}, METRICS)
    io.write_table(
        result.table1(),
        TABLE,
        title="Table 1: examples per task and split (ours vs. the paper)",
        notes=table_notes(result, settings.preset),
    )


if __name__ == "__main__":
    app()
