"""Table 5's statistics on hand cases: the paired test, equivalence (TOST), Holm, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import tiny_params
from scipy import stats

from smartmtl.config import ClaimsParams
from smartmtl.results.claims import compare, paper_claims, table5


def test_compare_gives_the_paired_t_test_its_interval_and_tost_by_hand():
    differences = np.array([0.02, 0.03, 0.025, 0.035])
    result = compare(differences, delta=0.05, alpha=0.05, power=0.8)
    n, mean, sd = 4, differences.mean(), differences.std(ddof=1)
    se = sd / math.sqrt(n)
    assert result.mean == pytest.approx(0.0275)
    assert result.p_difference == pytest.approx(2 * stats.t.sf(mean / se, n - 1))
    half = stats.t.ppf(0.975, n - 1) * se
    assert (result.low, result.high) == pytest.approx((mean - half, mean + half))
    # TOST: the larger of the two one-sided p-values against -delta and +delta.
    p_lower, p_upper = stats.t.sf((mean + 0.05) / se, n - 1), stats.t.cdf((mean - 0.05) / se, n - 1)
    assert result.p_equivalence == pytest.approx(max(p_lower, p_upper))
    # The smallest detectable difference is the effect size for power 0.8 times the spread:
    # a difference of that size is detected about 80 % of the time, by the noncentral t.
    critical = stats.t.ppf(0.975, n - 1)
    power = stats.nct.sf(critical, n - 1, result.detectable / se)
    assert power == pytest.approx(0.8, abs=0.01)


def test_compare_with_one_seed_or_no_spread_tests_nothing():
    assert math.isnan(compare(np.array([0.1]), 0.01, 0.05, 0.8).p_difference)
    flat = compare(np.array([0.1, 0.1, 0.1]), 0.01, 0.05, 0.8)
    assert flat.mean == pytest.approx(0.1) and math.isnan(flat.p_difference)


def _records(rows: dict[str, list[float]]) -> dict[str, dict]:
    """Metrics records of runs: each row's overall/sst/qqp/sts dev score per seed."""
    records = {}
    for row, values in rows.items():
        for seed, value in enumerate(values):
            scores = {metric: value for metric in ("sst", "qqp", "sts", "overall")}
            records[f"{row}-s{seed}"] = {"row": row, "config": {"seed": seed}, "dev": scores}
    return records


def test_table5_holm_adjusts_over_the_primary_tests_and_gives_verdicts(prepared_dir):
    params = tiny_params(prepared_dir, claims={"equivalence_delta": 0.05})
    claims = {claim.key: claim for claim in paper_claims(params)}
    base = np.array([0.50, 0.52, 0.49, 0.51])
    star = base + [0.01, -0.02, 0.02, -0.01]
    pretrain = star + [-0.20, -0.22, -0.19, -0.21]
    rows = {
        "concat": base, "concat_smart": base + [0.10, 0.11, 0.09, 0.10],          # holds
        "concat_star": base, "concat_smart_star": star,                           # not resolved
        claims["pretrain"].better: pretrain,                                      # reversed vs concat_smart_star
        "concat_smart_surgery_pretrain": pretrain + [0.001, -0.002, 0.002, -0.001],  # equivalent
        claims["sst_lambda"].better: base, claims["sst_lambda"].worse: base,       # no spread: untested
    }
    frame = table5(params, _records(rows))
    primary = frame[frame["Primary"] == "yes"].set_index("Claim")
    verdicts = {key: primary.loc[primary.index.str.startswith(claims[key].text), "Verdict"].iloc[0]
                for key in claims}
    assert verdicts["smart_sequential"] == "holds"
    assert verdicts["smart_simultaneous"] == "not resolved"
    assert verdicts["pretrain"] == "reversed"
    assert verdicts["surgery"] == "equivalent within +-0.05"
    assert verdicts["sst_lambda"].startswith("not resolved")
    # Holm over the primary tests with a p-value, checked against the unadjusted ones by hand.
    raw, adjusted = [], []
    for key in ("smart_sequential", "smart_simultaneous", "simultaneous", "pretrain", "surgery"):
        claim = claims[key]
        metric = params.claims.primary[key]
        better, worse = rows[claim.better], rows[claim.worse]
        raw.append(stats.ttest_rel(better, worse).pvalue)
        row = frame[frame["Claim"].str.startswith(claim.text) & (frame["Metric"] == metric)].iloc[0]
        adjusted.append(row["p difference (Holm)"])
        if claim.expect == "same":
            differences = np.asarray(better) - np.asarray(worse)
            se = differences.std(ddof=1) / 2
            raw.append(max(stats.t.sf((differences.mean() + 0.05) / se, 3), stats.t.cdf((differences.mean() - 0.05) / se, 3)))
            adjusted.append(row["p equivalence (Holm)"])
    order = np.argsort(raw)
    m = len(raw)
    expected = np.minimum(1, np.maximum.accumulate([(m - rank) * raw[i] for rank, i in enumerate(order)]))
    assert np.asarray(adjusted)[order] == pytest.approx(expected)
    # Other metrics are shown without a verdict.
    assert (frame.loc[frame["Primary"] != "yes", "Verdict"].fillna("") == "").all()


def test_table5_needs_a_primary_metric_for_every_claim(prepared_dir):
    params = tiny_params(prepared_dir)
    params = params.model_copy(update={"claims": ClaimsParams(primary={"pretrain": "overall"})})
    with pytest.raises(ValueError, match="claims.primary names no metric"):
        table5(params, {})
