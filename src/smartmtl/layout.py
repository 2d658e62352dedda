"""Where every output of the pipeline is: each run's folders and files, and what the stages
after training write. dvc.yaml declares the same paths.

A module of its own, importing only the parameters, so that the prepare stage can use it
without depending on the runs the sweep defines (:mod:`smartmtl.results.outputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smartmtl.config import Params

# The figures and their data, in Layout.plots: the analysis draws them, the report shows the
# figures and dvc.yaml's plots draw the CSVs.
FIG3_PNG = "fig3_lambda_sst.png"
FIG3_CSV = "fig3_lambda_sst.csv"
FIG4_CONFUSION_PNG = "fig4_sst_confusion.png"
FIG4_CONFUSION_CSV = "sst_confusion.csv"
FIG4_SCATTER_PNG = "fig4_sts_scatter.png"
FIG4_SCATTER_CSV = "sts_scatter.csv"
CURVES_PNG = "training_curves.png"
CURVES_DIR = "curves"  # the training curves' data, one CSV per panel
# Table 1, in Layout.tables as .md and .csv: the prepare stage writes it, the report shows it.
TABLE1 = "table1_data"


@dataclass(frozen=True)
class Layout:
    """Where every output of the pipeline is, below ``root`` (dvc.yaml declares the same paths);
    tests point it at a temporary directory."""

    root: Path = Path(".")

    def prepared_dir(self, params: Params) -> Path:
        """The prepared splits: ``data.prepared_dir``, a parameter, read relative to ``root``."""
        return self.root / params.data.prepared_dir

    # Each run's outputs: a folder or file named after the run in each of these.

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def finetune_metrics(self) -> Path:
        return self.metrics / "finetune"

    @property
    def live(self) -> Path:
        return self.root / "dvclive"

    def model_dir(self, name: str) -> Path:
        return self.models / name

    def predictions_dir(self, name: str) -> Path:
        return self.predictions / name

    def predictions_file(self, name: str, task: str, split: str) -> Path:
        return self.predictions_dir(name) / f"{task}-{split}.csv"

    def metrics_file(self, name: str) -> Path:
        return self.finetune_metrics / f"{name}.json"

    def live_dir(self, name: str) -> Path:
        return self.live / name

    def resume_dir(self, name: str) -> Path:
        return self.root / "checkpoints" / name

    @property
    def probe_cache(self) -> Path:
        """The heads' probes kept for the runs that would fit them again (smartmtl.train.probecache):
        no output of the pipeline, always safe to delete."""
        return self.root / ".cache" / "probes"

    def owned_by(self, name: str) -> list[Path]:
        return [self.model_dir(name), self.predictions_dir(name), self.metrics_file(name), self.live_dir(name)]

    # What the other stages write, and where move_stale puts the outputs of runs no longer defined.

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def data_metrics(self) -> Path:
        return self.metrics / "data.json"

    @property
    def ensemble_metrics(self) -> Path:
        return self.metrics / "ensemble.json"

    @property
    def summary(self) -> Path:
        """The pipeline's headline numbers, for `dvc metrics show` and `dvc exp show`."""
        return self.metrics / "summary.json"

    @property
    def analysis_metrics(self) -> Path:
        return self.metrics / "analysis.json"

    @property
    def tables(self) -> Path:
        return self.metrics / "tables"

    @property
    def report(self) -> Path:
        return self.metrics / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def stale(self) -> Path:
        return self.root / "stale"
