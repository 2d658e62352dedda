"""What each trained model is: Table 2's rows, Table 3's grid, Figure 3's lambda_s runs.

Every model the pipeline trains is described by one :class:`RunSpec`, built here from the
parameters, so that a stage names a model and this module says how it trains. A *row* is a
configuration (a Table 2 row, a grid cell, a Figure 3 curve); a *run* is that row trained with
one seed, named ``<row>-s<seed>``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from smartmtl.config import Params
from smartmtl.errors import UserError

PRETRAIN = "pretrain"
# Table 2's Concat+SMART+Pretrain row when its (dropout, lambda_s) is not a cell of the grid.
TABLE2_CELL = "table2-cell"


class VariantError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class RunSpec:
    name: str
    kind: str  # table2 | grid | sst_lambda | pretrain
    label: str  # the paper's name for it
    head: str
    schedule: str
    epochs: int  # passes the schedule makes (sequential runs read train.sequential_epochs instead)
    smart: bool
    surgery: bool
    pretrained: bool
    dropout: float
    lambda_s: float
    seed: int
    row: str  # the configuration this run repeats with its seed
    # Training rows of each task it reads: that many drawn with data.seed (None = all; only
    # Figure 3's runs, sweep.sst_train_rows, read fewer).
    train_rows: int | None = None

    def config(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key not in ("name", "kind", "label", "row")}


def schedule_epochs(params: Params, schedule: str) -> int:
    """The epochs a schedule trains for. Each reads only its own setting, the one dvc.yaml
    declares for the stages that train it: QQP pretraining and Figure 3's SST-only runs have
    their own; a simultaneous epoch is one pass over SST."""
    if schedule == "pretrain":
        return params.train.pretrain_epochs
    if schedule == "sst_only":
        return params.sweep.sst_epochs
    return params.train.epochs


def saved_spec(saved: dict, params: Params) -> RunSpec:
    """The RunSpec a run saved in its run.json, with the parameters it saved beside it. Runs
    saved before RunSpec held its epochs get them from those parameters, as they trained."""
    return RunSpec(**{"epochs": schedule_epochs(params, saved["schedule"]), **saved})


def run_name(row: str, seed: int) -> str:
    return f"{row}-s{seed}"


def grid_row(dropout: float, lambda_s: float) -> str:
    # str(float) is how DVC writes a float into a stage's name and outputs (dvc.yaml uses
    # grid-d${item.dropout}-l${item.lambda_s}); sweep values are floats (config.SweepParams).
    return f"grid-d{float(dropout)}-l{float(lambda_s)}"


def sst_lambda_row(lambda_s: float) -> str:
    return f"sst-l{float(lambda_s)}"


def table2_spec(params: Params, row: str, seed: int) -> RunSpec:
    rows = params.table2_rows()
    if row not in rows:
        raise VariantError(f"unknown variant {row!r}; params.yaml's descriptive_variants, variants and "
                           "smart_variants define: "
                           f"{', '.join(rows) or 'none'}")
    variant, with_smart = rows[row]
    return RunSpec(
        name=run_name(row, seed), kind="table2", label=variant.label, head=variant.head, schedule=variant.schedule,
        epochs=schedule_epochs(params, variant.schedule),
        smart=with_smart, surgery=variant.surgery, pretrained=variant.pretrained, dropout=params.model.dropout,
        # A row without SMART has no lambda_s, so that smart.lambda_s cannot change it.
        lambda_s=params.smart.lambda_s if with_smart else 0.0,
        seed=seed, row=row,
    )


def grid_spec(params: Params, dropout: float, lambda_s: float, seed: int) -> RunSpec:
    """Table 3: Concat+SMART+Pretrain at one dropout x lambda_s."""
    if dropout not in params.sweep.dropout or lambda_s not in params.sweep.lambda_s:
        raise VariantError(
            f"grid cell dropout={dropout}, lambda_s={lambda_s} is not in the sweep "
            f"(sweep.dropout={params.sweep.dropout}, sweep.lambda_s={params.sweep.lambda_s})"
        )
    return _smart_pretrain(params, "grid", grid_row(dropout, lambda_s), dropout, lambda_s, seed)


def smart_pretrain_row(params: Params) -> str:
    """Table 2's Concat+SMART+Pretrain row: the grid cell at (model.dropout, smart.lambda_s),
    trained once for both tables, or, when the sweep lacks that cell, a row of its own."""
    dropout, lambda_s = params.model.dropout, params.smart.lambda_s
    # Both lists are read whatever the answer (no short-circuit): the table2-cell stage declares both.
    cells = {(d, lam) for d in params.sweep.dropout for lam in params.sweep.lambda_s}
    return grid_row(dropout, lambda_s) if (dropout, lambda_s) in cells else TABLE2_CELL


def table2_cell_seeds(params: Params) -> list[int]:
    """The seeds the `table2-cell` stage trains Table 2's Concat+SMART+Pretrain with: all of
    sweep.seeds off the grid; on it, those the grid lacks (it trains sweep.descriptive_seeds)."""
    grid_seeds = set(params.sweep.descriptive_seeds)
    trained_by_grid = grid_seeds if smart_pretrain_row(params) != TABLE2_CELL else set()
    return [seed for seed in params.sweep.seeds if seed not in trained_by_grid]


def table2_cell_spec(params: Params, seed: int) -> RunSpec:
    """Concat+SMART+Pretrain at (model.dropout, smart.lambda_s), trained by the `table2-cell`
    stage: a row of its own off the grid; on it, more seeds of the grid cell's row (a grid run,
    an ensemble candidate, under the stage's own name)."""
    dropout, lambda_s = params.model.dropout, params.smart.lambda_s
    row = smart_pretrain_row(params)
    spec = _smart_pretrain(params, "table2" if row == TABLE2_CELL else "grid", row, dropout, lambda_s, seed)
    return replace(spec, name=run_name(TABLE2_CELL, seed))


def _smart_pretrain(params: Params, kind: str, row: str, dropout: float, lambda_s: float, seed: int) -> RunSpec:
    return RunSpec(run_name(row, seed), kind, "Concat+SMART+Pretrain", "concat", "simultaneous",
                   epochs=schedule_epochs(params, "simultaneous"), smart=True, surgery=False, pretrained=True,
                   dropout=dropout, lambda_s=lambda_s, seed=seed, row=row)


def sst_lambda_spec(params: Params, lambda_s: float, seed: int) -> RunSpec:
    """Figure 3: SST trained alone with SMART at one lambda_s. lambda_s 0 is the control: SMART
    still on, so that only the adversarial term's weight differs between the curves (the
    Bregman proximal term, smart.mu, is in every one)."""
    if lambda_s not in params.sweep.sst_lambda_s:
        raise VariantError(f"lambda_s={lambda_s} is not in sweep.sst_lambda_s={params.sweep.sst_lambda_s}")
    row = sst_lambda_row(lambda_s)
    return RunSpec(run_name(row, seed), "sst_lambda", f"lambda_s {lambda_s:g}", "concat", "sst_only",
                   epochs=schedule_epochs(params, "sst_only"), smart=True, surgery=False, pretrained=False,
                   dropout=params.model.dropout, lambda_s=lambda_s, seed=seed, row=row,
                   train_rows=params.sweep.sst_train_rows)


def planned_runs(params: Params) -> list[RunSpec]:
    """Every fine-tuning run the parameters define, in dvc.yaml's order. The stages that read
    results (ensemble, analysis, report) look runs up by these names, so the files of runs an
    earlier params.yaml defined are never read as results (:mod:`smartmtl.results.outputs` moves them aside)."""
    sweep = params.sweep
    return [
        *(table2_spec(params, row, seed) for row in params.table2_rows() for seed in params.row_seeds(row)),
        *(grid_spec(params, d, lam, seed) for d in sweep.dropout for lam in sweep.lambda_s
          for seed in sweep.descriptive_seeds),
        *(table2_cell_spec(params, seed) for seed in table2_cell_seeds(params)),
        *(sst_lambda_spec(params, lam, seed) for lam in sweep.sst_lambda_s for seed in sweep.seeds),
    ]


def pretrain_spec(params: Params) -> RunSpec:
    """QQP further-pretraining: the concat head, the only one the +Pretrain variants use."""
    return RunSpec(PRETRAIN, "pretrain", "Pretrain", "concat", "pretrain", epochs=schedule_epochs(params, "pretrain"),
                   smart=False, surgery=False,
                   pretrained=False, dropout=params.model.dropout, lambda_s=0.0, seed=params.train.seed, row=PRETRAIN)
