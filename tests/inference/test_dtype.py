"""How "auto" picks the generation dtype: bf16 only where the hardware computes it natively."""

from __future__ import annotations

from pathlib import Path

from azr.common.hardware import auto_dtype, cpu_flags, cpu_has_native_bf16, machine_summary

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


def test_bf16_only_where_it_is_native() -> None:
    assert auto_dtype(on_cuda=False, flags=AVX2_ONLY) == "float32"
    assert auto_dtype(on_cuda=False, flags=SAPPHIRE_RAPIDS) == "bfloat16"
    assert auto_dtype(on_cuda=True, flags=AVX2_ONLY) == "bfloat16"
    assert not cpu_has_native_bf16(AVX2_ONLY | {"avx512f", "avx512_vnni"})


def test_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: test\nflags\t\t: fpu avx2 avx512_bf16\n")
    flags = cpu_flags.__wrapped__(cpuinfo)
    assert flags == frozenset({"fpu", "avx2", "avx512_bf16"}) and cpu_has_native_bf16(flags)
    assert cpu_flags.__wrapped__(tmp_path / "missing") == frozenset()


def test_the_machine_summary_names_what_decides_a_cpu_run_speed(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2 fma\n")
    summary = machine_summary(cpuinfo, cores=2)
    assert summary == {"cpu": "AMD EPYC", "cores": 2, "vector": "avx2", "cpu_dtype": "float32"}
    cpuinfo.write_text("model name\t: Xeon\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16\n")
    summary = machine_summary(cpuinfo, cores=2)
    assert summary["vector"] == "avx512f, avx512_bf16, amx_bf16"
    assert summary["cpu_dtype"] == "bfloat16"
    assert machine_summary(tmp_path / "missing", cores=1)["cpu"] == "unknown"
