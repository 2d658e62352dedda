"""The one typed, validated parameter object, loaded from ``params.yaml``.

Every stage reads its settings from here, so a typo or an out-of-range value stops the
pipeline before any work starts, with a message naming the key and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from smartmtl.errors import UserError

SPLITS = ("train", "dev", "test")

Head = Literal["separate", "cosine", "concat"]
Schedule = Literal["sequential", "simultaneous"]
Precision = Literal["auto", "bf16", "fp32"]
Device = Literal["auto", "cpu", "cuda", "mps"]


class ConfigError(UserError, ValueError):
    """A parameter file that cannot be used; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerTask(_Strict):
    sst: int | None = Field(None, ge=1)
    qqp: int | None = Field(None, ge=1)
    sts: int | None = Field(None, ge=1)

    def get(self, task: str) -> int | None:
        return getattr(self, task)


class TaskEpochs(_Strict):
    # Fractions are allowed: 0.3 is one pass over a random 30 % of the task.
    sst: float = Field(10, ge=0)
    qqp: float = Field(2, ge=0)
    sts: float = Field(10, ge=0)


class DataParams(_Strict):
    raw_dir: Path = Path("data/raw")
    prepared_dir: Path = Path("data/prepared")
    # Rows kept per task of each split after cleaning (None = all): the reduced-scale presets
    # subsample; the paper preset keeps everything.
    train_limit: PerTask = PerTask()
    dev_limit: PerTask = PerTask()
    test_limit: PerTask = PerTask()
    # Training rows per task the heads' linear probe fits on (train.head_init: probe): those
    # train_limit keeps, then others of the same cleaned file up to this many (None = the
    # former alone). A forward each and no training step: the cheap way for a short run's heads
    # to learn from more of the data than its steps can (docs/results.md).
    probe_limit: PerTask = PerTask()
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, values):
        if isinstance(values, dict) and "eval_limit" in values:
            raise ValueError("eval_limit was split into dev_limit and test_limit (one per split): rename it")
        return values

    @model_validator(mode="after")
    def _probe_adds_rows(self):
        for task in PerTask.model_fields:
            probe, train = self.probe_limit.get(task), self.train_limit.get(task)
            if probe is not None and (train is None or probe <= train):
                raise ValueError(f"probe_limit.{task} ({probe}) must be above train_limit.{task} ({train}): "
                                 "it counts the training rows too, and adds only rows train_limit leaves out")
        return self


class ModelParams(_Strict):
    # A short name of a bundled model, a local directory, or a Hugging Face Hub id.
    backbone: str = "all-MiniLM-L6-v2"
    # Every dropout of the model: the encoder's hidden and attention dropout, and the heads'.
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    max_length: int = Field(128, ge=8, le=512)
    # How SST and the separate/concat heads read a sequence: [CLS] (the paper) or token mean.
    pooling: Literal["cls", "mean"] = "cls"


class TrainParams(_Strict):
    lr: float = Field(1e-5, gt=0)
    # The freshly initialised task heads' learning rate (the paper: ``lr``). A short run gives
    # a head few steps to move from its random start at the encoder's small step.
    head_lr: float = Field(1e-5, gt=0)
    # How a task head starts: "random" (the paper) or "probe", the linear model fitted on the
    # frozen encoder's features when the task's training begins (smartmtl.train.probe, LP-FT).
    head_init: Literal["random", "probe"] = "random"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    # Dev rows per task scored after each epoch for the learning curves (None = all);
    # the final metrics always use the whole dev set.
    epoch_eval_rows: int | None = Field(None, ge=1)
    # Simultaneous training: one epoch is one pass over SST (Section 4.2).
    epochs: int = Field(10, ge=1)
    # Sequential training: epochs per task, trained in the order QQP, STS, SST.
    sequential_epochs: TaskEpochs = TaskEpochs()
    # QQP further-pretraining (the +Pretrain variants start from its checkpoint).
    pretrain_epochs: int = Field(1, ge=1)
    # Optimizer steps in which the learning rate rises linearly from 0 (fraction of all).
    warmup: float = Field(0.0, ge=0, lt=1)
    # After the warm-up: "constant" (the paper names no schedule), or a "linear" or "cosine"
    # decay to 0 (transformers' schedulers, smartmtl.train.schedules).
    decay: Literal["constant", "linear", "cosine"] = "constant"
    # "auto": this process's CUDA GPU, else Apple's MPS, else the CPU; a device named here
    # that the machine lacks is an error (smartmtl.train.hardware).
    device: Device = "auto"
    # "auto": bf16 where it was measured faster than fp32, else fp32 (smartmtl.train.hardware).
    precision: Precision = "auto"
    # The QQP pretraining's seed; every fine-tuning run takes its own from sweep.seeds.
    seed: int = 0
    # The command dvc.yaml starts the training stages with: `python`, or for several GPUs
    # `torchrun --nproc_per_node 4` (or `accelerate launch`); see smartmtl.distributed.
    launcher: str = Field("python", min_length=1)


class SmartParams(_Strict):
    """SMART (smartmtl.train.smart): the adversarial term's weight and perturbation, the Bregman teacher."""

    lambda_s: float = Field(1.0, ge=0)
    # Weight of the Bregman proximal term; 0 trains without the teacher.
    mu: float = Field(1.0, ge=0)
    # What is perturbed: the word embeddings (Algorithm 1's input) or the embedding layer's
    # output after its LayerNorm (the MT-DNN reference code).
    site: Literal["word_embeddings", "embedding_output"] = "word_embeddings"
    # "project": Algorithm 1 (a step along the per-token normalised gradient, then projection
    # onto the epsilon-ball); "normalize": a raw gradient step rescaled onto the sphere of
    # radius epsilon. The reference codes in these terms (docs/smart.md): MT-DNN's is project
    # with absolute eta = epsilon = 1e-3; smart-pytorch's is normalize with absolute epsilon 1.
    update: Literal["project", "normalize"] = "project"
    norm: Literal["inf", "l2"] = "inf"
    # What sigma, epsilon and eta are measured in: "token", fractions of each token's norm at
    # the site (so one setting means the same at either site), or "absolute" (the reference
    # code's units). The values are chosen on dev by the protocol in docs/smart.md.
    scale: Literal["token", "absolute"] = "token"
    sigma: float = Field(1e-2, ge=0)
    epsilon: float = Field(2e-2, ge=0)
    eta: float = Field(2e-2, ge=0)
    steps: int = Field(1, ge=0)
    # The teacher's time constant as a fraction of the run's optimizer steps, and the least
    # momentum it may have: a short run's time constant of a few steps would make the teacher
    # the student of a step ago, and the term a measure of nothing. The SMART paper used 0.99
    # (then 0.999); at 0.99 a 50-step run's teacher closes 40 % of its gap to the student.
    teacher_horizon: float = Field(0.1, gt=0, le=1)
    teacher_beta_min: float = Field(0.99, ge=0, lt=1)


class SurgeryParams(_Strict):
    reduction: Literal["sum", "mean"] = "sum"


class Variant(_Strict):
    """One model of Table 2: which head, schedule and regularisers it trains with. Whether it
    trains with SMART is where it is listed: ``variants`` or ``smart_variants``."""

    label: str
    head: Head
    schedule: Schedule
    surgery: bool = False
    pretrained: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_smart_flag(cls, values):
        if isinstance(values, dict) and "smart" in values:
            raise ValueError("list rows trained with SMART under smart_variants, not with `smart:` (dvc.yaml "
                             "trains them in a stage of their own, so that smart.* retrains only them)")
        return values

    @model_validator(mode="after")
    def _check(self) -> Variant:
        if self.surgery and self.schedule != "simultaneous":
            raise ValueError("surgery needs schedule 'simultaneous' (it needs several tasks per step)")
        if self.pretrained and self.head != "concat":
            raise ValueError("pretrained variants start from the QQP pretrain checkpoint, which has the 'concat' head")
        return self


class SweepParams(_Strict):
    # Every fine-tuning run (Table 2's rows, Table 3's cells, Figure 3's runs) once per seed:
    # tables report mean and spread, Table 5 pairs runs of the same seed.
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    # The rows no claim compares (descriptive_variants, Table 3's cells) train with these seeds
    # only, a subset of ``seeds``: they describe, the claims test. Table 2's Concat+SMART+Pretrain
    # row, a claim's row and a Table 3 cell, trains its other seeds in the table2-cell stage.
    # Left out, it is ``seeds``: every row trains every seed.
    descriptive_seeds: list[int] = Field([0, 1, 2], min_length=1)
    # Table 3: Concat+SMART+Pretrain for every dropout x lambda_s.
    dropout: list[float] = Field([0.1, 0.2, 0.3, 0.4, 0.5], min_length=1)
    lambda_s: list[float] = Field([1.0, 5.0], min_length=1)
    # Figure 3: SST trained alone for each lambda_s.
    sst_lambda_s: list[float] = Field([0.5, 1.0, 5.0, 10.0], min_length=1)
    sst_epochs: int = Field(10, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _descriptive_seeds_default_to_seeds(cls, values):
        if isinstance(values, dict) and "seeds" in values and "descriptive_seeds" not in values:
            values = {**values, "descriptive_seeds": values["seeds"]}
        return values

    @field_validator("dropout", "lambda_s", "sst_lambda_s", mode="before")
    @classmethod
    def _written_as_floats(cls, values):
        # DVC names a run's stage and outputs by the value as written: 1 and 1.0 would be two
        # runs of one setting. One spelling, the float's, keeps names stable.
        for value in values if isinstance(values, list) else []:
            if isinstance(value, int) and not isinstance(value, bool):
                raise ValueError(f"write {float(value)}, not {value}: DVC names runs by the value as written, "
                                 "so every value of this list is written as a float")
        return values

    @model_validator(mode="after")
    def _ranges(self) -> SweepParams:
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds {self.seeds} must be distinct and non-negative")
        if not set(self.descriptive_seeds) <= set(self.seeds) or len(set(self.descriptive_seeds)) != len(
                self.descriptive_seeds):
            raise ValueError(f"descriptive_seeds {self.descriptive_seeds} must be distinct seeds of seeds {self.seeds}")
        for value in self.dropout:
            if not 0 <= value < 1:
                raise ValueError(f"dropout {value} is outside [0, 1)")
        for value in [*self.lambda_s, *self.sst_lambda_s]:
            if value < 0:
                raise ValueError(f"lambda_s {value} is negative")
        return self


Metric = Literal["sst", "qqp", "sts", "overall"]


class ClaimsParams(_Strict):
    """Table 5: how the paper's claims are tested over seeds (smartmtl.results.claims)."""

    # Each claim's one primary metric, named before the runs; the others are shown without
    # a verdict. Keys are the claims of smartmtl.claims.paper_claims.
    primary: dict[str, Metric] = {
        "smart_sequential": "sst", "smart_simultaneous": "overall", "simultaneous": "overall",
        "pretrain": "overall", "surgery": "overall", "sst_lambda": "sst",
    }
    # The family-wise error rate over the primary tests (Holm's correction).
    alpha: float = Field(0.05, gt=0, lt=1)
    # A claim of no effect holds when the difference's 90 % interval lies within +-delta.
    equivalence_delta: float = Field(0.01, gt=0)
    # The power at which the smallest detectable difference is computed.
    power: float = Field(0.8, gt=0, lt=1)


class EnsembleParams(_Strict):
    # "auto": the `size` best grid models by dev overall; or a list of model names.
    members: Literal["auto"] | list[str] = "auto"
    size: int = Field(5, ge=1)


class Params(_Strict):
    preset: str = "custom"
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    smart: SmartParams = SmartParams()
    surgery: SurgeryParams = SurgeryParams()
    sweep: SweepParams = SweepParams()
    # Table 2's rows: trained without SMART, and with it (two DVC matrices, so that a change
    # of smart.* retrains only the second); and those no claim compares, trained without SMART
    # with sweep.descriptive_seeds (a third matrix, since a matrix has one list of seeds).
    variants: dict[str, Variant] = {}
    smart_variants: dict[str, Variant] = {}
    descriptive_variants: dict[str, Variant] = {}
    ensemble: EnsembleParams = EnsembleParams()
    claims: ClaimsParams = ClaimsParams()

    def table2_rows(self) -> dict[str, tuple[Variant, bool]]:
        """Table 2's rows by name: each row's variant, and whether it trains with SMART."""
        return {**{name: (variant, False) for name, variant in self.descriptive_variants.items()},
                **{name: (variant, False) for name, variant in self.variants.items()},
                **{name: (variant, True) for name, variant in self.smart_variants.items()}}

    def row_seeds(self, row: str) -> list[int]:
        """The seeds a Table 2 row trains with."""
        return self.sweep.descriptive_seeds if row in self.descriptive_variants else self.sweep.seeds

    @model_validator(mode="after")
    def _row_names_unique(self) -> Params:
        lists = [self.descriptive_variants, self.variants, self.smart_variants]
        if twice := sorted({name for i, a in enumerate(lists) for b in lists[i + 1:] for name in set(a) & set(b)}):
            raise ValueError(f"rows {twice} are listed twice among descriptive_variants, variants and "
                             "smart_variants: each row is listed once")
        plain = {**self.descriptive_variants, **self.variants}
        if surgery := sorted(name for name, variant in plain.items() if variant.surgery):
            raise ValueError(f"rows {surgery} use surgery, which the paper adds to SMART: list them under "
                             "smart_variants (only that stage declares surgery.*)")
        return self


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "literal_error":
            allowed = item.get("ctx", {}).get("expected", "")
            message = f"got {item['input']!r}; allowed: {allowed}"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def parse_params(raw: dict, source: str = "params") -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameter file not found (run from the project root)")
    with path.open() as handle:
        raw = yaml.safe_load(handle)
    return parse_params(raw, str(path))
