"""dtype "auto": bfloat16 only where the CPU computes in it natively."""

from __future__ import annotations

import pytest

from rest_em.tokens import cpu_has_native_bf16, resolve_dtype, resolve_dtype_name

EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 avx f16c fma avx2 bmi2 sha_ni vaes
"""
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480C
flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
SKYLAKE_AVX512 = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512dq avx512vl\n"
NEOVERSE_V1 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\n"


@pytest.mark.parametrize("cpuinfo, native", [
    (EPYC_AVX2, False),
    (SAPPHIRE_RAPIDS, True),
    (SKYLAKE_AVX512, False),  # AVX512 without its BF16 extension still emulates bfloat16
    (NEOVERSE_V1, True),
    ("", False),
])
def test_cpu_has_native_bf16_reads_the_flags(cpuinfo, native, monkeypatch):
    monkeypatch.delenv("REST_EM_CPU_BF16", raising=False)
    assert cpu_has_native_bf16(cpuinfo) is native


def test_the_environment_overrides_the_detection(monkeypatch):
    monkeypatch.setenv("REST_EM_CPU_BF16", "1")
    assert cpu_has_native_bf16(EPYC_AVX2) is True
    monkeypatch.setenv("REST_EM_CPU_BF16", "0")
    assert cpu_has_native_bf16(SAPPHIRE_RAPIDS) is False


@pytest.mark.parametrize("forced, name", [("0", "float32"), ("1", "bfloat16")])
def test_auto_on_cpu_follows_the_cpu(forced, name, monkeypatch):
    import torch

    monkeypatch.setenv("REST_EM_CPU_BF16", forced)
    assert resolve_dtype_name("auto", "cpu") == name
    assert resolve_dtype("auto", "cpu") == getattr(torch, name)
    assert resolve_dtype("float32", "cpu") == torch.float32  # explicit names are taken as they are


def test_auto_reaches_the_engines_and_the_trainer(monkeypatch):
    from rest_em.sampling.vllm_backend import engine_kwargs
    from rest_em.training.trainer import _precision_flags

    monkeypatch.setenv("REST_EM_CPU_BF16", "0")
    assert engine_kwargs("m", cpu=True, dtype="auto")["dtype"] == "float32"
    assert _precision_flags("auto", cuda=False) == {}
    monkeypatch.setenv("REST_EM_CPU_BF16", "1")
    assert engine_kwargs("m", cpu=True, dtype="auto")["dtype"] == "bfloat16"
    assert _precision_flags("auto", cuda=False) == {"bf16": True}
    assert engine_kwargs("m", cpu=True, dtype="float32")["dtype"] == "float32"


def test_unknown_dtype_is_an_error():
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", "cpu")


def test_explicit_bfloat16_on_an_emulating_cpu_is_warned(monkeypatch, caplog):
    import logging

    from rest_em.sampling.vllm_backend import engine_kwargs
    from rest_em.training.trainer import _precision_flags

    monkeypatch.setenv("REST_EM_CPU_BF16", "0")
    with caplog.at_level(logging.WARNING, logger="rest_em.tokens"):
        assert _precision_flags("bfloat16", cuda=False) == {"bf16": True}  # still what was asked for
        assert engine_kwargs("m", cpu=True, dtype="bfloat16")["dtype"] == "bfloat16"
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["training.dtype", "sampling dtype (vLLM)"]
    caplog.clear()
    monkeypatch.setenv("REST_EM_CPU_BF16", "1")
    with caplog.at_level(logging.WARNING, logger="rest_em.tokens"):
        _precision_flags("bfloat16", cuda=False)
    assert not caplog.records


def test_engine_options_override_the_cpu_defaults():
    from rest_em.sampling.vllm_backend import engine_kwargs

    assert engine_kwargs("m", cpu=True)["block_size"] == 32
    assert engine_kwargs("m", cpu=True, block_size=128)["block_size"] == 128
    assert "block_size" not in engine_kwargs("m", cpu=False)
