"""Stage `prepare`: raw TSV files -> validated parquet splits, data metrics and Table 1.

Reads ``data.raw_dir``, writes ``data.prepared_dir/{task}-{split}.parquet``,
``metrics/data.json`` and ``metrics/tables/table1_data.{csv,md}``. All the logic lives in
:mod:`smartmtl.data`; this file only wires parameters to it.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.stage switches it back on

from smartmtl import io
from smartmtl.config import Params
from smartmtl.data import prepare, table1_notes
from smartmtl.stage import stage_app


def prepare_data(settings: Params) -> None:
    """Validate and clean the nine raw files, write the prepared splits, data metrics and Table 1."""
    data = settings.data
    result = prepare(data.raw_dir, data.prepared_dir, data.train_limit, data.seed,
                     dev_limit=data.dev_limit, test_limit=data.test_limit)
    io.write_json({"preset": settings.preset, **result.metrics()}, "metrics/data.json")
    io.write_table(result.table1(), "metrics/tables/table1_data",
                   title="Table 1: examples per task and split (ours vs. the paper)",
                   notes=table1_notes(result, settings.preset))


app = stage_app("prepare", prepare_data)

if __name__ == "__main__":
    app()
