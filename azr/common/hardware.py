"""What the machine can compute fast, for the defaults that depend on it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# CPU features with native bf16 arithmetic. Without them (e.g. AVX2-only x86 machines) PyTorch
# emulates bf16 in scalar-ish loops: vLLM's bf16 decode measured 4-5x slower than fp32 on such a
# machine (docs/inference.md), and bf16 autocast training about 25x slower.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of the first CPU (empty where /proc/cpuinfo is unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool((cpu_flags() if flags is None else flags) & BF16_CPU_FLAGS)


def auto_dtype(on_cuda: bool, flags: frozenset[str] | None = None) -> str:
    """The generation dtype "auto" resolves to: bf16 on CUDA or on a CPU with native bf16,
    fp32 otherwise."""
    return "bfloat16" if on_cuda or cpu_has_native_bf16(flags) else "float32"
