"""Screen Figure 3's settings: train SST alone at a few lambda_s and seeds with the project's
own loop, outside DVC, scoring the whole dev set after every epoch; print each run's dev
accuracy and training loss per epoch, its cost per epoch, and the power of the paired
lambda_s comparison at the last epoch (Figure 3's claim).

Run it on seeds the claims do not use (sweep.seeds), so that the settings it picks are not
fitted to the claims' runs. Overrides are ``KEY=VALUE`` over the preset; values are YAML.

    python bench/fig3_screen.py sweep.sst_epochs=8 sweep.sst_train_rows=200 train.precision=fp32 \\
        --preset laptop --seeds 10 11 --lambdas 0.0 1.0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml
from statsmodels.stats.power import TTestPower

from smartmtl.config import parse_params
from smartmtl.data.prepare import prepare
from smartmtl.model.features import load_features
from smartmtl.model.inference import evaluate
from smartmtl.presets import render
from smartmtl.train.hardware import resolve_compute
from smartmtl.train.loop import TrainingLog, train
from smartmtl.variants import sst_lambda_spec


class EpochLog(TrainingLog):
    """Keeps each epoch's dev scores and mean training terms, as the loop reports them."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []

    def epoch(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.epochs.append(dict(metrics))


def override(raw: dict, assignment: str) -> None:
    key, value = assignment.split("=", 1)
    *parents, leaf = key.split(".")
    node = raw
    for parent in parents:
        node = node[parent]
    node[leaf] = yaml.safe_load(value)


def paired_power(differences: list[float], effect: float, alpha: float, power: float) -> dict:
    """Seeds a paired t-test needs to detect ``effect`` with the screen's spread of the
    paired differences (two-sided, as the claims test)."""
    sd = float(np.std(differences, ddof=1))
    size = effect / sd
    seeds = TTestPower().solve_power(effect_size=size, alpha=alpha, power=power, alternative="two-sided")
    return {"mean": float(np.mean(differences)), "sd": sd, "effect_size": size, "seeds_needed": float(seeds),
            "power_at": {n: float(TTestPower().power(effect_size=size, nobs=n, alpha=alpha,
                                                     alternative="two-sided")) for n in (3, 4, 5, 6, 8)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE over the preset (before the options)")
    parser.add_argument("--preset", default="laptop")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--effect", type=float, default=0.036, help="the paper's SMART-on-SST gain")
    parser.add_argument("--out", type=Path, default=Path("bench/out/fig3"))
    args = parser.parse_args()

    raw = render(args.preset)
    raw["sweep"].update(seeds=args.seeds, descriptive_seeds=args.seeds, sst_lambda_s=args.lambdas)
    for assignment in args.overrides:
        override(raw, assignment)
    params = parse_params(raw, "fig3 screen")
    prepared = args.out / "prepared"
    if not prepared.exists():
        prepare(params.data.raw_dir, prepared, params.data.train_limit, params.data.seed,
                dev_limit=params.data.dev_limit, test_limit=params.data.test_limit,
                probe_limit=params.data.probe_limit)
    params = params.model_copy(update={"data": params.data.model_copy(update={"prepared_dir": prepared})})
    features = load_features(params, ("sst",), "concat", splits=("train", "dev"))
    compute = resolve_compute(params.train.precision)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"screen: {' '.join(args.overrides)}; lambdas {args.lambdas}, seeds {args.seeds}", flush=True)

    results = []
    for lambda_s in args.lambdas:
        for seed in args.seeds:
            spec = sst_lambda_spec(params, lambda_s, seed)
            log = EpochLog()
            started = time.perf_counter()
            model = train(spec, params, features, compute, log=log)
            trained = time.perf_counter() - started
            started = time.perf_counter()
            final = evaluate(model, features["dev"], params.train.eval_batch_size, compute.device,
                             compute.autocast)[0]
            scoring = time.perf_counter() - started
            dev = [epoch.get("dev/sst") for epoch in log.epochs[:-1]] + [final["sst"]]
            loss = [epoch["train/loss_sst"] for epoch in log.epochs]
            # An epoch's seconds include the dev scoring after it (all but the last).
            train_per_epoch = (trained - scoring * (len(dev) - 1)) / len(dev)
            record = {"lambda_s": lambda_s, "seed": seed, "dev_sst": dev, "train_loss": loss,
                      "seconds": round(trained, 1), "train_seconds_per_epoch": round(train_per_epoch, 1),
                      "dev_scoring_seconds": round(scoring, 1)}
            results.append(record)
            print(f"lambda_s {lambda_s:g} seed {seed}: dev " + " ".join(f"{d:.3f}" for d in dev)
                  + " | loss " + " ".join(f"{v:.3f}" for v in loss)
                  + f" | {trained:.0f} s, {train_per_epoch:.1f} s/epoch training, {scoring:.1f} s per dev scoring",
                  flush=True)
            (args.out / "results.json").write_text(json.dumps(results, indent=2))

    low, high = min(args.lambdas), [lam for lam in args.lambdas if lam > min(args.lambdas)]
    for lam in high:
        last = {r["seed"]: r["dev_sst"][-1] for r in results if r["lambda_s"] == lam}
        base = {r["seed"]: r["dev_sst"][-1] for r in results if r["lambda_s"] == low}
        differences = [last[s] - base[s] for s in args.seeds]
        if len(differences) > 1:
            power = paired_power(differences, args.effect, params.claims.alpha, params.claims.power)
            print(f"lambda_s {lam:g} - {low:g} at the last epoch: {json.dumps(power)}", flush=True)


if __name__ == "__main__":
    main()
