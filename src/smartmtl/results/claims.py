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


def _paired(better: dict[int, dict[str, float]], worse: dict[int, dict[str, float]], metric: str) -> np.ndarray:
    """better - worse, seed by seed, over the seeds both rows ran."""
    seeds = sorted(seed for seed in set(better) & set(worse)
                   if better[seed].get(metric) is not None and worse[seed].get(metric) is not None)
    return np.array([better[seed][metric] - worse[seed][metric] for seed in seeds])


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two rows on one metric: n seeds, the mean difference, its 95 %
    t-interval, the paired t-test's two-sided p, the equivalence test's p (paired TOST against
    +-delta) and the smallest difference the test could have detected at the stated power."""

    n: int
    mean: float
    low: float
    high: float
    p_difference: float
    p_equivalence: float
    detectable: float


def compare(differences: np.ndarray, delta: float, alpha: float, power: float) -> Comparison:
    # scipy and statsmodels are imported here: the ensemble stage imports this module for
    # runs_by_row alone and should not pay for them.
    from scipy import stats
    from statsmodels.stats.power import TTestPower
    from statsmodels.stats.weightstats import ttost_paired

    n = len(differences)
    mean = float(differences.mean()) if n else math.nan
    sd = float(differences.std(ddof=1)) if n > 1 else math.nan
    if n < 2 or sd < 1e-12:  # no spread to test against (rounding aside): intervals and tests are undefined
        return Comparison(n, mean, mean if n > 1 else math.nan, mean if n > 1 else math.nan, math.nan, math.nan,
                          math.nan)
    test = stats.ttest_1samp(differences, 0.0)
    low, high = test.confidence_interval(1 - alpha)
    p_equivalence = float(ttost_paired(differences, np.zeros(n), -delta, delta)[0])
    effect = TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return Comparison(n, mean, float(low), float(high), float(test.pvalue), p_equivalence, float(effect) * sd)


@dataclass(frozen=True)
class Claim:
    key: str  # its name in params.yaml's claims.primary
    text: str
    better: str  # the row the paper says scores higher (or the same, with expect "same")
    worse: str
    expect: str = "higher"  # "higher", or "same" for a claim of no effect
    metrics: tuple[str, ...] = METRICS
    caveat: str = ""


def verdict(claim: Claim, comparison: Comparison, p_difference: float, p_equivalence: float, alpha: float,
            delta: float) -> str:
    """The verdict on a claim's primary metric, from its Holm-adjusted p-values."""
    if comparison.n < 2:
        return "not resolved (fewer than 2 seeds)"
    if math.isnan(comparison.p_difference):
        return "not resolved (no spread over seeds: nothing to test against)"
    if claim.expect == "same":
        if p_equivalence < alpha:
            return f"equivalent within +-{delta:g}"
        return "differs" if p_difference < alpha else "not resolved"
    if p_difference < alpha:
        return "holds" if comparison.mean > 0 else "reversed"
    return "not resolved"


def paper_claims(params: Params) -> list[Claim]:
    """The paper's claims (Section 5.4), with the rows that test each."""
    cell = smart_pretrain_row(params)
    low, high = min(params.sweep.sst_lambda_s), max(params.sweep.sst_lambda_s)
    return [
        Claim("smart_sequential", "SMART helps in sequential training (Concat+SMART vs Concat)",
              "concat_smart", "concat"),
        Claim("smart_simultaneous",
              "SMART helps in simultaneous training (Concat+SMART* vs Concat*, a control the paper lacks)",
              "concat_smart_star", "concat_star"),
        Claim("simultaneous", "Simultaneous beats sequential training (Concat+SMART* vs Concat+SMART)",
              "concat_smart_star", "concat_smart"),
        Claim("pretrain", "QQP pretraining helps (Concat+SMART+Pretrain vs Concat+SMART*)", cell, "concat_smart_star",
              caveat="one pretraining run, whose QQP steps the other row lacks"),
        Claim("surgery", "Gradient surgery changes nothing (+Surgery vs Concat+SMART+Pretrain)",
              "concat_smart_surgery_pretrain", cell, expect="same"),
        Claim("sst_lambda", f"lambda_s {high:g} beats {low:g} on SST (Figure 3: SST trained alone)",
              sst_lambda_row(high), sst_lambda_row(low), metrics=("sst",)),
    ]


COLUMNS = ["Claim", "Metric", "Primary", "n", "Difference", "95% low", "95% high", "Smallest detectable",
           "p difference (Holm)", "p equivalence (Holm)", "Verdict"]


def table5(params: Params, metrics: dict[str, dict], ensemble: dict | None = None) -> pd.DataFrame:
    """One row per claim and metric. Each claim's primary metric (params.yaml's claims.primary)
    gets a verdict from Holm-adjusted p-values over every primary test (a claim of no effect
    contributes two: its equivalence and its difference); other metrics are shown without one."""
    from statsmodels.stats.multitest import multipletests

    settings = params.claims
    claims = paper_claims(params)
    if missing := sorted({claim.key for claim in claims} - set(settings.primary)):
        raise ValueError(f"claims.primary names no metric for claim(s) {missing}: name each claim's primary "
                         f"metric in params.yaml ({', '.join(METRICS)})")
    rows = runs_by_row(metrics)
    compared = [(claim, metric, compare(_paired(rows.get(claim.better, {}), rows.get(claim.worse, {}), metric),
                                        settings.equivalence_delta, settings.alpha, settings.power))
                for claim in claims for metric in claim.metrics]
    # The Holm family: each primary test that has a p-value.
    family = []
    for index, (claim, metric, comparison) in enumerate(compared):
        if metric == settings.primary[claim.key]:
            family.append((index, "difference", comparison.p_difference))
            if claim.expect == "same":
                family.append((index, "equivalence", comparison.p_equivalence))
    tested = [(index, kind, p) for index, kind, p in family if not math.isnan(p)]
    adjusted = dict.fromkeys(((index, kind) for index, kind, _ in family), math.nan)
    if tested:
        holm = multipletests([p for _, _, p in tested], alpha=settings.alpha, method="holm")[1]
        adjusted.update({(index, kind): float(p) for (index, kind, _), p in zip(tested, holm, strict=True)})

    table = []
    for index, (claim, metric, comparison) in enumerate(compared):
        primary = metric == settings.primary[claim.key]
        p_difference = adjusted.get((index, "difference"), math.nan)
        p_equivalence = adjusted.get((index, "equivalence"), math.nan)
        text = f"{claim.text} ({claim.caveat})" if claim.caveat else claim.text
        table.append({"Claim": text, "Metric": metric, "Primary": "yes" if primary else "", "n": comparison.n,
                      "Difference": comparison.mean, "95% low": comparison.low, "95% high": comparison.high,
                      "Smallest detectable": comparison.detectable, "p difference (Holm)": p_difference,
                      "p equivalence (Holm)": p_equivalence,
                      "Verdict": verdict(claim, comparison, p_difference, p_equivalence, settings.alpha,
                                         settings.equivalence_delta) if primary else ""})
    if ensemble and ensemble.get("dev") and ensemble.get("members_dev"):
        best = max(ensemble["members_dev"].values(), key=lambda scores: scores.get("overall", -math.inf))
        for metric in METRICS:
            table.append({"Claim": "The ensemble beats its best member (dev; one ensemble, no test)",
                          "Metric": metric, "Primary": "", "n": 1, "Difference": ensemble["dev"][metric] - best[metric],
                          "Verdict": ""})
    return pd.DataFrame(table, columns=COLUMNS)
