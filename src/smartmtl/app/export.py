"""A trained run as a folder a user can take elsewhere: the encoder and tokenizer as a Hugging
Face model (``AutoModel.from_pretrained`` loads it), the task heads as safetensors beside it,
and a model card (README.md) written from the run's record.

The heads are not a transformers architecture, so the card carries a short code block that
rebuilds them with torch and safetensors alone; tests run that block and compare it with
`smartmtl predict`. The ensemble exports each member into a folder of its own, beside a card
that says how the members are combined.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from smartmtl.app.predict import dev_scores, ensemble_members, saved_params, trained_models, trained_tasks
from smartmtl.config import Params
from smartmtl.errors import UserError
from smartmtl.io import read_json
from smartmtl.model.backbone import ALIASES, BUNDLED
from smartmtl.results.outputs import ENSEMBLE_NAME
from smartmtl.tasks import STS_RANGE, TASKS
from smartmtl.variants import RunSpec, saved_spec

HEADS_FILE = "heads.safetensors"
HEADS_CONFIG = "heads.json"
RUN_RECORD = "smartmtl-run.json"
EXAMPLE_SENTENCES = ["A gorgeous, witty, seductive movie.", "The plot is thin and the jokes fall flat."]
EXAMPLE_PAIR = ("How do I learn Python quickly?", "What is the fastest way to learn Python?")

# The public copies of the data closest to the files this project trains on (the CS224N
# default project's splits of SST-5 and STS-B, and QQP pairs; /work/shared/data/README.md).
DATASETS = {"sst": "SetFit/sst5", "qqp": "nyu-mll/glue", "sts": "sentence-transformers/stsb"}
TASK_TYPES = {"sst": "text-classification", "qqp": "text-classification", "sts": "sentence-similarity"}
METRIC_NAMES = {"accuracy": "accuracy", "pearson": "pearsonr"}


class ExportError(UserError):
    pass


@dataclass
class RunRecord:
    """What the pipeline kept of one run: enough to rebuild, describe and reproduce it."""

    name: str
    model_dir: Path
    spec: RunSpec
    params: Params
    raw_params: dict
    tasks: list[str]
    dev: dict[str, float] | None
    stage: str | None  # the DVC stage that trained it, where dvc.lock knows it
    command: str | None


def dvc_stage(name: str, lock: Path) -> tuple[str | None, str | None]:
    """The dvc.lock stage whose outputs include models/<name>, and its command."""
    if not lock.exists():
        return None, None
    stages = (yaml.load(lock.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}).get("stages", {})
    for stage, entry in stages.items():
        if any(out.get("path") == f"models/{name}" for out in entry.get("outs", [])):
            return stage, entry.get("cmd")
    return None, None


def load_record(name: str, models_dir: Path, lock: Path, ensemble_metrics: Path) -> RunRecord:
    model_dir = models_dir / name
    if not (model_dir / "model.safetensors").exists():
        raise ExportError(f"model {name} is not trained ({model_dir / 'model.safetensors'} is missing); trained "
                          f"models: {', '.join(trained_models(models_dir)) or 'none'}")
    run = read_json(model_dir / "run.json")
    params = saved_params(run["params"], str(model_dir / "run.json"))
    stage, command = dvc_stage(name, lock)
    tasks = [task for task in TASKS if task in trained_tasks(model_dir)]
    return RunRecord(name, model_dir, saved_spec(run["spec"], params), params, run["params"], tasks,
                     dev_scores(name, models_dir, ensemble_metrics), stage, command)


# ----------------------------------------------------------------------------- the folder
def write_model(record: RunRecord, out: Path) -> None:
    """The encoder and tokenizer as transformers saves them, the trained heads beside them."""
    from safetensors.torch import save_file

    from smartmtl.model.backbone import load_tokenizer
    from smartmtl.model.heads import build_model

    model = build_model(record.spec, record.params, record.model_dir / "model.safetensors").eval()
    model.encoder.save_pretrained(out)
    load_tokenizer(record.params.model.backbone).save_pretrained(out)
    heads = {f"{task}.{key}": value.contiguous() for task in record.tasks if task in model.heads
             for key, value in model.heads[task].state_dict().items()}
    save_file(heads, str(out / HEADS_FILE), metadata={"format": "pt"})
    (out / HEADS_CONFIG).write_text(json.dumps(heads_config(record), indent=2) + "\n")
    shutil.copyfile(record.model_dir / "run.json", out / RUN_RECORD)


def heads_config(record: RunRecord) -> dict:
    """How the heads read the encoder, for code that rebuilds them (the card's shows it)."""
    config = {"design": record.spec.head, "pooling": record.params.model.pooling,
              "max_length": record.params.model.max_length, "tasks": {}}
    for task in record.tasks:
        spec = TASKS[task]
        entry: dict = {"title": spec.title}
        if spec.has_classes:
            entry["classes"] = list(spec.classes)
        else:
            entry["score_range"] = list(spec.score_range)
            entry["output"] = "cosine" if record.spec.head == "cosine" else "linear, on [-1, 1]"
        config["tasks"][task] = entry
    return config


# ----------------------------------------------------------------------------- the card
def base_model(backbone: str) -> str | None:
    """The Hub id of the backbone (a bundled short name mapped back), None for a local folder."""
    hub_ids = {short: hub for hub, short in ALIASES.items()}
    if backbone in hub_ids:
        return hub_ids[backbone]
    return None if backbone in BUNDLED or Path(backbone).exists() else backbone


def card_metadata(record: RunRecord) -> dict:
    metadata: dict = {}
    base = base_model(record.params.model.backbone)
    if base:
        metadata["base_model"] = base
    metadata.update(library_name="transformers", pipeline_tag="text-classification",
                    datasets=sorted({DATASETS[task] for task in record.tasks}),
                    tags=["multitask", "smart", *(["pcgrad"] if record.spec.surgery else []),
                          *[TASKS[task].title.lower().replace(" ", "-") for task in record.tasks]])
    if record.dev:
        results = []
        for task in record.tasks:
            if task not in record.dev:
                continue
            spec = TASKS[task]
            metric = METRIC_NAMES[spec.metric.__name__]
            results.append({"task": {"type": TASK_TYPES[task], "name": spec.title},
                            "dataset": {"name": f"{spec.dataset} (this project's dev split)", "type": DATASETS[task],
                                        "split": "dev"},
                            "metrics": [{"type": metric, "value": round(float(record.dev[task]), 4),
                                         "name": f"dev {metric}"}]})
        metadata["model-index"] = [{"name": record.name, "results": results}]
    return metadata


def caveats(record: RunRecord) -> list[str]:
    params = record.params
    notes = []
    if params.model.backbone in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2") and "qqp" in record.tasks:
        notes.append("The backbone, all-MiniLM-L6-v2, was trained by sentence-transformers on about a billion "
                     "sentence pairs that include Quora duplicate questions: its QQP scores are flattered, and "
                     "they say little about paraphrase detection on text it has not seen.")
    notes.append("The scores are on the dev split (the test split has no labels here), which also chose "
                 "this project's settings: expect somewhat less on new data.")
    limits = {task: params.data.train_limit.get(task) for task in record.tasks}
    if any(limit is not None for limit in limits.values()):
        rows = ", ".join(f"{TASKS[task].dataset} {limit if limit is not None else 'all'}" for task, limit in limits.items())
        notes.append(f"Trained at reduced scale (preset `{params.preset}`): training rows per task {rows}; "
                     "the paper trains on all of them, ten epochs.")
    if "qqp" in record.tasks:
        notes.append("QQP: not the paper's 283,010 training pairs but the labelled pairs this project could gather, "
                     "so its scores are not comparable with the paper's; Quora's terms allow non-commercial "
                     "research use only.")
    notes.append("The data are the Stanford CS224N default project's files (SST-5 and STS-B splits, QQP "
                 "pairs); the dataset ids above are the closest public copies, not the same files.")
    return notes


def dev_table(tasks: list[str], dev: dict[str, float] | None) -> str:
    if not dev:
        return "No dev scores were found for this model (metrics/finetune/<name>.json).\n"
    lines = ["| task | metric | dev |", "|---|---|---:|"]
    lines += [f"| {TASKS[task].title} ({TASKS[task].dataset}) | {TASKS[task].metric.__name__} | {dev[task]:.4f} |"
              for task in tasks if task in dev]
    if "overall" in dev:
        lines.append(f"| overall: the mean of SST, QQP and (STS + 1) / 2 | | {dev['overall']:.4f} |")
    return "\n".join(lines) + "\n"


def usage_code(record: RunRecord, folder: str = ".") -> str:
    """A script that loads the folder with transformers, torch and safetensors alone and predicts.

    Written for this run's design, so a reader sees only the path its heads take."""
    design, pooling = record.spec.head, record.params.model.pooling
    low, high = STS_RANGE
    pair_encoding = "one sequence, [CLS] s1 [SEP] s2 [SEP]" if design == "concat" else "each sentence alone"
    lines = [
        "import torch",
        "from safetensors.torch import load_file",
        "from transformers import AutoModel, AutoTokenizer",
        "",
        f'folder = "{folder}"  # this folder (or huggingface_hub.snapshot_download("user/repo"))',
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
        "encoder = AutoModel.from_pretrained(folder).eval()",
        'heads = load_file(f"{folder}/heads.safetensors")',
        "",
        "",
        "def encode(first, second=None, pooling=" + repr(pooling) + "):",
        f'    batch = tokenizer(first, second, truncation=True, max_length={record.params.model.max_length}, '
        'padding=True, return_tensors="pt")',
        "    with torch.no_grad():",
        "        hidden = encoder(**batch).last_hidden_state",
        '    if pooling == "cls":',
        "        return hidden[:, 0]",
        '    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)',
        "    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)",
        "",
        "",
        "def head(task, features):",
        '    return features @ heads[f"{task}.weight"].T + heads[f"{task}.bias"]',
    ]
    if "sst" in record.tasks:
        lines += [
            "",
            "",
            f"SENTIMENT = {list(TASKS['sst'].classes)!r}",
            "",
            "",
            "def sentiment(sentences):",
            '    """Each sentence\'s probability of each class in SENTIMENT."""',
            '    return head("sst", encode(sentences)).softmax(-1)',
        ]
    if "qqp" in record.tasks or "sts" in record.tasks:
        lines += ["", "", "def pair_features(first, second):",
                  f'    """A pair as the heads read it: {pair_encoding}."""']
        if design == "concat":
            lines.append("    return encode(first, second)")
        else:
            pair_pooling = "mean" if design == "cosine" else pooling
            lines += [f"    u, v = encode(first, pooling={pair_pooling!r}), encode(second, pooling={pair_pooling!r})",
                      "    return u, v"]
        combine = {"concat": "features", "separate": "torch.cat([u, v], -1)",
                   "cosine": "torch.cat([u, v, (u - v).abs()], -1)"}[design]
        unpack = "features = pair_features(first, second)" if design == "concat" else "u, v = pair_features(first, second)"
    if "qqp" in record.tasks:
        lines += ["", "", "def paraphrase_probability(first, second):",
                  '    """The probability that each first[i] and second[i] are duplicates."""',
                  f"    {unpack}",
                  f'    return head("qqp", {combine}).squeeze(-1).sigmoid()']
    if "sts" in record.tasks:
        lines += ["", "", "def similarity(first, second):",
                  f'    """Each pair\'s similarity on {low:g}-{high:g}: the head\'s [-1, 1] output rescaled."""',
                  f"    {unpack}"]
        if design == "cosine":
            lines.append("    unit = torch.nn.functional.cosine_similarity(u, v, dim=-1)")
        else:
            lines.append(f'    unit = head("sts", {combine}).squeeze(-1)')
        lines.append(f"    return {(low + high) / 2:g} + unit * {(high - low) / 2:g}")
    lines += ["", ""]
    if "sst" in record.tasks:
        lines.append(f"print(sentiment({EXAMPLE_SENTENCES!r}))")
    first, second = EXAMPLE_PAIR
    if "qqp" in record.tasks:
        lines.append(f"print(paraphrase_probability([{first!r}], [{second!r}]))")
    if "sts" in record.tasks:
        lines.append(f"print(similarity([{first!r}], [{second!r}]))")
    return "\n".join(lines) + "\n"


def reproduce_text(record: RunRecord) -> str:
    preset = record.params.preset
    if record.stage:
        return (f"From a clone of the project: the preset, then any value of `{RUN_RECORD}` that differs "
                f"from it set in params.yaml, then the run's stage:\n\n"
                f"```bash\nsmartmtl preset {preset}\ndvc repro {record.stage}    # runs: {record.command}\n"
                f"smartmtl export {record.name} DIR\n```\n")
    return (f"This run is not in the project's dvc.lock (trained outside `dvc repro`); its parameters are in "
            f"`{RUN_RECORD}` (preset `{preset}`), and `smartmtl preset {preset}` then `dvc repro` trains the "
            "pipeline's runs.\n")


def parameters_text(record: RunRecord) -> str:
    spec = asdict(record.spec)
    rows = ["| setting | value |", "|---|---|"]
    rows += [f"| {key} | {value} |" for key, value in spec.items()]
    shown = {section: record.raw_params.get(section) for section in ("model", "train", "smart", "data")}
    return ("\n".join(rows) + "\n\nThe parameters it trained with (all of them are in "
            f"`{RUN_RECORD}`):\n\n```yaml\n{yaml.safe_dump(shown, sort_keys=False)}```\n")


def model_card(record: RunRecord) -> str:
    metadata = yaml.safe_dump(card_metadata(record), sort_keys=False, allow_unicode=True)
    title = record.spec.label if record.spec.label else record.name
    tasks = ", ".join(f"{TASKS[task].title} ({TASKS[task].dataset})" for task in record.tasks)
    base = record.params.model.backbone
    return f"""---
{metadata}---

# {record.name}: {title}

A BERT-style encoder fine-tuned for {tasks} by the SMART multitask pipeline
(smartmtl; the paper's Section 4), starting from `{base}`. Run `{record.name}`: {record.spec.head} pair
head, {record.spec.schedule} training, SMART {'on' if record.spec.smart else 'off'}, seed {record.spec.seed}.

The encoder and tokenizer load with `transformers` (`AutoModel.from_pretrained`); the task heads
are small linear layers in `{HEADS_FILE}` (how they read the encoder: `{HEADS_CONFIG}`), which the
code below applies.

## Dev scores

{dev_table(record.tasks, record.dev)}
## Caveats

{chr(10).join(f'- {note}' for note in caveats(record))}

## Use it with transformers, torch and safetensors alone

```python
{usage_code(record)}```

## Parameters

{parameters_text(record)}
## Reproduce

{reproduce_text(record)}"""


# ----------------------------------------------------------------------------- export
def _empty_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder: choose a new one")
    out.mkdir(parents=True, exist_ok=True)


def export_run(record: RunRecord, out: Path) -> None:
    _empty_folder(out)
    write_model(record, out)
    (out / "README.md").write_text(model_card(record))


def ensemble_card(name: str, members: list[RunRecord], dev: dict[str, float] | None) -> str:
    tasks = [task for task in TASKS if all(task in member.tasks for member in members)]
    metadata = card_metadata(RunRecord(name, Path(), members[0].spec, members[0].params, members[0].raw_params,
                                       tasks, dev, None, None))
    rows = "\n".join(f"| {rank} | [{member.name}]({member.name}/README.md) | "
                     f"{' | '.join(f'{member.dev[task]:.4f}' if member.dev and task in member.dev else '' for task in tasks)} |"
                     for rank, member in enumerate(members, start=1))
    return f"""---
{yaml.safe_dump(metadata, sort_keys=False)}---

# The ensemble of {len(members)} runs

Each member is a folder of its own here, which loads as its card shows. The ensemble's
answer, as scored on dev: for a class (sentiment, paraphrase) the members' most frequent label,
a tie going to the label of the better-ranked member (rank 1 first); for the similarity the
members' median.

## Dev scores

{dev_table(tasks, dev)}
| rank | member | {' | '.join(TASKS[task].dataset for task in tasks)} |
|---|---|{'---:|' * len(tasks)}
{rows}

## Caveats

{chr(10).join(f'- {note}' for note in caveats(members[0]))}
"""


def export(name: str, out: Path, models_dir: Path = Path("models"), lock: Path = Path("dvc.lock"),
           ensemble_metrics: Path = Path("metrics/ensemble.json")) -> list[Path]:
    """Export ``name`` (a run, or ``ensemble``: each member below ``out``) and return the folders written."""
    if name != ENSEMBLE_NAME:
        export_run(load_record(name, models_dir, lock, ensemble_metrics), out)
        return [out]
    records = [load_record(member, models_dir, lock, ensemble_metrics) for member in ensemble_members(ensemble_metrics)]
    _empty_folder(out)
    for record in records:
        export_run(record, out / record.name)
    (out / "README.md").write_text(ensemble_card(name, records, dev_scores(name, models_dir, ensemble_metrics)))
    return [out / record.name for record in records]


def push_to_hub(folder: Path, repo: str) -> str:
    """Upload the exported folder to the Hub repository ``repo`` (created if missing); its URL."""
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError

    try:
        api = huggingface_hub.HfApi()
        api.create_repo(repo, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message="smartmtl export")
    except HFValidationError as error:
        raise ExportError(f"--push-to-hub {repo}: not a Hub repository id ({_first_line(error)})") from None
    except Exception as error:  # no network, offline mode, no token: all end the push the same way
        raise ExportError(f"could not push {folder} to the Hub repository {repo} "
                          f"({type(error).__name__}: {_first_line(error)}); the folder is written: "
                          f"upload it later with `hf upload {repo} {folder}`") from None
    return str(getattr(commit, "repo_url", f"https://huggingface.co/{repo}"))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"
