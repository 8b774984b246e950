"""Shared fixtures: a real sandbox engine (fork-server pair) and helpers to inspect /proc."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.executor.engine import Engine, EngineLimits
from services.executor.sandbox import SandboxConfig, SandboxPair

SPARES = 4


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is `pid`, read from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    pair = SandboxPair(SandboxConfig(cpu_s=10, memory_mb=256, spares=SPARES), seeds=(11, 12))
    eng = Engine(EngineLimits(timeout_s=3.0, max_output=2000), pair)
    eng.start()
    try:
        yield eng
    finally:
        eng.close()
    for proc in (pair.primary, pair.secondary):
        assert proc.proc is None


@pytest.fixture
def fork_server_pids(engine: Engine) -> list[int]:
    return [p for p in (engine.pair.primary.server_pid, engine.pair.secondary.server_pid) if p]
