"""Every stage reads exactly the parameters dvc.yaml declares for it, no more and no fewer.

Each stage's command runs in-process on a tiny project while every read of a parameter is
recorded (a field read through attribute access, or a part of the parameters dumped whole),
and the reads are compared with the stage's `params:` in dvc.yaml. An undeclared read would
leave `dvc repro` thinking a stage current after that parameter changed; a declaration never
read would rerun the stage for nothing. Dumping the whole parameter set (run.json, the resume
fingerprint) is provenance, not a read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from conftest import BACKBONE, TRAIN_ROWS
from pydantic import BaseModel
from typer.testing import CliRunner

from smartmtl import presets
from smartmtl.config import Params, _Strict

ROOT = Path(__file__).resolve().parents[1]
RAW_DATA = ROOT / "data" / "raw"

pytestmark = pytest.mark.slow  # it runs the whole pipeline, if on tiny data: about a minute


class ReadRecorder:
    """Records the dotted path of every parameter field read within :meth:`recording`."""

    def __init__(self, params: Params):
        self.reads: set[str] = set()
        self.paths: dict[int, str] = {}
        self._index(params, "")

    def _index(self, model: BaseModel, path: str) -> None:
        self.paths[id(model)] = path
        for name in type(model).model_fields:
            value = model.__dict__[name]
            child = f"{path}.{name}" if path else name
            if isinstance(value, BaseModel):
                self._index(value, child)
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, BaseModel):
                        self._index(item, f"{child}.{key}")

    def _leaves(self, model: BaseModel) -> set[str]:
        path, leaves = self.paths[id(model)], set()
        for name in type(model).model_fields:
            value = model.__dict__[name]
            leaves |= self._leaves(value) if isinstance(value, BaseModel) else {f"{path}.{name}".lstrip(".")}
        return leaves

    @contextlib.contextmanager
    def recording(self):
        recorder, get, dump = self, _Strict.__getattribute__, BaseModel.model_dump

        def read(model, name):
            value = get(model, name)
            if name in type(model).model_fields and id(model) in recorder.paths:
                # Sections and the row tables are containers: what is read of them is recorded below.
                if not isinstance(value, BaseModel | dict):
                    recorder.reads.add(f"{recorder.paths[id(model)]}.{name}".lstrip("."))
            return value

        def dumped(model, *args, **kwargs):
            if id(model) in recorder.paths and recorder.paths[id(model)]:  # a part dumped whole is read whole
                recorder.reads |= recorder._leaves(model)
            return dump(model, *args, **kwargs)

        _Strict.__getattribute__, _Strict.model_dump = read, dumped
        try:
            yield
        finally:
            del _Strict.__getattribute__, _Strict.model_dump  # back to BaseModel's


def undeclared_and_unread(reads: set[str], declared: list[str]) -> tuple[set[str], set[str]]:
    def covers(key: str, read: str) -> bool:
        return read == key or read.startswith(key + ".")

    undeclared = {read for read in reads if not any(covers(key, read) for key in declared)}
    unread = {key for key in declared if not any(covers(key, read) for read in reads)}
    return undeclared, unread


def test_the_comparison_sees_both_kinds_of_mismatch():
    assert undeclared_and_unread({"train.lr", "model.dropout"}, ["train.lr", "model"]) == (set(), set())
    assert undeclared_and_unread({"train.lr", "smart.mu"}, ["train.lr", "train.eps"]) == ({"smart.mu"}, {"train.eps"})


def _load_stage(script: str):
    spec = importlib.util.spec_from_file_location(f"stage_{Path(script).stem}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Read on purpose without being declared: a stage's own matrix value is checked against the
# sweep list DVC built the matrix from (a typo'd value by hand gets a clear error), and
# train.eval_batch_size only sets how many rows are scored at once.
NOT_RESULTS = {"train.eval_batch_size"}
MATRIX_CHECKS = {"grid": {"sweep.dropout", "sweep.lambda_s"}, "sst_lambda": {"sweep.sst_lambda_s"}}


def _declared(stage: dict, item: dict) -> tuple[list[str], list[str]]:
    """The stage's params, and the keys its command, deps and outs interpolate: a path such as
    ${data.prepared_dir} is tracked as a dependency, and DVC reruns a stage whose command changes."""
    keys = [key for entry in stage.get("params", [])
            for key in ([entry] if isinstance(entry, str) else next(iter(entry.values())))]
    interpolated = re.findall(r"\$\{((?!item\.)[\w.]+)\}", json.dumps([stage["cmd"], stage.get("deps"), stage.get("outs")]))
    for field, value in item.items():
        keys = [key.replace(f"${{item.{field}}}", str(value)) for key in keys]
    return keys, interpolated


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A tiny project: one row of each kind, one seed, real data cut to a few rows."""
    raw = presets.render("smoke")
    raw["data"].update(raw_dir=str(RAW_DATA), train_limit=dict(TRAIN_ROWS), dev_limit={t: 3 for t in TRAIN_ROWS},
                       test_limit={t: 3 for t in TRAIN_ROWS})
    raw["model"].update(backbone=BACKBONE, max_length=24)
    # Two epochs each, so that what is read between epochs (train.epoch_eval_rows) is read.
    raw["train"].update(batch_size=4, eval_batch_size=8, precision="fp32", epochs=2, pretrain_epochs=2,
                        epoch_eval_rows=2)
    # A grid without model.dropout, so that the table2-cell stage trains: on the grid it reads
    # only the keys that say so, which it reads here too.
    raw["sweep"].update(seeds=[0], dropout=[0.1], lambda_s=[raw["smart"]["lambda_s"]], sst_lambda_s=[1.0], sst_epochs=2)
    raw["ensemble"]["size"] = 1
    raw["variants"] = {"concat": raw["variants"]["concat"]}
    raw["smart_variants"] = {row: raw["smart_variants"][row] for row in ("concat_smart", "concat_smart_surgery_pretrain")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_each_stage_reads_what_dvc_yaml_declares(project: Path, monkeypatch):
    from smartmtl import config
    from smartmtl.app import stage

    params = config.load_params(project / "params.yaml")
    recorder = ReadRecorder(params)
    monkeypatch.setattr(stage, "load_params", lambda path: params)  # every stage gets the recorded object
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    lambda_s, dropout = params.sweep.lambda_s[0], params.sweep.dropout[0]
    runs = [  # (dvc.yaml stage, matrix item, script, arguments): each stage in pipeline order
        ("prepare", {}, "stages/prepare.py", []),
        ("pretrain", {}, "stages/pretrain.py", []),
        ("finetune-descriptive", {"variant": "baseline"}, "stages/finetune.py", ["variant", "baseline", "--seed", "0"]),
        ("finetune", {"variant": "concat"}, "stages/finetune.py", ["variant", "concat", "--seed", "0"]),
        # A matrix has one params list for all its items: it must cover what each item reads.
        ("finetune-smart", {"variant": "concat_smart"}, "stages/finetune.py",
         ["variant", "concat_smart", "--seed", "0"]),
        ("finetune-smart", {"variant": "concat_smart_surgery_pretrain"}, "stages/finetune.py",
         ["variant", "concat_smart_surgery_pretrain", "--seed", "0"]),
        ("grid", {"dropout": dropout, "lambda_s": lambda_s}, "stages/finetune.py",
         ["grid", "--dropout", str(dropout), "--lambda-s", str(lambda_s), "--seed", "0"]),
        ("table2-cell", {"seed": 0}, "stages/finetune.py", ["table2-cell", "--seed", "0"]),
        ("sst_lambda", {"lambda_s": 1.0}, "stages/finetune.py", ["sst-lambda", "--lambda-s", "1.0", "--seed", "0"]),
        ("ensemble", {}, "stages/ensemble.py", []),
        ("analyze", {}, "stages/analyze.py", ["--model", "ensemble"]),
        ("report", {}, "stages/report.py", []),
    ]
    # The fingerprint stage reads no parameter, only the code (tests/test_dvc_deps.py checks it).
    assert not stages["fingerprint"].get("params")
    assert {name for name, *_ in runs} == set(stages) - {"fingerprint"}, "a stage of dvc.yaml is not exercised here"
    reads, declared, interpolated = defaultdict(set), defaultdict(set), defaultdict(set)
    for name, item, script, arguments in runs:
        recorder.reads.clear()
        with recorder.recording():
            result = CliRunner().invoke(_load_stage(script).app, [*arguments, "--params", str(project / "params.yaml")],
                                        catch_exceptions=False)
        assert result.exit_code == 0, f"{name}: {result.output}"
        reads[name] |= recorder.reads
        keys, interpolated_keys = _declared(stages[name].get("do", stages[name]), item)
        declared[name] |= set(keys)
        interpolated[name] |= set(interpolated_keys)
    mismatches = {}
    for name in reads:
        undeclared, _ = undeclared_and_unread(reads[name] - NOT_RESULTS - MATRIX_CHECKS.get(name, set()),
                                              list(declared[name] | interpolated[name]))
        _, unread = undeclared_and_unread(reads[name], list(declared[name]))
        if undeclared or unread:
            mismatches[name] = {"read, not declared": sorted(undeclared), "declared, not read": sorted(unread)}
    assert not mismatches, "\n".join(f"{name}: {problems}" for name, problems in mismatches.items())
