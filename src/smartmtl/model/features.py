"""Token ids for each task, computed once per split, and length-bucketed padded batches.

Texts are tokenised in one call to the fast tokenizer, without padding; a batch pads only
to its own longest sequence, and batches are drawn from examples of similar length, so
the encoder spends little time on padding. Nothing here loops over tokens in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from smartmtl.config import SPLITS, Params
from smartmtl.data.prepared import PROBE_SPLIT, load_split, output_name
from smartmtl.model.backbone import load_tokenizer
from smartmtl.model.heads import Segment, segments_for
from smartmtl.tasks import TASKS

BUCKET_BATCHES = 50  # batches sorted together by length: enough to cut padding, still random


@dataclass
class TaskFeatures:
    """One task's split, tokenised: ``columns[k][i]`` holds example i's k-th sequence."""

    task: str
    ids: list[str]
    columns: list[dict[str, list[list[int]]]]
    labels: Tensor | None
    lengths: np.ndarray  # tokens in the longest sequence of each example

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices: np.ndarray, device: torch.device | str = "cpu") -> tuple[list[Segment], Tensor | None]:
        segments = [_pad(column, indices, device) for column in self.columns]
        labels = None if self.labels is None else self.labels[torch.as_tensor(indices)].to(device)
        return segments, labels

    def subset(self, indices: np.ndarray) -> TaskFeatures:
        pick = indices.tolist()
        return TaskFeatures(
            self.task,
            [self.ids[i] for i in pick],
            [{key: [values[i] for i in pick] for key, values in column.items()} for column in self.columns],
            None if self.labels is None else self.labels[torch.as_tensor(indices)],
            self.lengths[indices],
        )


def _pad(column: dict[str, list[list[int]]], indices: np.ndarray, device) -> Segment:
    rows = [column["input_ids"][i] for i in indices]
    width = max(len(row) for row in rows)
    segment = {}
    for key in column:
        padded = np.zeros((len(rows), width), dtype=np.int64)
        for r, i in enumerate(indices):
            values = column[key][i]
            padded[r, : len(values)] = values
        segment[key] = torch.from_numpy(padded).to(device)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        mask[r, : len(row)] = 1
    segment["attention_mask"] = torch.from_numpy(mask).to(device)
    return segment


def tokenize(frame: pd.DataFrame, task: str, head: str, tokenizer, max_length: int) -> TaskFeatures:
    spec = TASKS[task]
    sentences = [frame[column].tolist() for column in spec.text_columns]
    # One tokenizer call per sequence the model encodes: each text alone, or a pair as one sequence.
    texts = [(text,) for text in sentences] if segments_for(task, head) == len(sentences) else [tuple(sentences)]
    columns = []
    for args in texts:
        encoded = tokenizer(*args, truncation=True, max_length=max_length, return_attention_mask=False)
        columns.append({key: encoded[key] for key in ("input_ids", "token_type_ids") if key in encoded})
    lengths = np.max([[len(row) for row in column["input_ids"]] for column in columns], axis=0)
    labels = None
    if "label" in frame:
        labels = torch.tensor(frame["label"].to_numpy(), dtype=spec.label_tensor_dtype)
    return TaskFeatures(task, frame["id"].astype(str).tolist(), columns, labels, lengths)


def bucketed_batches(lengths: np.ndarray, batch_size: int, generator: np.random.Generator) -> list[np.ndarray]:
    """One shuffled pass: random chunks, sorted by length inside, cut into batches, shuffled."""
    order = generator.permutation(len(lengths))
    chunk = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), chunk):
        block = order[start : start + chunk]
        block = block[np.argsort(lengths[block], kind="stable")]
        batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    return [batches[i] for i in generator.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation order: longest first, so memory peaks at once and padding is minimal."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def load_features(params: Params, tasks, head: str, splits=SPLITS) -> dict[str, dict[str, TaskFeatures]]:
    """Tokenise each task's splits once: ``features[split][task]``. With the training split come
    the rows only the heads' probe reads, ``features["probe"]``, for the tasks that have them
    (``data.probe_limit``)."""
    tokenizer, prepared = load_tokenizer(params.model.backbone), Path(params.data.prepared_dir)

    def features(task: str, split: str) -> TaskFeatures:
        return tokenize(load_split(prepared, task, split), task, head, tokenizer, params.model.max_length)

    loaded = {split: {task: features(task, split) for task in tasks} for split in splits}
    if "train" in splits:
        loaded[PROBE_SPLIT] = {task: features(task, PROBE_SPLIT) for task in tasks
                               if (prepared / output_name(task, PROBE_SPLIT)).exists()}
    return loaded
