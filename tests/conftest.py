"""Shared fixtures: tiny prepared data on disk and Params for tiny runs on the real backbone."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from smartmtl import presets
from smartmtl.config import Params, parse_params

BACKBONE = "all-MiniLM-L6-v2"

SST_SENTENCES = [
    "a gorgeous film .",
    "dull , lifeless and far too long for its own good .",
    "the actors are fine .",
    "an utterly charming , funny and moving story about two brothers .",
    "bad .",
    "it is neither good nor bad , just there .",
    "a masterpiece .",
    "the plot makes no sense whatsoever and the jokes fall flat every time .",
]
PAIRS = [
    ("how do i learn python ?", "what is the best way to learn python ?"),
    ("a man is playing a guitar .", "a man plays the guitar on a stage in front of a large crowd ."),
    ("is the earth flat ?", "why is the sky blue ?"),
    ("a dog runs .", "a cat sleeps on the warm sofa ."),
    ("what is the capital of france ?", "which city is the capital of france ?"),
    ("the stock market fell sharply today after the announcement .", "shares dropped ."),
]


def _write(directory: Path, task: str, split: str, rows: int, labelled: bool, offset: int = 0) -> None:
    ids = [f"{task}-{split}-{i}" for i in range(rows)]
    if task == "sst":
        columns = {"id": ids, "sentence": [SST_SENTENCES[(i + offset) % len(SST_SENTENCES)] for i in range(rows)]}
    else:
        pairs = [PAIRS[(i + offset) % len(PAIRS)] for i in range(rows)]
        columns = {"id": ids, "sentence1": [p[0] for p in pairs], "sentence2": [p[1] for p in pairs]}
    fields = [pa.field(name, pa.string()) for name in columns]
    if labelled:
        if task == "sst":
            columns["label"] = [i % 5 for i in range(rows)]
            fields.append(pa.field("label", pa.int64()))
        elif task == "qqp":
            columns["label"] = [i % 2 for i in range(rows)]
            fields.append(pa.field("label", pa.int64()))
        else:
            columns["label"] = [float((i * 1.7) % 5) for i in range(rows)]
            fields.append(pa.field("label", pa.float64()))
    table = pa.Table.from_pydict(columns, schema=pa.schema(fields))
    pq.write_table(table, directory / f"{task}-{split}.parquet")


# Training rows per task: SST defines the simultaneous epoch (2 steps of 4), STS is smaller
# (it cycles), QQP is not a multiple of the batch size (it continues across epochs).
TRAIN_ROWS = {"sst": 8, "qqp": 6, "sts": 4}
EVAL_ROWS = 3


def write_prepared(directory: Path, *, labelled_test: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for task, rows in TRAIN_ROWS.items():
        _write(directory, task, "train", rows, labelled=True)
        _write(directory, task, "dev", EVAL_ROWS, labelled=True, offset=1)
        _write(directory, task, "test", EVAL_ROWS, labelled=labelled_test, offset=2)
    return directory


def pytest_configure(config):
    """Under `pytest -n N` (pytest-xdist), the processes a test starts (DVC's stages, the bench)
    take the worker's share of the cores: N workers whose stages each took every core would
    oversubscribe them (two torch processes of 2 threads on 2 cores: 4 min against 2.5 one after
    the other, tests/test_groups_pipeline.py)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS
        share = str(max(1, cores // int(workers)))
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, share)


def pytest_collection_modifyitems(config, items):
    """The slow end-to-end files first (the order within a file kept): under `pytest -n`, the
    files that take minutes then start side by side, instead of the last one running alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Deterministic and light on the shared CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory) -> Path:
    """Tiny prepared data whose test split is unlabelled (as on GLUE)."""
    return write_prepared(tmp_path_factory.mktemp("prepared"), labelled_test=False)


@pytest.fixture(scope="session")
def labelled_prepared_dir(tmp_path_factory) -> Path:
    """Tiny prepared data whose test split carries labels."""
    return write_prepared(tmp_path_factory.mktemp("prepared_labelled"), labelled_test=True)


def tiny_params(prepared: Path | str = "data/prepared", **overrides) -> Params:
    """The smoke preset shrunk for tests; ``overrides`` are nested dicts per section."""
    raw = presets.render("smoke")
    raw = presets._merge(raw, {
        "data": {"prepared_dir": str(prepared)},
        "model": {"backbone": BACKBONE, "max_length": 24, "dropout": 0.1},
        "train": {"batch_size": 4, "eval_batch_size": 8, "precision": "fp32", "epochs": 1,
                  "sequential_epochs": {"qqp": 1, "sts": 1, "sst": 1}, "warmup": 0.0},
    })
    return parse_params(presets._merge(raw, overrides), "tests")


@pytest.fixture
def make_params(prepared_dir):
    """``make_params(**overrides)``: tiny Params reading the unlabelled-test prepared data."""
    def make(prepared: Path | None = None, **overrides) -> Params:
        return tiny_params(prepared or prepared_dir, **overrides)
    return make


@pytest.fixture(scope="session")
def tokenizer():
    from smartmtl.model.backbone import load_tokenizer
    return load_tokenizer(BACKBONE)
