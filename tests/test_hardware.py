"""`train.device` and `train.precision: auto`: which device computes, and bf16 only where measured faster."""

from __future__ import annotations

import pytest
import torch

from smartmtl.config import ConfigError, parse_params
from smartmtl.presets import render
from smartmtl.train import hardware
from smartmtl.train.hardware import Cpu, DeviceError, choose_device, choose_precision, cpu_flags, read_cpu

# The flags line of this project's 2-core Intel Xeon (family 6, model 207: Emerald Rapids),
# whose hypervisor lists avx512_bf16 but none of the amx_* flags.
EMERALD_RAPIDS_VM_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht "
    "syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni "
    "pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c "
    "rdrand hypervisor lahf_lm abm 3dnowprefetch cpuid_fault fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms "
    "invpcid rtm avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl "
    "xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq "
    "avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid cldemote movdiri movdir64b fsrm serialize tsxldtrk "
    "avx512_fp16 arch_capabilities")

INTEL_AMX = Cpu("GenuineIntel", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
INTEL_VM_NO_AMX = Cpu("GenuineIntel", frozenset(EMERALD_RAPIDS_VM_FLAGS.split()))
AMD_ZEN4 = Cpu("AuthenticAMD", frozenset({"avx2", "avx512f", "avx512_bf16"}))
AVX512_NO_BF16 = Cpu("GenuineIntel", frozenset({"avx2", "avx512f", "avx512bw"}))
AVX2_EPYC = Cpu("AuthenticAMD", frozenset({"avx", "avx2", "fma", "sha_ni"}))
UNKNOWN_BF16 = Cpu("", frozenset({"avx512f", "avx512_bf16"}))
NO_CPUINFO = Cpu("", frozenset())  # macOS, Windows


# ----------------------------------------------------------------------------- the device
@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"),
    (True, False, "cuda"),
    (False, True, "mps"),
    (False, False, "cpu"),
])
def test_auto_takes_cuda_then_mps_then_the_cpu(cuda, mps, expected):
    assert choose_device("auto", cuda=cuda, mps=mps) == expected


@pytest.mark.parametrize("requested", ["cpu", "cuda", "mps"])
def test_a_named_device_that_is_there_is_taken(requested):
    assert choose_device(requested, cuda=True, mps=True) == requested
    assert choose_device("cpu", cuda=False, mps=False) == "cpu"


@pytest.mark.parametrize("requested, cuda, mps, named", [
    ("cuda", False, True, "CUDA GPU"),
    ("mps", True, False, "MPS"),
])
def test_a_named_device_that_is_missing_fails_in_one_line(requested, cuda, mps, named):
    with pytest.raises(DeviceError) as error:
        choose_device(requested, cuda=cuda, mps=mps)
    message = str(error.value)
    assert f"train.device is {requested}" in message and named in message and "\n" not in message


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, torch.device("cuda", 0)),
    (False, True, torch.device("mps")),
    (False, False, torch.device("cpu")),
])
def test_pick_device_asks_torch_what_is_there(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(hardware, "mps_available", lambda: mps)
    assert hardware.pick_device() == expected


def test_pick_device_refuses_a_missing_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "mps_available", lambda: False)
    with pytest.raises(DeviceError, match="train.device is cuda"):
        hardware.pick_device("cuda")


def test_train_device_is_validated_with_the_allowed_values():
    raw = render("smoke")
    assert parse_params(raw).train.device == "auto"
    raw["train"]["device"] = "tpu"
    with pytest.raises(ConfigError) as error:
        parse_params(raw)
    message = str(error.value)
    assert "train.device" in message
    for name in ("auto", "cpu", "cuda", "mps"):
        assert repr(name) in message


# -------------------------------------------------------------------------- the precision
@pytest.mark.parametrize("cpu, expected, why", [
    (INTEL_AMX, "bf16", "amx_bf16"),
    (AMD_ZEN4, "bf16", "AMD"),
    (INTEL_VM_NO_AMX, "fp32", "no amx_bf16"),  # this project's Xeon: bf16 autocast measured slower
    (UNKNOWN_BF16, "fp32", "no amx_bf16"),  # avx512_bf16 from an unknown vendor: the safe choice
    (AVX512_NO_BF16, "fp32", "no AMX-BF16"),
    (AVX2_EPYC, "fp32", "no AMX-BF16"),
    (NO_CPUINFO, "fp32", "no AMX-BF16"),
])
def test_auto_on_the_cpu_takes_bf16_only_where_measured_faster(cpu, expected, why):
    precision, reason = choose_precision("auto", "cpu", cuda_bf16=False, cpu=cpu)
    assert precision == expected
    assert why in reason


@pytest.mark.parametrize("cuda_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_a_gpu_follows_its_bf16_support(cuda_bf16, expected):
    assert choose_precision("auto", "cuda", cuda_bf16=cuda_bf16, cpu=AVX2_EPYC)[0] == expected


def test_auto_on_apple_mps_is_fp32_whatever_the_cpu():
    precision, why = choose_precision("auto", "mps", cuda_bf16=False, cpu=INTEL_AMX)
    assert precision == "fp32" and "MPS" in why


@pytest.mark.parametrize("requested", ["bf16", "fp32"])
@pytest.mark.parametrize("device_type", ["cpu", "cuda", "mps"])
def test_an_explicit_precision_is_kept_whatever_the_hardware(requested, device_type):
    for cpu in (INTEL_AMX, INTEL_VM_NO_AMX, AVX2_EPYC):
        assert choose_precision(requested, device_type, cuda_bf16=False, cpu=cpu) == (requested, "set in params.yaml")


# -------------------------------------------------------------------------- /proc/cpuinfo
def test_read_cpu_reads_the_first_processors_vendor_and_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\n"
                       f"flags\t\t: {EMERALD_RAPIDS_VM_FLAGS}\n\nprocessor\t: 1\nvendor_id\t: Other\nflags\t\t: fpu\n")
    cpu = read_cpu(cpuinfo)
    assert cpu == INTEL_VM_NO_AMX
    assert choose_precision("auto", "cpu", cuda_bf16=False, cpu=cpu)[0] == "fp32"
    assert cpu_flags(cpuinfo) == INTEL_VM_NO_AMX.flags
    assert read_cpu(tmp_path / "missing") == NO_CPUINFO
