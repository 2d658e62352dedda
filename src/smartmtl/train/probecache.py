"""Heads' probes fitted once and reused by every run that would fit the very same one.

A task's probe (:mod:`smartmtl.train.probe`) is a function of what its head receives and of how
that is computed: the weights of everything below the heads, the pair design and pooling, the
rows' tokens and labels, the device, precision, batch size and threads, the libraries and the
code. Runs that start from one checkpoint on one set of rows fit the same probe: every
simultaneous run of a sweep, seed after seed and variant after variant, and each of Figure 3's
runs. :func:`probe_key` hashes all of those inputs (the code as the bytes of every module of the
package, so any edit misses), and :class:`ProbeCache` keeps each fit in a file named by its key.

So a hit returns what fitting again would return, bit for bit (a test checks it), no result
depends on whether the cache was warm, and deleting the folder is always safe. It is a memo, not
an output: DVC does not track it, and a stage run in a fresh workspace only starts cold.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import sklearn
import torch
import transformers
from safetensors.torch import load_file, save_file

from smartmtl.model.features import TaskFeatures
from smartmtl.model.heads import MultitaskModel

logger = logging.getLogger(__name__)

Head = tuple[torch.Tensor, torch.Tensor]  # a fitted head's weight and bias


@functools.cache
def _package_code() -> str:
    """A hash of every module of the package, byte for byte."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _add_rows(digest, features: TaskFeatures, rows: np.ndarray) -> None:
    """The rows' tokens and labels, in ``rows``' order."""
    for column in features.columns:
        for key in sorted(column):
            digest.update(json.dumps([column[key][i] for i in rows.tolist()]).encode())
    if features.labels is not None:
        digest.update(features.labels.numpy()[rows].tobytes())


def probe_key(model: MultitaskModel, task: str, features: TaskFeatures, rows: np.ndarray,
              extra: TaskFeatures | None, batch_size: int, device: torch.device, autocast) -> str:
    """What the probe of ``model.heads[task]`` on ``rows`` (and all of ``extra``) is a function of, hashed."""
    if not isinstance(model, MultitaskModel):  # a fused group's member view holds the whole stack
        raise TypeError(f"probes are keyed on a MultitaskModel's weights, not a {type(model).__name__}'s")
    with autocast():
        precision = [torch.is_autocast_enabled(device.type), str(torch.get_autocast_dtype(device.type))]
    config = {k: v for k, v in model.encoder.config.to_dict().items() if "dropout" not in k}  # eval mode: no dropout
    settings = {
        "task": task, "head": model.head, "pooling": model.pooling, "encoder": config,
        "attention": model.encoder.config._attn_implementation, "head_dtype": str(model.heads[task].weight.dtype),
        "device": str(device), "precision": precision, "batch_size": batch_size, "threads": torch.get_num_threads(),
        "libraries": [torch.__version__, transformers.__version__, sklearn.__version__, np.__version__],
        "code": _package_code(), "rows": len(rows), "extra": 0 if extra is None else len(extra),
    }
    digest = hashlib.blake2b(json.dumps(settings, sort_keys=True, default=str).encode(), digest_size=20)
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith("heads."):  # a head reads what is below it; the other heads are each run's own
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    _add_rows(digest, features, rows)
    if extra is not None:
        _add_rows(digest, extra, np.arange(len(extra)))
    return digest.hexdigest()


class ProbeCache:
    """Fitted heads in ``directory``, one file per :func:`probe_key`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def load(self, key: str) -> Head | None:
        path = self.path(key)
        if not path.exists():
            return None
        tensors = load_file(str(path))
        logger.info("probe reused from %s", path)
        return tensors["weight"], tensors["bias"]

    def store(self, key: str, head: Head) -> None:
        """Written whole or not at all: runs in parallel (DVC's queue, torchrun) may store the same key."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(handle)
        try:
            save_file({"weight": head[0].contiguous(), "bias": head[1].contiguous()}, temporary)
            os.replace(temporary, self.path(key))
        finally:
            Path(temporary).unlink(missing_ok=True)
