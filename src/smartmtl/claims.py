"""Seeds and intervals: each row's mean and spread over seeds, and the paper's claims as
paired differences with 95 % t-intervals (Table 5).

A *row* is a configuration (a Table 2 row, a Table 3 cell, a Figure 3 curve); its runs differ
only in their seed. A claim compares two rows seed by seed: the runs of one seed share their
data order and initial heads, so the paired difference removes what the seed moves in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smartmtl.config import Params
from smartmtl.variants import smart_pretrain_row, sst_lambda_row

METRICS = ("sst", "qqp", "sts", "overall")


def runs_by_row(metrics: dict[str, dict], split: str = "dev") -> dict[str, dict[int, dict[str, float]]]:
    """{row: {seed: scores}} for every run with scores on ``split``; rows are named as
    :mod:`smartmtl.variants` names them (``concat_smart``, ``grid-d0.1-l1.0``, ``sst-l5.0``)."""
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for record in metrics.values():
        if scores := record.get(split):
            rows.setdefault(record["row"], {})[int(record["config"]["seed"])] = scores
    return rows


def spread(by_seed: dict[int, dict[str, float]], metric: str) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one run) and number of runs."""
    values = [scores[metric] for scores in by_seed.values() if scores.get(metric) is not None]
    if not values:
        return math.nan, math.nan, 0
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan, len(values)


def paired_difference(better: dict[int, dict[str, float]], worse: dict[int, dict[str, float]],
                      metric: str) -> tuple[int, float, float, float]:
    """n, mean and 95 % t-interval of better - worse over the seeds both rows ran."""
    seeds = sorted(seed for seed in set(better) & set(worse)
                   if better[seed].get(metric) is not None and worse[seed].get(metric) is not None)
    differences = np.array([better[seed][metric] - worse[seed][metric] for seed in seeds])
    n = len(differences)
    if n == 0:
        return 0, math.nan, math.nan, math.nan
    mean = float(differences.mean())
    if n == 1:
        return 1, mean, math.nan, math.nan
    from scipy import stats  # here, not at the top: the ensemble stage imports this module for runs_by_row alone

    half = float(stats.t.ppf(0.975, n - 1) * differences.std(ddof=1) / math.sqrt(n))
    return n, mean, mean - half, mean + half


@dataclass(frozen=True)
class Claim:
    text: str
    better: str  # the row the paper says scores higher (or the same, with expect "same")
    worse: str
    expect: str = "higher"  # "higher", or "same" for a claim of no effect
    metrics: tuple[str, ...] = METRICS


def verdict(expect: str, n: int, low: float, high: float) -> str:
    if n < 2:
        return "not resolved (fewer than 2 seeds)"
    if expect == "same":
        return "holds (no difference resolved)" if low <= 0 <= high else "differs"
    if low > 0:
        return "holds"
    if high < 0:
        return "reversed"
    return "not resolved at this scale"


def paper_claims(params: Params) -> list[Claim]:
    """The paper's claims (Section 5.4), with the rows that test each."""
    cell = smart_pretrain_row(params)
    low, high = min(params.sweep.sst_lambda_s), max(params.sweep.sst_lambda_s)
    return [
        Claim("SMART helps in sequential training (Concat+SMART vs Concat)", "concat_smart", "concat"),
        Claim("SMART helps in simultaneous training (Concat+SMART* vs Concat*, a control the paper lacks)",
              "concat_smart_star", "concat_star"),
        Claim("Simultaneous beats sequential training (Concat+SMART* vs Concat+SMART)",
              "concat_smart_star", "concat_smart"),
        Claim("QQP pretraining helps (Concat+SMART+Pretrain vs Concat+SMART*)", cell, "concat_smart_star"),
        Claim("Gradient surgery changes nothing (+Surgery vs Concat+SMART+Pretrain)",
              "concat_smart_surgery_pretrain", cell, expect="same"),
        Claim(f"lambda_s {high:g} beats {low:g} on SST (Figure 3: SST trained alone)",
              sst_lambda_row(high), sst_lambda_row(low), metrics=("sst",)),
    ]


def table5(params: Params, metrics: dict[str, dict], ensemble: dict | None = None) -> pd.DataFrame:
    """One row per claim and metric: n, mean paired difference, its 95 % interval, the verdict."""
    rows = runs_by_row(metrics)
    table = []
    for claim in paper_claims(params):
        for metric in claim.metrics:
            n, mean, low, high = paired_difference(rows.get(claim.better, {}), rows.get(claim.worse, {}), metric)
            table.append({"Claim": claim.text, "Metric": metric, "n": n, "Difference": mean,
                          "95% low": low, "95% high": high, "Verdict": verdict(claim.expect, n, low, high)})
    if ensemble and ensemble.get("dev") and ensemble.get("members_dev"):
        best = max(ensemble["members_dev"].values(), key=lambda scores: scores.get("overall", -math.inf))
        for metric in METRICS:
            difference = ensemble["dev"][metric] - best[metric]
            table.append({"Claim": "The ensemble beats its best member (dev; one ensemble, no interval)",
                          "Metric": metric, "n": 1, "Difference": difference, "95% low": math.nan,
                          "95% high": math.nan, "Verdict": "higher" if difference > 0 else "not higher"})
    return pd.DataFrame(table, columns=["Claim", "Metric", "n", "Difference", "95% low", "95% high", "Verdict"])
