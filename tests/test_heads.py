"""The three head designs on the real bundled backbone, and the task losses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import BACKBONE

from smartmtl.model.backbone import load_encoder
from smartmtl.model.features import tokenize
from smartmtl.model.heads import MultitaskModel, segments_for
from smartmtl.tasks import TASKS, task_loss

HEADS = ("separate", "cosine", "concat")
MAX_LENGTH = 24

SST = pd.DataFrame({"id": ["s0", "s1", "s2"], "sentence": ["a gorgeous film .", "bad .", "dull and far too long ."],
                    "label": [4, 0, 1]})
PAIRS = pd.DataFrame({
    "id": ["p0", "p1", "p2"],
    "sentence1": ["how do i learn python ?", "a man plays a guitar .", "is the earth flat ?"],
    "sentence2": ["what is the best way to learn python quickly ?", "a man is playing music .", "why is the sky blue ?"],
})
QQP = PAIRS.assign(label=[1, 0, 0])
STS = PAIRS.assign(label=[4.2, 3.5, 0.4])
FRAMES = {"sst": SST, "qqp": QQP, "sts": STS}
STS_MAX = TASKS["sts"].score_range[1]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(BACKBONE, 0.1)


@pytest.fixture(scope="module")
def models(encoder):
    torch.manual_seed(0)
    built = {head: MultitaskModel(encoder, head, dropout=0.1) for head in HEADS}
    for model in built.values():
        model.eval()
    return built


def _features(task, head, tokenizer):
    return tokenize(FRAMES[task], task, head, tokenizer, MAX_LENGTH)


@pytest.mark.parametrize("head", HEADS)
def test_output_shapes(head, models, tokenizer):
    model = models[head]
    expected = {"sst": (3, 5), "qqp": (3,), "sts": (3,)}
    with torch.no_grad():
        for task, shape in expected.items():
            features = _features(task, head, tokenizer)
            segments, labels = features.batch(np.arange(3))
            output = model(task, segments)
            assert tuple(output.shape) == shape == TASKS[task].output_shape(3), (head, task)
            assert torch.isfinite(output).all()
            # The output feeds the task loss and the prediction without reshaping.
            assert torch.isfinite(task_loss(task, output, labels))
            assert TASKS[task].to_predictions(output).shape == (3,)


def test_cosine_sts_is_the_cosine_read_as_a_0_5_score(models, tokenizer):
    model = models["cosine"]
    segments, _ = _features("sts", "cosine", tokenizer).batch(np.arange(3))
    with torch.no_grad():
        output = model("sts", segments)
        # Identical sentences: cosine 1, the top of the scale.
        same = model("sts", [segments[0], segments[0]])
    with torch.no_grad():
        u, v = (model._encode(s, "mean") for s in segments)
    assert torch.allclose(output, F.cosine_similarity(u, v, dim=-1), atol=1e-5)
    scores = TASKS["sts"].to_predictions(output)
    assert ((scores >= 0) & (scores <= STS_MAX)).all()
    assert torch.allclose(TASKS["sts"].to_predictions(same), torch.full_like(same, STS_MAX), atol=1e-4)
    assert "sts" not in model.heads  # no parameters of its own


@pytest.mark.parametrize("task", ["qqp", "sts"])
def test_concat_is_one_sequence_with_segment_ids(task, models, tokenizer):
    features = _features(task, "concat", tokenizer)
    assert segments_for(task, "concat") == 1
    assert len(features.columns) == 1
    column = features.columns[0]
    assert "token_type_ids" in column
    sep = tokenizer.sep_token_id
    for row, (ids, types) in enumerate(zip(column["input_ids"], column["token_type_ids"], strict=True)):
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == sep
        first_sep = ids.index(sep)
        assert first_sep < len(ids) - 1, "the two sentences must share one sequence"
        assert types[: first_sep + 1] == [0] * (first_sep + 1)
        assert types[first_sep + 1 :] == [1] * (len(ids) - first_sep - 1), row
        # The second segment holds the second sentence's tokens.
        second = tokenizer(PAIRS["sentence2"][row], add_special_tokens=False)["input_ids"]
        assert ids[first_sep + 1 : -1] == second
    # The padded batch carries the segment ids to the encoder, and they matter.
    segments, _ = features.batch(np.arange(3))
    assert len(segments) == 1 and set(segments[0]) == {"input_ids", "token_type_ids", "attention_mask"}
    assert (segments[0]["token_type_ids"] == 1).any()
    model = models["concat"]
    with torch.no_grad():
        with_types = model(task, segments)
        zeroed = {**segments[0], "token_type_ids": torch.zeros_like(segments[0]["token_type_ids"])}
        without_types = model(task, [zeroed])
    assert not torch.allclose(with_types, without_types)


class _NoSegmentTokenizer:
    """A tokenizer like DistilBERT's or RoBERTa's: no token_type_ids in its output."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, *args, **kwargs):
        encoded = self.tokenizer(*args, **kwargs)
        del encoded["token_type_ids"]
        return encoded


@pytest.mark.parametrize("head", HEADS)
def test_tokenizer_without_token_type_ids(head, models, tokenizer):
    plain = _NoSegmentTokenizer(tokenizer)
    model = models[head]
    for task in ("sst", "qqp", "sts"):
        features = tokenize(FRAMES[task], task, head, plain, MAX_LENGTH)
        assert all("token_type_ids" not in column for column in features.columns)
        segments, _ = features.batch(np.arange(3))
        assert all(set(segment) == {"input_ids", "attention_mask"} for segment in segments)
        with torch.no_grad():
            output = model(task, segments)
        assert output.shape[0] == 3 and torch.isfinite(output).all()
        # Also when the key is deleted from already tokenised features.
        with_types = _features(task, head, tokenizer)
        for column in with_types.columns:
            column.pop("token_type_ids", None)
        with torch.no_grad():
            again = model(task, with_types.batch(np.arange(3))[0])
        assert torch.allclose(output, again)


@pytest.mark.parametrize("head", ["separate", "cosine"])
def test_separate_and_cosine_encode_two_segments(head, models, tokenizer):
    for task in ("qqp", "sts"):
        assert segments_for(task, head) == 2
        features = _features(task, head, tokenizer)
        assert len(features.columns) == 2
        for k, column in enumerate(features.columns):
            # Each sentence alone: [CLS] sentence [SEP], all segment 0.
            for row, ids in enumerate(column["input_ids"]):
                text = PAIRS[f"sentence{k + 1}"][row]
                assert ids == tokenizer(text)["input_ids"]
                assert ids.count(tokenizer.sep_token_id) == 1
            assert all(set(types) == {0} for types in column["token_type_ids"])
        segments, _ = features.batch(np.arange(3))
        assert len(segments) == 2
        with torch.no_grad():
            assert model_output_differs_when_swapping_second(models[head], task, segments)
    assert segments_for("sst", head) == 1


def model_output_differs_when_swapping_second(model, task, segments) -> bool:
    """The second segment really is read: replacing it by the first changes the output."""
    return not torch.allclose(model(task, segments), model(task, [segments[0], segments[0]]))


def test_unknown_head_is_rejected(encoder):
    with pytest.raises(ValueError, match="unknown head 'bilinear'"):
        MultitaskModel(encoder, "bilinear", dropout=0.1)


# --------------------------------------------------------------------------- task losses

def test_sst_loss_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0, 0.3], [-0.2, 0.1, 0.0, 1.5, -2.0]])
    labels = torch.tensor([0, 3])
    expected = -(torch.log_softmax(logits, -1)[torch.arange(2), labels]).mean()
    assert torch.allclose(task_loss("sst", logits, labels), expected)
    assert torch.equal(task_loss("sst", logits, labels), F.cross_entropy(logits, labels))
    # bf16 outputs are scored in float32.
    assert task_loss("sst", logits.bfloat16(), labels).dtype == torch.float32


def test_qqp_loss_is_bce_with_logits():
    logits = torch.tensor([1.5, -0.5, 0.0])
    labels = torch.tensor([1, 0, 1])
    p = torch.sigmoid(logits)
    y = labels.float()
    expected = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    got = task_loss("qqp", logits, labels)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.equal(got, F.binary_cross_entropy_with_logits(logits, y))


def test_sts_loss_is_mse_on_the_range_mapped_onto_minus_one_one():
    outputs = torch.tensor([0.6, -1.0, 0.0])  # the scores 4, 0 and 2.5
    gold = torch.tensor([5.0, 0.0, 2.5])
    got = task_loss("sts", outputs, gold)
    # Misses of 1, 0 and 0 points on the 0-5 scale are 0.4, 0 and 0 on [-1, 1].
    assert got.item() == pytest.approx(0.4 ** 2 / 3)
    assert torch.allclose(got, F.mse_loss(TASKS["sts"].to_predictions(outputs), gold) / 2.5 ** 2)
