"""Explore: train Table 3's Concat+SMART+Pretrain model (or, with ``--row``, a Table 2 row)
under several parameter overrides, without DVC, and print each run's dev scores, its training
time and the ensemble of the runs.

For quick what-ifs where `dvc exp run --queue` would be too slow or DVC is not installed (a
borrowed GPU). Each run is ``NAME:KEY=VALUE,KEY=VALUE`` over a preset; values are YAML. A
pretrained model's QQP pretraining is trained once per distinct (data, model, train) setting,
always with the base's seed and dropout: as in the pipeline, where every grid cell starts from
one pretraining checkpoint, ``train.seed`` and ``model.dropout`` overrides vary only the cell.

    python bench/sweep_cell.py --preset laptop --raw-dir data/raw --out bench/out/sweep \\
        base: seed1:train.seed=1 lr2:train.lr=2e-4 --ensemble base,seed1
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from smartmtl.config import parse_params
from smartmtl.data.prepare import prepare
from smartmtl.evaluate import scores, task_metric
from smartmtl.model.features import load_features
from smartmtl.model.heads import save_model
from smartmtl.model.inference import evaluate
from smartmtl.presets import render
from smartmtl.tasks import combine
from smartmtl.train.hardware import pick_device, resolve_compute
from smartmtl.train.loop import train
from smartmtl.variants import pretrain_spec, table2_cell_spec, table2_spec


def parse_run(text: str, base: dict) -> tuple[str, dict]:
    name, _, assignments = text.partition(":")
    raw = copy.deepcopy(base)
    for assignment in filter(None, assignments.split(",")):
        key, value = assignment.split("=", 1)
        *parents, leaf = key.split(".")
        node = raw
        for parent in parents:
            if not isinstance(node.get(parent), dict):
                raise SystemExit(f"run {name!r}: {key!r} is not a parameter (no section {parent!r})")
            node = node[parent]
        node[leaf] = yaml.safe_load(value)  # an unknown leaf is caught by parse_params
    return name, raw


def describe(metrics: dict[str, float]) -> str:
    return "  ".join(f"{task} {metrics[task]:.4f}" for task in ("overall", "sst", "qqp", "sts"))


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="NAME:KEY=VALUE,... (NAME: alone is the preset as it is)")
    parser.add_argument("--preset", default="laptop")
    parser.add_argument("--raw-dir", default="data/raw")
    parser.add_argument("--out", type=Path, default=Path("bench/out/sweep"))
    parser.add_argument("--base", default="", help="KEY=VALUE,... applied to the preset before every run.")
    parser.add_argument("--row", help="A Table 2 row (e.g. concat_star) instead of Table 3's cell.")
    parser.add_argument("--ensemble", action="append", default=[], help="Comma-separated run names to combine.")
    args = parser.parse_args()

    _, base = parse_run(":" + args.base, render(args.preset))
    base["data"]["raw_dir"] = args.raw_dir
    args.out.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, preset {args.preset}",
          flush=True)
    features_cache, dev_outputs, results = {}, {}, {}
    for text in args.runs:
        name, raw = parse_run(text, base)
        data_key = digest(raw["data"])
        raw["data"]["prepared_dir"] = str(args.out / f"prepared-{data_key}")
        params = parse_params(raw, f"run {name}")
        if not Path(params.data.prepared_dir).exists():
            prepare(params.data.raw_dir, params.data.prepared_dir, params.data.train_limit, params.data.seed,
                    dev_limit=params.data.dev_limit, test_limit=params.data.test_limit,
                    probe_limit=params.data.probe_limit)
        features_key = digest(data_key, raw["model"])
        if features_key not in features_cache:
            features_cache[features_key] = load_features(params, ("sst", "qqp", "sts"), "concat", splits=("train", "dev"))
        features = features_cache[features_key]

        # Concat+SMART+Pretrain at (model.dropout, smart.lambda_s), on the grid or off it; or a Table 2 row.
        spec = table2_spec(params, args.row, params.train.seed) if args.row else \
            table2_cell_spec(params, params.train.seed)
        spec = dataclasses.replace(spec, name=name)
        pretrain_file = None
        if spec.pretrained:
            pretrain_raw = copy.deepcopy(raw)
            pretrain_raw["train"]["seed"] = base["train"]["seed"]
            pretrain_raw["model"]["dropout"] = base["model"]["dropout"]
            pretrain_file = args.out / f"pretrain-{digest(pretrain_raw['data'], pretrain_raw['model'], pretrain_raw['train'])}.safetensors"
            if not pretrain_file.exists():
                started = time.perf_counter()
                pretrain_params = parse_params(pretrain_raw)
                model = train(pretrain_spec(pretrain_params), pretrain_params, features,
                              resolve_compute(pretrain_params.train.precision, pretrain_params.train.device))
                save_model(model, pretrain_file)
                print(f"pretraining for {name}: {time.perf_counter() - started:.0f} s", flush=True)

        started = time.perf_counter()
        compute = resolve_compute(params.train.precision, params.train.device)
        model = train(spec, params, features, compute, init=pretrain_file)
        seconds = time.perf_counter() - started
        metrics, predictions = evaluate(model, features["dev"], params.train.eval_batch_size, compute.device,
                                        compute.autocast)
        dev_outputs[name] = predictions
        results[name] = {**metrics, "train_seconds": round(seconds, 1), "overrides": text.partition(":")[2]}
        print(f"{name:16s} {describe(metrics)}  {seconds:6.1f} s  [{results[name]['overrides']}]", flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))

    labels = {task: features["dev"][task].labels.numpy() for task in ("sst", "qqp", "sts")}
    for group in args.ensemble:
        members = [m for m in group.split(",") if m in dev_outputs]
        if len(members) < 2 or any(len(dev_outputs[m]["sst"]) != len(labels["sst"]) for m in members):
            continue  # members must share the dev set (the same data settings)
        ensemble = scores({task: task_metric(task, combine(task, np.stack([dev_outputs[m][task] for m in members])),
                                             labels[task]) for task in labels})
        results[f"ensemble({group})"] = ensemble
        print(f"ensemble of {group}: {describe(ensemble)}", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
