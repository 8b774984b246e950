"""How the fork-server collects a child's bytes (`ForkServer._collect`). Plain forked processes
stand in for sandboxed children here: they write given bytes into a real pipe and exit. Where
everything a child may write fits into its pipe the server waits for the exit alone and reads
afterwards; otherwise it reads as the bytes come. Both give the same results."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Iterator

import pytest

from services.executor import forkserver as fs
from services.executor import sandbox_layers as layers
from services.executor.sandbox_child import READY

FRAME = READY + b"ok\n[1, 2]\x00[1, 2]"


@pytest.fixture(autouse=True)
def sigchld_blocked() -> Iterator[None]:
    """As in the fork-server (`forkserver.main`), which waits for SIGCHLD."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _child_writing(data: bytes) -> fs.Child:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            view = memoryview(data)
            while view:
                view = view[os.write(w, view) :]
        finally:
            os._exit(0)
    os.close(w)
    return fs.Child(pid, -1, r, fcntl.fcntl(r, fcntl.F_GETPIPE_SZ))


def _collect(data: bytes, cap: int, timeout_s: float = 2.0) -> dict[str, object]:
    server = fs.ForkServer(layers.PreparedLayers(), layers.Limits(cpu_s=2), None)
    child = _child_writing(data)
    return server._collect(child, time.monotonic() + timeout_s, cap, 2, 100)


@pytest.mark.parametrize("cap", [1_000, 1 << 20], ids=["after-exit", "streamed"])
def test_a_frame_is_read_whole_either_way(cap: int) -> None:
    assert _collect(FRAME, cap) == {"status": "ok", "outputs": ["[1, 2]", "[1, 2]"]}


@pytest.mark.parametrize("extra", [2_000, 300_000], ids=["fits-the-pipe", "overflows-the-pipe"])
def test_writing_past_the_cap_is_output_limit(extra: int) -> None:
    # the second child blocks on its full pipe until the deadline, and is still over its cap
    result = _collect(FRAME + b"x" * extra, cap=1_000, timeout_s=0.5)
    assert result["status"] == "output_limit", result


def test_a_child_that_does_not_exit_is_a_timeout() -> None:
    # writes its frame, then sleeps past the deadline: the wait for its exit times out
    server = fs.ForkServer(layers.PreparedLayers(), layers.Limits(cpu_s=2), None)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(w, FRAME)
            time.sleep(30)
        finally:
            os._exit(0)
    os.close(w)
    child = fs.Child(pid, -1, r, fcntl.fcntl(r, fcntl.F_GETPIPE_SZ))
    t0 = time.monotonic()
    result = server._collect(child, t0 + 0.3, 1_000, 2, 100)
    assert result["status"] == "timeout", result
    assert time.monotonic() - t0 < 5  # killed at the deadline, not when it woke up


def test_a_child_that_never_wrote_its_ready_byte_is_a_setup_failure() -> None:
    result = _collect(b"ok\n[1]\x00[1]", cap=1_000)
    assert result["status"] == "error" and "sandbox setup failed" in str(result["error"])
