"""The paper's numbers (Tables 2-4, dev scores; Table 4 also test), and the effect each of its
claims reports, derived from them.

A claim compares two of the paper's Table 2 rows; its *reference effect* on a metric is the
paper's score of the better row minus that of the worse one, each a single run. Table 5 tests
our paired differences over seeds against it (smartmtl.results.claims).
"""

from __future__ import annotations

import math

# Table 2. The paper's "Training Method" column has merged cells; we read them as
# Conventional (Baseline, Cos-Sim), Sequential (Concat, Concat+SMART) and Simultaneous
# (the rest), as Section 5.4.1 describes. ``model`` is how we find our row.
PAPER_TABLE2 = [
    {"Model": "Baseline", "Training Method": "Conventional", "model": "baseline", "sst": 0.506, "qqp": 0.673, "sts": 0.224, "overall": 0.597},
    {"Model": "Cos-Sim", "Training Method": "Conventional", "model": "cos_sim", "sst": 0.507, "qqp": 0.787, "sts": 0.394, "overall": 0.664},
    {"Model": "Concat", "Training Method": "Sequential", "model": "concat", "sst": 0.494, "qqp": 0.795, "sts": 0.833, "overall": 0.735},
    {"Model": "Concat+SMART", "Training Method": "Sequential", "model": "concat_smart", "sst": 0.530, "qqp": 0.782, "sts": 0.771, "overall": 0.733},
    {"Model": "Concat+SMART*", "Training Method": "Simultaneous", "model": "concat_smart_star", "sst": 0.510, "qqp": 0.883, "sts": 0.874, "overall": 0.777},
    # Not in the paper: the control that "SMART helps in simultaneous training" needs.
    {"Model": "Concat* (no SMART)", "Training Method": "Simultaneous", "model": "concat_star", "sst": math.nan, "qqp": math.nan, "sts": math.nan, "overall": math.nan},
    {"Model": "Concat+SMART+Pretrain", "Training Method": "Simultaneous", "model": None, "sst": 0.530, "qqp": 0.906, "sts": 0.873, "overall": 0.791},
    {"Model": "Concat+SMART+Surgery+Pretrain", "Training Method": "Simultaneous", "model": "concat_smart_surgery_pretrain", "sst": 0.533, "qqp": 0.904, "sts": 0.864, "overall": 0.790},
]

# Table 3: (lambda_s, dropout) -> dev scores of Concat+SMART+Pretrain.
PAPER_TABLE3 = {
    (1.0, 0.1): {"sst": 0.536, "qqp": 0.905, "sts": 0.884, "overall": 0.794},
    (1.0, 0.2): {"sst": 0.546, "qqp": 0.900, "sts": 0.888, "overall": 0.797},
    (1.0, 0.3): {"sst": 0.530, "qqp": 0.906, "sts": 0.873, "overall": 0.791},
    (1.0, 0.4): {"sst": 0.536, "qqp": 0.900, "sts": 0.888, "overall": 0.793},
    (1.0, 0.5): {"sst": 0.537, "qqp": 0.897, "sts": 0.884, "overall": 0.792},
    (5.0, 0.1): {"sst": 0.544, "qqp": 0.904, "sts": 0.893, "overall": 0.798},
    (5.0, 0.2): {"sst": 0.530, "qqp": 0.905, "sts": 0.895, "overall": 0.794},
    (5.0, 0.3): {"sst": 0.540, "qqp": 0.902, "sts": 0.889, "overall": 0.796},
    (5.0, 0.4): {"sst": 0.544, "qqp": 0.905, "sts": 0.889, "overall": 0.798},
    (5.0, 0.5): {"sst": 0.530, "qqp": 0.903, "sts": 0.884, "overall": 0.792},
}

# Table 4: the ensemble, with the leaderboard ranking the paper reports.
PAPER_TABLE4 = {
    "Dev": {"sst": 0.545, "qqp": 0.908, "sts": 0.894, "overall": 0.800, "ranking": 2},
    "Test": {"sst": 0.540, "qqp": 0.908, "sts": 0.893, "overall": 0.798, "ranking": 3},
}


def table2_scores(model: str) -> dict[str, float]:
    """The paper's Table 2 dev scores of the row it names ``model`` (its "Model" column)."""
    for row in PAPER_TABLE2:
        if row["Model"] == model:
            return {metric: row[metric] for metric in ("sst", "qqp", "sts", "overall")}
    raise KeyError(f"the paper's Table 2 has no row {model!r}: {[row['Model'] for row in PAPER_TABLE2]}")


def effect(better: str, worse: str, metric: str) -> float:
    """The paper's Table 2 score of row ``better`` minus that of row ``worse`` on ``metric``:
    NaN where the paper has no number for either (our own control rows). Rounded to the
    paper's three decimals, so that 0.530 - 0.494 reads 0.036 and not 0.036000000000000004."""
    difference = table2_scores(better)[metric] - table2_scores(worse)[metric]
    return difference if math.isnan(difference) else round(difference, 3)
