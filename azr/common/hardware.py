"""What the machine can compute fast, for the defaults that depend on it."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

# CPU features with native bf16 arithmetic. Without them (e.g. AVX2-only x86 machines) PyTorch
# emulates bf16 in scalar-ish loops: vLLM's bf16 decode measured 4-5x slower than fp32 on such a
# machine (docs/inference.md), and bf16 autocast training about 25x slower.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _first_cpu_field(cpuinfo: Path, names: tuple[str, ...]) -> str | None:
    """The value of the first /proc/cpuinfo line that starts with one of `names` (None where
    there is none, or the file is unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(names):
            return line.split(":", 1)[1].strip()
    return None


@lru_cache(maxsize=1)
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of the first CPU (empty where /proc/cpuinfo is unreadable)."""
    return frozenset((_first_cpu_field(cpuinfo, ("flags", "Features")) or "").split())


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool((cpu_flags() if flags is None else flags) & BF16_CPU_FLAGS)


def auto_dtype(on_cuda: bool, flags: frozenset[str] | None = None) -> str:
    """The generation dtype "auto" resolves to: bf16 on CUDA or on a CPU with native bf16,
    fp32 otherwise."""
    return "bfloat16" if on_cuda or cpu_has_native_bf16(flags) else "float32"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first CPU's model name ("unknown" where /proc/cpuinfo has none)."""
    return _first_cpu_field(cpuinfo, ("model name",)) or "unknown"


def machine_summary(
    cpuinfo: Path = Path("/proc/cpuinfo"), cores: int | None = None
) -> dict[str, object]:
    """What decides a CPU run's speed, recorded beside its results: the same run took 73 minutes
    on one 2-core machine and would have taken hours on another (docs/results.md, run 8)."""
    flags = cpu_flags.__wrapped__(cpuinfo)
    vector = [f for f in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    return {
        "cpu": cpu_model(cpuinfo),
        "cores": cores if cores is not None else (os.cpu_count() or 0),
        "vector": ", ".join(vector) or ("avx2" if "avx2" in flags else "none of avx2/avx512"),
        "cpu_dtype": auto_dtype(on_cuda=False, flags=flags),
    }


if __name__ == "__main__":  # one line for a run's log: python -m azr.common.hardware
    print(" ".join(f"{k}={v!s}" for k, v in machine_summary().items()))
