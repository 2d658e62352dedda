"""Which device trains, and in which precision: the only module that looks at the hardware.

``train.precision: auto`` picks bf16 autocast only where the hardware computes in bf16:
CUDA devices that support it, and CPUs with AMX-BF16 or AVX512-BF16. Elsewhere (an AVX2-only
CPU such as most laptops, or a Zen 3 AMD EPYC) bf16 is emulated and slower than fp32
(docs/speed.md), so ``auto`` trains in fp32 there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from smartmtl.train import distributed

log = logging.getLogger(__name__)

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def pick_device() -> torch.device:
    """This process's GPU (torchrun starts one process per GPU), else the CPU."""
    return torch.device("cuda", distributed.local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def choose_precision(requested: str, device_type: str, cuda_bf16: bool, flags: frozenset[str]) -> tuple[str, str]:
    """The precision to train in, and why: a pure function of what the hardware offers."""
    if requested != "auto":
        return requested, "set in params.yaml"
    if device_type == "cuda":
        return ("bf16", "the GPU supports bf16") if cuda_bf16 else ("fp32", "the GPU has no bf16")
    fast = sorted(flag for flag in BF16_CPU_FLAGS if flag in flags)
    if fast:
        return "bf16", f"the CPU has {', '.join(fast)}"
    return "fp32", "the CPU has no AMX-BF16 or AVX512-BF16, so bf16 would be emulated, slower than fp32"


@functools.cache
def resolve_precision(requested: str, device: torch.device) -> str:
    """``choose_precision`` for this machine, logged once per process."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    precision, why = choose_precision(requested, device.type, cuda_bf16, cpu_flags())
    log.info("precision %s (%s)", precision, why)
    return precision


def autocast_for(device: torch.device, requested: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A context-manager factory: bf16 autocast where ``requested`` resolves to bf16, else none."""
    enabled = resolve_precision(requested, device) == "bf16"
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@dataclass(frozen=True)
class Compute:
    """Where a run computes and in which precision: resolved once, by whoever owns the run."""

    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]


def resolve_compute(requested_precision: str) -> Compute:
    device = pick_device()
    return Compute(device, autocast_for(device, requested_precision))
