"""Seeds and intervals: each row's mean and spread over seeds, and the paper's claims as
paired differences with 95 % t-intervals, each tested against zero and against the paper's
own effect (Table 5).

A *row* is a configuration (a Table 2 row, a Table 3 cell, a Figure 3 curve); its runs differ
only in their seed. A claim compares two rows seed by seed: the runs of one seed share their
data order and initial heads, so the paired difference removes what the seed moves in both.

A reproduction asks whether the paper's effect is there, not only whether some effect is:
beside the test of "not zero", a claim of an effect is tested one-sided against the paper's
own effect ("ours is smaller"), after Simonsohn's small telescopes (2015) and Lakens'
equivalence tests for replications. Simonsohn's reference is d33, the effect the original
study had 33 % power to detect; the paper reports one run per row and no spread, so no d33
can be computed and its point estimate is the reference. That estimate carries a seed's noise
of its own, which our seeds' spread of the same difference shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smartmtl.config import Params
from smartmtl.results import paper
from smartmtl.results.outputs import RunRecord, Scores
from smartmtl.variants import smart_pretrain_row, sst_lambda_row

METRICS = ("sst", "qqp", "sts", "overall")


def runs_by_row(metrics: dict[str, RunRecord], split: str = "dev") -> dict[str, dict[int, Scores]]:
    """{row: {seed: scores}} for every run with scores on ``split`` (dev, test or dev_start); rows
    are named as :mod:`smartmtl.variants` names them (``concat_smart``, ``grid-d0.1-l1.0``, ``sst-l5.0``)."""
    rows: dict[str, dict[int, Scores]] = {}
    for record in metrics.values():
        if scores := record.scores(split):
            rows.setdefault(record.row, {})[record.seed] = scores
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
    t-interval, the paired t-test's two-sided p (difference from 0), the one-sided p of "our
    difference is smaller than the paper's" (NaN without a paper number), the equivalence
    test's p (paired TOST against +-delta) and the smallest difference the test could have
    detected at the stated power."""

    n: int
    mean: float
    low: float
    high: float
    p_difference: float
    p_smaller: float
    p_equivalence: float
    detectable: float


def compare(differences: np.ndarray, delta: float, alpha: float, power: float,
            reference: float = math.nan) -> Comparison:
    """The tests of ``differences`` (better - worse, one per seed); ``reference`` is the
    paper's effect, the null value of the one-sided test "ours is smaller"."""
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
                          math.nan, math.nan)
    test = stats.ttest_1samp(differences, 0.0)
    low, high = test.confidence_interval(1 - alpha)
    p_smaller = math.nan if math.isnan(reference) else float(
        stats.ttest_1samp(differences, reference, alternative="less").pvalue)
    p_equivalence = float(ttost_paired(differences, np.zeros(n), -delta, delta)[0])
    effect = TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return Comparison(n, mean, float(low), float(high), float(test.pvalue), p_smaller, p_equivalence,
                      float(effect) * sd)


@dataclass(frozen=True)
class Claim:
    key: str  # its name in params.yaml's claims.primary
    text: str
    better: str  # the row the paper says scores higher (or the same, with expect "same")
    worse: str
    expect: str = "higher"  # "higher", or "same" for a claim of no effect
    metrics: tuple[str, ...] = METRICS
    caveat: str = ""
    # The paper's Table 2 rows (its "Model" names) the claim reads its effect from, better
    # first; None where the paper gives no number (then an effect is tested against zero alone).
    paper_rows: tuple[str, str] | None = None

    def paper_effect(self, metric: str) -> float:
        """The paper's effect on ``metric``; NaN where the paper gives no number."""
        return math.nan if self.paper_rows is None else paper.effect(*self.paper_rows, metric)

    def reference(self, metric: str) -> float:
        """The null value of "ours is smaller than the paper's": the paper's effect where it is one
        in the claimed direction (a claim of an effect, the paper's difference positive); NaN
        otherwise, and then the claim is tested against zero alone."""
        effect = self.paper_effect(metric)
        return effect if self.expect == "higher" and effect > 0 else math.nan


def verdict(claim: Claim, comparison: Comparison, p_difference: float, p_smaller: float, p_equivalence: float,
            alpha: float, delta: float) -> str:
    """The verdict on a claim's primary metric, from its Holm-adjusted p-values.

    A claim of an effect *holds* when the difference from zero is resolved with the paper's
    sign and the paper's effect is not rejected; it is *smaller than the paper's* when the
    one-sided test rejects the paper's effect (the text says whether a smaller positive
    effect is resolved), *reversed* when resolved against the paper's sign."""
    if comparison.n < 2:
        return "not resolved (fewer than 2 seeds)"
    if math.isnan(comparison.p_difference):
        return "not resolved (no spread over seeds: nothing to test against)"
    if claim.expect == "same":
        if p_equivalence < alpha:
            return f"equivalent within +-{delta:g}"
        return "differs" if p_difference < alpha else "not resolved"
    resolved = p_difference < alpha
    if resolved and comparison.mean < 0:
        return "reversed"
    if p_smaller < alpha:  # False for NaN: no paper number
        return "smaller than the paper's (" + ("positive" if resolved else "no effect resolved") + ")"
    return "holds" if resolved else "not resolved"


def figure3_lambdas(params: Params) -> tuple[float, float] | None:
    """The two largest nonzero lambda_s of Figure 3's SST-alone runs (lower, higher); None
    with fewer than two."""
    nonzero = sorted(value for value in params.sweep.sst_lambda_s if value > 0)
    return (nonzero[-2], nonzero[-1]) if len(nonzero) >= 2 else None


NO_PAPER_NUMBER = "no number in the paper: tested against zero"


def paper_claims(params: Params) -> list[Claim]:
    """The paper's claims (Section 5.4), with the rows that test each."""
    cell = smart_pretrain_row(params)
    claims = [
        Claim("smart_sequential", "SMART helps in sequential training (Concat+SMART vs Concat)",
              "concat_smart", "concat", paper_rows=("Concat+SMART", "Concat")),
        Claim("smart_simultaneous",
              "SMART helps in simultaneous training (Concat+SMART* vs Concat*, a control the paper lacks)",
              "concat_smart_star", "concat_star", caveat=NO_PAPER_NUMBER),
        Claim("simultaneous", "Simultaneous beats sequential training (Concat+SMART* vs Concat+SMART)",
              "concat_smart_star", "concat_smart", paper_rows=("Concat+SMART*", "Concat+SMART")),
        Claim("pretrain", "QQP pretraining helps (Concat+SMART+Pretrain vs Concat+SMART*)", cell, "concat_smart_star",
              caveat="one pretraining run, whose QQP steps the other row lacks",
              paper_rows=("Concat+SMART+Pretrain", "Concat+SMART*")),
        Claim("surgery", "Gradient surgery changes nothing (+Surgery vs Concat+SMART+Pretrain)",
              "concat_smart_surgery_pretrain", cell, expect="same",
              paper_rows=("Concat+SMART+Surgery+Pretrain", "Concat+SMART+Pretrain")),
    ]
    if 0.0 in params.sweep.sst_lambda_s and params.smart.lambda_s > 0:
        lambda_s = params.smart.lambda_s
        claims.append(Claim(
            "sst_adversarial",
            f"SMART's adversarial term helps SST when fine-tuning overfits (Figure 3: SST alone, lambda_s "
            f"{lambda_s:g} vs 0)", sst_lambda_row(lambda_s), sst_lambda_row(0.0), metrics=("sst",),
            caveat=NO_PAPER_NUMBER))
    if pair := figure3_lambdas(params):
        low, high = pair
        claims.append(Claim("sst_lambda", f"lambda_s {high:g} beats {low:g} on SST (Figure 3: SST trained alone)",
                            sst_lambda_row(high), sst_lambda_row(low), metrics=("sst",), caveat=NO_PAPER_NUMBER))
    return claims


COLUMNS = ["Claim", "Metric", "Primary", "n", "Difference", "95% low", "95% high", "Paper's effect",
           "Smallest detectable", "p difference (Holm)", "p smaller than paper's (Holm)", "p equivalence (Holm)",
           "Verdict"]


def table5(params: Params, metrics: dict[str, RunRecord], ensemble: dict | None = None) -> pd.DataFrame:
    """One row per claim and metric. Each claim's primary metric (params.yaml's claims.primary)
    gets a verdict from Holm-adjusted p-values over every primary test: each claim's difference
    from zero, a claim of an effect's "smaller than the paper's" where the paper gives a number,
    and a claim of no effect's equivalence. Other metrics are shown without a verdict."""
    from statsmodels.stats.multitest import multipletests

    settings = params.claims
    claims = paper_claims(params)
    if missing := sorted({claim.key for claim in claims} - set(settings.primary)):
        raise ValueError(f"claims.primary names no metric for claim(s) {missing}: name each claim's primary "
                         f"metric in params.yaml ({', '.join(METRICS)})")
    rows = runs_by_row(metrics)
    compared = [(claim, metric, compare(_paired(rows.get(claim.better, {}), rows.get(claim.worse, {}), metric),
                                        settings.equivalence_delta, settings.alpha, settings.power,
                                        claim.reference(metric)))
                for claim in claims for metric in claim.metrics]
    # The Holm family: each primary test that has a p-value.
    family = []
    for index, (claim, metric, comparison) in enumerate(compared):
        if metric == settings.primary[claim.key]:
            family.append((index, "difference", comparison.p_difference))
            family.append((index, "smaller", comparison.p_smaller))
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
        p_smaller = adjusted.get((index, "smaller"), math.nan)
        p_equivalence = adjusted.get((index, "equivalence"), math.nan)
        text = f"{claim.text} ({claim.caveat})" if claim.caveat else claim.text
        table.append({"Claim": text, "Metric": metric, "Primary": "yes" if primary else "", "n": comparison.n,
                      "Difference": comparison.mean, "95% low": comparison.low, "95% high": comparison.high,
                      "Paper's effect": claim.paper_effect(metric),
                      "Smallest detectable": comparison.detectable, "p difference (Holm)": p_difference,
                      "p smaller than paper's (Holm)": p_smaller, "p equivalence (Holm)": p_equivalence,
                      "Verdict": verdict(claim, comparison, p_difference, p_smaller, p_equivalence, settings.alpha,
                                         settings.equivalence_delta) if primary else ""})
    if ensemble and ensemble.get("dev") and ensemble.get("members_dev"):
        best = max(ensemble["members_dev"].values(), key=lambda scores: scores.get("overall", -math.inf))
        for metric in METRICS:
            table.append({"Claim": "The ensemble beats its best member (dev; one ensemble, no test)",
                          "Metric": metric, "Primary": "", "n": 1, "Difference": ensemble["dev"][metric] - best[metric],
                          "Verdict": ""})
    return pd.DataFrame(table, columns=COLUMNS)
