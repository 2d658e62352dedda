"""Two processes (gloo on the CPU, as torchrun would start them) train what one process trains."""

from __future__ import annotations

import dataclasses
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from conftest import tiny_params
from safetensors.torch import load_file

import smartmtl.train.loop
from smartmtl.model.features import load_features
from smartmtl.model.heads import build_model, save_model
from smartmtl.train import distributed
from smartmtl.train.hardware import resolve_compute
from smartmtl.train.loop import train
from smartmtl.variants import RunSpec

TASKS = ("sst", "qqp", "sts")
BASE = RunSpec(name="tiny", kind="table2", label="Tiny", head="concat", schedule="simultaneous", epochs=2,
               smart=False, surgery=False, pretrained=False, dropout=0.0, lambda_s=1.0, seed=0, row="tiny")
# Without dropout (attention dropout included) or SMART noise nothing is random: two
# processes must then reproduce one process's weights, up to float summation order.
EXACT = {"plain": BASE, "surgery": dataclasses.replace(BASE, surgery=True)}
# With noise each process draws its own; they must still end with identical weights.
NOISY = {"smart_dropout": dataclasses.replace(BASE, smart=True, dropout=0.1)}


def _params(prepared_dir):
    return tiny_params(prepared_dir, model={"dropout": 0.0}, sweep={"dropout": [0.0]},
                       train={"epochs": 2, "lr": 1e-3}, smart={"sigma": 1e-3, "epsilon": 1e-3})


def _without_any_dropout(model):
    """The backbone keeps its attention dropout whatever ``model.dropout`` says: switch it off."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _deterministic_build(build):
    return lambda *args, **kwargs: _without_any_dropout(build(*args, **kwargs))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, prepared_dir, out_dir) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    params = _params(prepared_dir)
    features = load_features(params, TASKS, "concat", splits=("train", "dev"))
    build = smartmtl.train.loop.build_model
    with distributed.process_group():
        for name, run_spec in {**EXACT, **NOISY}.items():
            smartmtl.train.loop.build_model = build if name in NOISY else _deterministic_build(build)
            model = train(run_spec, params, features, resolve_compute(params.train.precision))
            save_model(model, out_dir / f"{name}-rank{rank}.safetensors")


@pytest.fixture(scope="module")
def two_process_weights(prepared_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(2, _free_port(), prepared_dir, out_dir), nprocs=2, join=True)
    return out_dir


@pytest.mark.parametrize("name", list(EXACT))
def test_two_processes_train_what_one_process_trains(name, two_process_weights, prepared_dir, monkeypatch):
    monkeypatch.setattr(smartmtl.train.loop, "build_model", _deterministic_build(build_model))
    params = _params(prepared_dir)
    features = load_features(params, TASKS, "concat", splits=("train", "dev"))
    torch.manual_seed(params.train.seed)
    initial = build_model(EXACT[name], params).state_dict()
    single = train(EXACT[name], params, features, resolve_compute(params.train.precision)).state_dict()
    pair = load_file(two_process_weights / f"{name}-rank0.safetensors")
    moved = max(float((single[k] - v).abs().max()) for k, v in initial.items())
    assert moved > 1e-3, "training must have changed the weights"
    for key, value in single.items():
        torch.testing.assert_close(pair[key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", [*EXACT, *NOISY])
def test_every_process_ends_with_the_same_weights(name, two_process_weights):
    first = load_file(two_process_weights / f"{name}-rank0.safetensors")
    second = load_file(two_process_weights / f"{name}-rank1.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_shard_splits_a_batch_and_never_leaves_a_process_empty(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    batch = np.arange(10, 17)
    shards = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        shards.append(distributed.shard(batch))
    assert sorted(np.concatenate(shards).tolist()) == batch.tolist()
    monkeypatch.setenv("RANK", "2")
    assert distributed.shard(np.array([5, 6])).tolist() == [5]
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.shard(batch) is batch
