"""Probes fitted once and reused by the runs that would fit them again (smartmtl.train.probecache):
a reused probe is the probe fitted again, and the key follows what the probe reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import tiny_params

from smartmtl.layout import Layout
from smartmtl.model.features import load_features
from smartmtl.model.heads import build_model
from smartmtl.train import loop as train
from smartmtl.train import probe
from smartmtl.train.hardware import resolve_compute
from smartmtl.train.probecache import ProbeCache, probe_key
from smartmtl.train.runner import run
from smartmtl.variants import RunSpec, table2_spec

TASK_NAMES = ("sst", "qqp", "sts")
SPEC = RunSpec(name="tiny", kind="table2", label="Tiny", head="concat", schedule="simultaneous", epochs=1,
               smart=True, surgery=False, pretrained=False, dropout=0.1, lambda_s=1.0, seed=0, row="tiny")
FP32 = resolve_compute("fp32")


@pytest.fixture(scope="module")
def data(prepared_dir):
    return load_features(tiny_params(prepared_dir), TASK_NAMES, "concat", splits=("train", "dev"))


def _model(prepared_dir, seed: int, **changes):
    """A run's model as it starts: the backbone's encoder, heads drawn from ``seed``."""
    torch.manual_seed(seed)
    return build_model(dataclasses.replace(SPEC, **changes), tiny_params(prepared_dir)).train()


def _stored(directory):
    return sorted(directory.glob("*.safetensors"))


def test_a_reused_probe_is_the_probe_fitted_again(data, prepared_dir, tmp_path, monkeypatch):
    qqp, extra = data["train"]["qqp"], data["dev"]["qqp"]
    rows, cache = np.arange(len(qqp)), ProbeCache(tmp_path)
    probe.fitted_head(_model(prepared_dir, 0), "qqp", qqp, rows, 8, FP32.device, FP32.autocast, extra, cache)
    assert len(_stored(tmp_path)) == 1
    other_seed = _model(prepared_dir, 1)  # another run from the same checkpoint: other random heads
    fresh = probe.fitted_head(other_seed, "qqp", qqp, rows, 8, FP32.device, FP32.autocast, extra)
    monkeypatch.setattr(probe, "head_inputs", lambda *args: pytest.fail("a reused probe read its rows again"))
    reused = probe.fitted_head(other_seed, "qqp", qqp, rows, 8, FP32.device, FP32.autocast, extra, cache)
    assert all(torch.equal(a, b) for a, b in zip(reused, fresh, strict=True))
    assert len(_stored(tmp_path)) == 1


def test_the_key_follows_what_the_probe_reads_and_nothing_else(data, prepared_dir):
    qqp, sts = data["train"]["qqp"], data["train"]["sts"]
    rows = np.arange(len(qqp))

    def key(model, task="qqp", features=qqp, rows=rows, extra=None, batch_size=8, compute=FP32):
        return probe_key(model, task, features, rows, extra, batch_size, compute.device, compute.autocast)

    model = _model(prepared_dir, 0)
    start = key(model)
    # What each run draws for itself changes nothing the probe reads: other heads, another
    # dropout rate (the probe reads the model in eval mode).
    assert key(_model(prepared_dir, 1)) == start
    assert key(_model(prepared_dir, 1, dropout=0.3)) == start
    changed = {
        "fewer rows": key(model, rows=rows[:-1]),
        "the rows' order (the folds)": key(model, rows=rows[::-1]),
        "other labels": key(model, features=dataclasses.replace(qqp, labels=1 - qqp.labels)),
        "rows only the probe reads": key(model, extra=data["dev"]["qqp"]),
        "another task": key(model, "sts", sts, np.arange(len(sts))),
        "another batch size (padding)": key(model, batch_size=4),
        "another precision": key(model, compute=resolve_compute("bf16")),
        "another pair design": key(_model(prepared_dir, 0, head="separate")),
    }
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight[0, 0] += 1e-3
    changed["a trained encoder"] = key(model)
    assert start not in changed.values()
    assert len(set(changed.values())) == len(changed)


def test_only_a_whole_model_has_a_key(data):
    qqp = data["train"]["qqp"]
    with pytest.raises(TypeError, match="MultitaskModel"):
        probe_key(torch.nn.Linear(2, 2), "qqp", qqp, np.arange(2), None, 8, FP32.device, FP32.autocast)


def test_a_run_trains_the_same_with_the_cache_cold_or_warm(data, prepared_dir, tmp_path):
    params = tiny_params(prepared_dir, train={"head_init": "probe"})
    cache = ProbeCache(tmp_path)
    cold = train.train(SPEC, params, data, FP32, probe_cache=cache)
    stored = _stored(tmp_path)
    assert stored  # QQP's and STS's heads (SST's 8 rows leave classes of one row: no fit)
    warm = train.train(SPEC, params, data, FP32, probe_cache=cache)
    assert _stored(tmp_path) == stored  # nothing fitted again
    for (name, before), after in zip(cold.state_dict().items(), warm.state_dict().values(), strict=True):
        assert torch.equal(before, after), name


def test_the_runner_keeps_its_probes_for_the_next_run(prepared_dir, tmp_path):
    params = tiny_params(prepared_dir, train={"head_init": "probe"})
    layout = Layout(tmp_path)
    run(table2_spec(params, "concat_smart_star", 0), params, layout)
    stored = _stored(layout.probe_cache)
    assert stored
    run(table2_spec(params, "concat_star", 1), params, layout)  # another variant and seed, the same start
    assert _stored(layout.probe_cache) == stored
