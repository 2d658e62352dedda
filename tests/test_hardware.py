"""`train.precision: auto` picks bf16 only where the hardware computes in it."""

from __future__ import annotations

import pytest

from smartmtl.train.hardware import choose_precision, cpu_flags

AMX_XEON = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX512_BF16_ONLY = frozenset({"avx2", "avx512f", "avx512_bf16"})
AVX512_NO_BF16 = frozenset({"avx2", "avx512f", "avx512bw"})
AVX2_EPYC = frozenset({"avx", "avx2", "fma", "sha_ni"})


@pytest.mark.parametrize("flags, expected", [
    (AMX_XEON, "bf16"),
    (AVX512_BF16_ONLY, "bf16"),
    (AVX512_NO_BF16, "fp32"),
    (AVX2_EPYC, "fp32"),
    (frozenset(), "fp32"),  # no /proc/cpuinfo (macOS, Windows): the safe choice
])
def test_auto_on_the_cpu_follows_the_bf16_flags(flags, expected):
    precision, why = choose_precision("auto", "cpu", cuda_bf16=False, flags=flags)
    assert precision == expected
    assert ("amx_bf16" in why or "avx512_bf16" in why) if expected == "bf16" else "no AMX-BF16" in why


@pytest.mark.parametrize("cuda_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_a_gpu_follows_its_bf16_support(cuda_bf16, expected):
    assert choose_precision("auto", "cuda", cuda_bf16=cuda_bf16, flags=AVX2_EPYC)[0] == expected


@pytest.mark.parametrize("requested", ["bf16", "fp32"])
def test_an_explicit_precision_is_kept_whatever_the_hardware(requested):
    for flags in (AMX_XEON, AVX2_EPYC):
        assert choose_precision(requested, "cpu", cuda_bf16=False, flags=flags) == (requested, "set in params.yaml")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 sha_ni\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "sha_ni"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
