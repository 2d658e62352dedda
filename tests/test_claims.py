"""Table 5's statistics on hand cases: the paired test, the one-sided test against the paper's
effect, equivalence (TOST), Holm, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import tiny_params
from scipy import stats
from statsmodels.stats.multitest import multipletests

from smartmtl.config import ClaimsParams
from smartmtl.results import paper
from smartmtl.results.claims import Claim, Comparison, compare, paper_claims, table5, verdict
from smartmtl.results.outputs import RunRecord


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


def test_compare_tests_one_sided_against_the_papers_effect():
    differences = np.array([0.010, 0.012, 0.008, 0.011])
    result = compare(differences, delta=0.01, alpha=0.05, power=0.8, reference=0.036)
    expected = stats.ttest_1samp(differences, 0.036, alternative="less").pvalue
    assert result.p_smaller == pytest.approx(expected)
    # By hand: the lower tail of t at (mean - reference) / se.
    se = differences.std(ddof=1) / 2
    assert result.p_smaller == pytest.approx(stats.t.cdf((differences.mean() - 0.036) / se, 3))
    assert result.p_smaller < 1e-3
    # A difference above the paper's is not smaller; without a paper number there is no test.
    assert compare(differences + 0.05, 0.01, 0.05, 0.8, reference=0.036).p_smaller > 0.5
    assert math.isnan(compare(differences, 0.01, 0.05, 0.8).p_smaller)


def test_the_papers_effects_come_from_its_table_2():
    assert paper.effect("Concat+SMART", "Concat", "sst") == 0.036
    assert paper.effect("Concat+SMART*", "Concat+SMART", "overall") == 0.044
    assert paper.effect("Concat+SMART+Pretrain", "Concat+SMART*", "overall") == 0.014
    assert math.isnan(paper.effect("Concat+SMART*", "Concat* (no SMART)", "overall"))
    with pytest.raises(KeyError, match="has no row 'Concat[+]Nothing'"):
        paper.table2_scores("Concat+Nothing")


def _records(rows: dict[str, list[float]]) -> dict[str, RunRecord]:
    """Records of runs: each row's overall/sst/qqp/sts dev score per seed."""
    records = {}
    for row, values in rows.items():
        for seed, value in enumerate(values):
            scores = {metric: float(value) for metric in ("sst", "qqp", "sts", "overall")}
            records[f"{row}-s{seed}"] = RunRecord(name=f"{row}-s{seed}", row=row, kind="table2", label=row, seed=seed,
                                                  lambda_s=1.0, dropout=0.1, dev=scores)
    return records


def _figure3_params(prepared_dir, sst_lambda_s=(0.0, 0.5, 1.0, 5.0)):
    return tiny_params(prepared_dir, claims={"equivalence_delta": 0.05}, smart={"lambda_s": 1.0},
                       sweep={"sst_lambda_s": list(sst_lambda_s)})


def test_claims_carry_the_papers_effect_and_figure_3s_rows(prepared_dir):
    claims = {claim.key: claim for claim in paper_claims(_figure3_params(prepared_dir))}
    assert claims["smart_sequential"].paper_effect("sst") == 0.036
    assert claims["simultaneous"].paper_effect("overall") == 0.044
    assert claims["pretrain"].paper_effect("overall") == 0.014
    assert math.isnan(claims["smart_simultaneous"].paper_effect("overall"))
    # Only an effect in the claimed direction is a reference to test against.
    assert claims["smart_sequential"].reference("sst") == 0.036
    assert claims["smart_sequential"].paper_effect("overall") == -0.002
    assert math.isnan(claims["smart_sequential"].reference("overall"))
    assert math.isnan(claims["surgery"].reference("overall"))
    # Figure 3: lambda_s (smart.lambda_s) against 0, and the two largest nonzero values.
    adversarial = claims["sst_adversarial"]
    assert (adversarial.better, adversarial.worse, adversarial.metrics) == ("sst-l1.0", "sst-l0.0", ("sst",))
    assert math.isnan(adversarial.paper_effect("sst"))
    assert (claims["sst_lambda"].better, claims["sst_lambda"].worse) == ("sst-l5.0", "sst-l1.0")
    # Without a lambda_s = 0 control there is no such claim.
    keys = {claim.key for claim in paper_claims(_figure3_params(prepared_dir, (0.5, 1.0, 5.0)))}
    assert "sst_adversarial" not in keys and "sst_lambda" in keys


def test_table5_holm_adjusts_over_the_primary_tests_and_gives_verdicts(prepared_dir):
    params = _figure3_params(prepared_dir)
    claims = {claim.key: claim for claim in paper_claims(params)}
    base = np.array([0.50, 0.52, 0.49, 0.51])
    star = base + [0.010, 0.011, 0.009, 0.010]  # 0.010 over Concat+SMART: the paper's 0.044 is rejected
    pretrain = star + [-0.20, -0.22, -0.19, -0.21]
    sequential = base + [0.10, 0.11, 0.09, 0.10]
    rows = {
        "concat": base - [0.10, 0.11, 0.09, 0.10], "concat_smart": base,            # holds: +0.10 vs the paper's 0.036
        "concat_star": star + [0.02, -0.01, 0.01, -0.02],                           # not resolved (no paper number)
        "concat_smart_star": star,                                                  # smaller than the paper's
        claims["pretrain"].better: pretrain,                                        # reversed vs concat_smart_star
        "concat_smart_surgery_pretrain": pretrain + [0.001, -0.002, 0.002, -0.001],  # equivalent
        "sst-l1.0": sequential, "sst-l0.0": base,                                   # holds against zero
        "sst-l5.0": base, "sst-l0.5": base,                                         # sst_lambda: 5 vs 1, reversed
    }
    frame = table5(params, _records(rows))
    primary = frame[frame["Primary"] == "yes"].set_index("Claim")
    verdicts = {key: primary.loc[primary.index.str.startswith(claims[key].text), "Verdict"].iloc[0]
                for key in claims}
    assert verdicts == {
        "smart_sequential": "holds", "smart_simultaneous": "not resolved", "simultaneous":
        "smaller than the paper's (positive)", "pretrain": "reversed", "surgery": "equivalent within +-0.05",
        "sst_adversarial": "holds", "sst_lambda": "reversed"}
    assert primary.loc[primary.index.str.startswith(claims["simultaneous"].text), "Paper's effect"].iloc[0] == 0.044
    # Holm over every primary test: differences from 0 (scipy's paired t-test), smaller than the
    # paper's (one-sided, against its effect) and the equivalence of the no-effect claim.
    raw, adjusted = [], []
    for key, claim in claims.items():
        metric = params.claims.primary[key]
        better, worse = np.asarray(rows[claim.better]), np.asarray(rows[claim.worse])
        row = frame[frame["Claim"].str.startswith(claim.text) & (frame["Metric"] == metric)].iloc[0]
        raw.append(stats.ttest_rel(better, worse).pvalue)
        adjusted.append(row["p difference (Holm)"])
        if claim.expect == "higher" and claim.paper_effect(metric) > 0:
            raw.append(stats.ttest_1samp(better - worse, claim.paper_effect(metric), alternative="less").pvalue)
            adjusted.append(row["p smaller than paper's (Holm)"])
        else:
            assert math.isnan(row["p smaller than paper's (Holm)"])
        if claim.expect == "same":
            differences = better - worse
            se = differences.std(ddof=1) / 2
            raw.append(max(stats.t.sf((differences.mean() + 0.05) / se, 3), stats.t.cdf((differences.mean() - 0.05) / se, 3)))
            adjusted.append(row["p equivalence (Holm)"])
    assert len(raw) == 7 + 3 + 1
    assert adjusted == pytest.approx(multipletests(raw, alpha=0.05, method="holm")[1])
    order = np.argsort(raw)
    m = len(raw)
    expected = np.minimum(1, np.maximum.accumulate([(m - rank) * raw[i] for rank, i in enumerate(order)]))
    assert np.asarray(adjusted)[order] == pytest.approx(expected)
    # Other metrics are shown without a verdict.
    assert (frame.loc[frame["Primary"] != "yes", "Verdict"].fillna("") == "").all()


def _comparison(mean: float) -> Comparison:
    return Comparison(n=4, mean=mean, low=math.nan, high=math.nan, p_difference=0.5, p_smaller=0.5,
                      p_equivalence=0.5, detectable=math.nan)


@pytest.mark.parametrize(("expect", "mean", "p_difference", "p_smaller", "p_equivalence", "expected"), [
    ("higher", 0.05, 0.001, 0.9, math.nan, "holds"),
    ("higher", 0.05, 0.001, math.nan, math.nan, "holds"),  # no paper number: against zero alone
    ("higher", 0.01, 0.001, 0.001, math.nan, "smaller than the paper's (positive)"),
    ("higher", 0.004, 0.3, 0.01, math.nan, "smaller than the paper's (no effect resolved)"),
    ("higher", -0.004, 0.3, 0.01, math.nan, "smaller than the paper's (no effect resolved)"),
    ("higher", -0.05, 0.001, 0.001, math.nan, "reversed"),
    ("higher", 0.02, 0.2, 0.2, math.nan, "not resolved"),
    ("same", 0.001, 0.8, math.nan, 0.01, "equivalent within +-0.01"),
    ("same", 0.05, 0.001, math.nan, 0.9, "differs"),
    ("same", 0.005, 0.3, math.nan, 0.3, "not resolved"),
])
def test_verdicts(expect, mean, p_difference, p_smaller, p_equivalence, expected):
    claim = Claim("key", "text", "a", "b", expect=expect)
    assert verdict(claim, _comparison(mean), p_difference, p_smaller, p_equivalence, alpha=0.05, delta=0.01) == expected


def test_table5_needs_a_primary_metric_for_every_claim(prepared_dir):
    params = tiny_params(prepared_dir)
    params = params.model_copy(update={"claims": ClaimsParams(primary={"pretrain": "overall"})})
    with pytest.raises(ValueError, match="claims.primary names no metric"):
        table5(params, {})
