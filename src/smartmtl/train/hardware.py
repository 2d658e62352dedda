"""Which device trains, and in which precision: the only module that looks at the hardware.

``train.device: auto`` takes this process's CUDA GPU, else Apple's GPU through MPS, else the
CPU; naming a device that is not there is an error, not a silent fall-back to the CPU.

``train.precision: auto`` picks bf16 autocast only where it was measured faster than fp32
(docs/speed.md):

- CUDA: bf16 where the GPU supports it.
- Apple MPS: fp32. This project never ran on Apple hardware; fp32 is what every MPS kernel
  implements, bf16 on MPS needs a recent macOS and chip, and fp16 would need a gradient
  scaler the training loop does not have. ``precision: bf16`` can still be asked for.
- CPU: bf16 with AMX-BF16 (the matrix units of recent Xeons), or on an AMD CPU with
  AVX512-BF16 (Zen 4 and later). An Intel CPU with AVX512-BF16 but without AMX (or whose
  hypervisor hides AMX) ran bf16 autocast slower than fp32, and on a CPU without either flag
  (AVX2 laptops, older EPYCs) bf16 is emulated: fp32 there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from smartmtl.errors import UserError
from smartmtl.train import distributed

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(UserError):
    """``train.device`` names a device this machine does not have."""


@dataclass(frozen=True)
class Cpu:
    """What Linux says of the CPU: its vendor (GenuineIntel, AuthenticAMD; "" if unknown) and flags."""

    vendor: str
    flags: frozenset[str]


def read_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> Cpu:
    """The first processor's vendor and flags (empty where there is no /proc/cpuinfo: macOS, Windows)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return Cpu("", frozenset())
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return Cpu(fields.get("vendor_id", ""), frozenset(fields.get("flags", "").split()))


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    return read_cpu(cpuinfo).flags


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def choose_device(requested: str, cuda: bool, mps: bool) -> str:
    """The device type to compute on: a pure function of what is asked for and what is there."""
    if requested not in DEVICES:
        raise DeviceError(f"train.device is {requested!r}: use one of {', '.join(DEVICES)}")
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise DeviceError("train.device is cuda, but torch sees no CUDA GPU here "
                          f"(torch {torch.__version__}): set train.device to auto or cpu")
    if requested == "mps" and not mps:
        raise DeviceError("train.device is mps, but Apple's MPS is not available here (it needs an Apple-silicon "
                          "Mac and a torch built with MPS): set train.device to auto or cpu")
    return requested


def pick_device(requested: str = "auto") -> torch.device:
    """This process's device: its GPU where torchrun started one process per GPU."""
    kind = choose_device(requested, torch.cuda.is_available(), mps_available())
    return torch.device("cuda", distributed.local_rank()) if kind == "cuda" else torch.device(kind)


def choose_precision(requested: str, device_type: str, cuda_bf16: bool, cpu: Cpu) -> tuple[str, str]:
    """The precision to train in, and why: a pure function of what the hardware offers."""
    if requested != "auto":
        return requested, "set in params.yaml"
    if device_type == "cuda":
        return ("bf16", "the GPU supports bf16") if cuda_bf16 else ("fp32", "the GPU has no bf16")
    if device_type == "mps":
        return "fp32", "Apple's MPS: bf16 there was never measured in this project, fp32 runs everywhere"
    if "amx_bf16" in cpu.flags:
        return "bf16", "the CPU has amx_bf16"
    if "avx512_bf16" in cpu.flags:
        if cpu.vendor == "AuthenticAMD":
            return "bf16", "an AMD CPU with avx512_bf16"
        return "fp32", "the CPU has avx512_bf16 but no amx_bf16: bf16 autocast measured slower than fp32 there"
    return "fp32", "the CPU has no AMX-BF16 or AVX512-BF16, so bf16 would be emulated, slower than fp32"


@functools.cache
def resolve_precision(requested: str, device: torch.device) -> str:
    """``choose_precision`` for this machine, logged once per process."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    cpu = read_cpu() if device.type == "cpu" else Cpu("", frozenset())
    precision, why = choose_precision(requested, device.type, cuda_bf16, cpu)
    log.info("device %s, precision %s (%s)", device, precision, why)
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


def resolve_compute(requested_precision: str, requested_device: str = "auto") -> Compute:
    """``train.precision`` and ``train.device`` resolved for this machine."""
    device = pick_device(requested_device)
    return Compute(device, autocast_for(device, requested_precision))
