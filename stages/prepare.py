"""Stage `prepare`: raw TSV files -> validated parquet splits, data metrics and Table 1.

Reads ``data.raw_dir``, writes ``data.prepared_dir/{task}-{split}.parquet``,
``metrics/data.json`` and ``metrics/tables/table1_data.{csv,md}``. All the logic lives in
:mod:`smartmtl.data.prepare`; this file only wires parameters to it.
"""

from __future__ import annotations

import gc

gc.disable()  # while the modules below are imported: smartmtl.app.stage switches it back on

from smartmtl import io
from smartmtl.app.stage import stage_app
from smartmtl.config import Params
from smartmtl.data.prepare import prepare, table1_notes
from smartmtl.layout import TABLE1, Layout


def prepare_data(settings: Params) -> None:
    """Validate and clean the nine raw files, write the prepared splits, data metrics and Table 1."""
    data, layout = settings.data, Layout()
    result = prepare(data.raw_dir, layout.prepared_dir(settings), data.train_limit, data.seed,
                     dev_limit=data.dev_limit, test_limit=data.test_limit, probe_limit=data.probe_limit)
    io.write_json({"preset": settings.preset, **result.metrics()}, layout.data_metrics)
    io.write_table(result.table1(), layout.tables / TABLE1,
                   title="Table 1: examples per task and split (ours vs. the paper)",
                   notes=table1_notes(result, settings.preset))


app = stage_app("prepare", prepare_data)

if __name__ == "__main__":
    app()
