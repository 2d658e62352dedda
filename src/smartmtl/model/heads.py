"""The multitask model: one shared encoder and a small head per task (Section 4.1, A.1).

Pair tasks (QQP, STS) use one of three designs:
- ``separate``: each sentence encoded alone, the two [CLS] vectors concatenated into a
  linear layer (the paper's baseline);
- ``cosine``: Sentence-BERT; mean-pooled sentence embeddings u, v; classification from
  [u, v, |u - v|], regression from cos(u, v);
- ``concat``: a cross-encoder, ``[CLS] s1 [SEP] s2 [SEP]`` as one sequence, [CLS] into a
  linear layer.
SST always reads [CLS] (or the mean of the tokens, ``model.pooling``) into 5 outputs.
A score (STS) is output on [-1, 1]; the task table maps it onto the labels' 0-5 range.

SMART perturbs the input of the encoder through a forward hook on one of its modules
(:meth:`MultitaskModel.perturbation_site`), so the forward itself knows nothing of it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from smartmtl.config import Params
from smartmtl.model.backbone import load_encoder
from smartmtl.tasks import TASKS, Task
from smartmtl.variants import RunSpec

Segment = dict[str, Tensor]  # input_ids, attention_mask and, where the model has them, token_type_ids


def segments_for(task: str, head: str) -> int:
    """How many separately encoded sequences a task's input has."""
    return 2 if TASKS[task].is_pair and head in ("separate", "cosine") else 1


class MultitaskModel(nn.Module):
    def __init__(self, encoder: nn.Module, head: str, dropout: float, pooling: str = "cls"):
        super().__init__()
        if head not in ("separate", "cosine", "concat"):
            raise ValueError(f"unknown head {head!r}; heads are separate, cosine, concat")
        self.encoder, self.head, self.pooling = encoder, head, pooling
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        pair_width = {"separate": 2 * hidden, "cosine": 3 * hidden, "concat": hidden}[head]
        # A score read from the cosine has no layer of its own.
        self.heads = nn.ModuleDict({name: nn.Linear(pair_width if task.is_pair else hidden, task.outputs)
                                    for name, task in TASKS.items() if not self._scored_by_cosine(task)})

    def _scored_by_cosine(self, task: Task) -> bool:
        return self.head == "cosine" and not task.has_classes

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def perturbation_site(self, site: str) -> nn.Module:
        """The module whose output SMART perturbs: the word embeddings or the whole embedding layer."""
        if site == "word_embeddings":
            return self.encoder.get_input_embeddings()
        if site == "embedding_output":
            return self.encoder.embeddings
        raise ValueError(f"unknown perturbation site {site!r}; sites are word_embeddings, embedding_output")

    def _encode(self, segment: Segment, pooling: str) -> Tensor:
        hidden = self.encoder(**segment).last_hidden_state
        if pooling == "cls":
            return hidden[:, 0]
        mask = segment["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward(self, task: str, segments: list[Segment]) -> Tensor:
        """SST: logits [B, 5]; QQP: one logit [B]; STS: a score [B] on [-1, 1]."""
        spec = TASKS[task]
        if not spec.is_pair:
            return self.heads[task](self.dropout(self._encode(segments[0], self.pooling)))
        if self.head == "concat":
            features = self._encode(segments[0], self.pooling)
        else:
            pooling = "mean" if self.head == "cosine" else self.pooling
            u, v = (self._encode(s, pooling) for s in segments)
            if self._scored_by_cosine(spec):
                return F.cosine_similarity(u.float(), v.float(), dim=-1)
            features = torch.cat([u, v, (u - v).abs()] if self.head == "cosine" else [u, v], dim=-1)
        return self.heads[task](self.dropout(features)).squeeze(-1)


# --- a run's model, built fresh or from a checkpoint, and saved ---------------------------

def build_model(spec: RunSpec, params: Params, init: Path | None = None) -> MultitaskModel:
    encoder = load_encoder(params.model.backbone, spec.dropout)
    model = MultitaskModel(encoder, spec.head, spec.dropout, params.model.pooling)
    if init is not None:
        model.load_state_dict(load_file(init))
    return model


def save_model(model: MultitaskModel, path: Path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
