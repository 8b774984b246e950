"""The fork-server: a small dedicated process (never the Celery worker itself) that pre-imports
what programs may use, prepares the isolation layers once, and forks one sandboxed child per job.

Spare children are forked in bursts and lock themselves down *before* their jobs arrive, so the
sandbox set-up overlaps the previous job and a job costs little more than two pipe writes and a
reap; see docs/executor.md, "Performance", for what a child costs and why.

Protocol on stdin/stdout: 4-byte big-endian length + JSON. First message in: the config; first
message out: the layer report. Then requests ``{"jobs": [...]}`` -> ``{"results": [...]}``.
Run as ``python -S -s -m services.executor.forkserver`` with an empty environment (plus
PYTHONHASHSEED)."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# What a program may import: loaded here once, inherited by every child for free (children run
# as an unprivileged uid that may not be able to read the interpreter's files, and Landlock
# denies reads anyway).
PRELOAD = (
    "abc",
    "array",
    "base64",
    "binascii",
    "bisect",
    "cmath",
    "collections",
    "collections.abc",
    "contextlib",
    "copy",
    "dataclasses",
    "decimal",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "graphlib",
    "heapq",
    "itertools",
    "json",
    "keyword",
    "math",
    "numbers",
    "operator",
    "pprint",
    "re",
    "statistics",
    "string",
    "struct",
    "textwrap",
    "typing",
    "unicodedata",
    "zlib",
    "encodings.idna",
    "encodings.utf_16",
    "encodings.utf_32",
    "encodings.latin_1",
    "encodings.ascii",
    "encodings.unicode_escape",
    "encodings.raw_unicode_escape",
)
for _name in PRELOAD:
    try:
        __import__(_name)
    except ImportError:
        pass

from services.executor import sandbox_layers as layers  # noqa: E402
from services.executor.sandbox_child import (  # noqa: E402
    BuiltinsGuard,
    prepare_server,
    run_child,
    warm_up,
)

# libc's fork() called directly, holding the GIL (PyDLL): os.fork() would also run CPython's
# after-fork machinery (re-initialising locks and threads, at-fork hooks such as random's reseed)
# in every child, which writes to ~200 inherited pages; each such write is a copy-on-write fault,
# together more than half of a child's cost. The fork-server is single-threaded (checked at
# start-up), so there is no lock another thread could hold and nothing to re-initialise.
_libc_fork = ctypes.PyDLL(None, use_errno=True).fork
_libc_fork.restype = ctypes.c_int
_libc_fork.argtypes = []


def _fork() -> int:
    pid = int(_libc_fork())
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fork failed: {os.strerror(err)}")
    return pid


_SIGNAL_STATUS = {
    signal.SIGXCPU: ("timeout", "CPU time limit reached"),
    signal.SIGSYS: ("forbidden", "killed by the seccomp filter (forbidden syscall)"),
    signal.SIGSEGV: ("error", "crashed with SIGSEGV (stack overflow?)"),
    signal.SIGBUS: ("error", "crashed with SIGBUS"),
    signal.SIGABRT: ("error", "aborted"),
    signal.SIGXFSZ: ("forbidden", "file size limit reached (writes are not allowed)"),
}
_STATUSES = {"ok", "error", "timeout", "memory", "forbidden", "output_limit"}


@dataclass
class Child:
    pid: int
    job_w: int
    result_r: int
    token: bytes


class ForkServer:
    def __init__(
        self,
        prepared: layers.PreparedLayers,
        limits: layers.Limits,
        guard: BuiltinsGuard | None,
        batch: int = 1,
    ) -> None:
        self.prepared = prepared
        self.limits = limits
        self.guard = guard
        self.spares: list[Child] = []
        self.batch = max(1, batch)
        self.fork: Callable[[], int] = _fork

    def spawn(self) -> Child:
        job_r, job_w = os.pipe()
        result_r, result_w = os.pipe()
        token = os.urandom(16)
        pid = self.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                assert self.guard is not None, "prepare_server() first"
                run_child(job_r, result_w, token, self.prepared, self.limits, self.guard)
            finally:
                os._exit(70)
        os.close(job_r)
        os.close(result_w)
        return Child(pid, job_w, result_r, token)

    def spare_pids(self) -> list[int]:
        return [c.pid for c in self.spares]

    def refill(self) -> None:
        """Fork `batch` spare children back to back. Every fork write-protects the server's
        pages, and each page the server then writes costs it a copy-on-write fault; forking in
        bursts makes the server pay that once per burst instead of once per job."""
        for _ in range(self.batch - len(self.spares)):
            self.spares.append(self.spawn())

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        if not self.spares:
            self.refill()
        child = self.spares.pop()
        t0 = time.monotonic()
        payload = json.dumps(job).encode()
        timeout_s = float(job.get("timeout_s") or self.limits.cpu_s)
        try:
            _write_all(child.job_w, struct.pack("!I", len(payload)) + payload)
        except OSError:
            pass  # the child died during set-up; its exit status tells why
        os.close(child.job_w)
        if not self.spares:
            self.refill()  # the next jobs' children lock down while this one runs
        n_calls = max(1, len(job.get("args") or job.get("pairs") or []))
        cap = (1 << 20) + 16 * int(job.get("max_output", 4000)) * n_calls
        result = self._collect(child, t0 + timeout_s, cap)
        result["duration_ms"] = (time.monotonic() - t0) * 1000.0
        return result

    def _collect(self, child: Child, deadline: float, cap: int) -> dict[str, Any]:
        data = bytearray()
        killed_for: str | None = None
        pidfd = os.pidfd_open(child.pid)
        try:
            poller = select.poll()
            poller.register(child.result_r, select.POLLIN | select.POLLHUP)
            eof = False
            while not eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    killed_for = "timeout"
                    break
                if not poller.poll(left * 1000):
                    continue
                chunk = os.read(child.result_r, 1 << 16)
                if not chunk:
                    eof = True
                data += chunk
                if len(data) > cap:
                    killed_for = "output_limit"
                    break
            if killed_for is None:
                # EOF: the child is exiting; give it until the deadline to be gone
                left = max(0.0, deadline - time.monotonic())
                if not select.select([pidfd], [], [], left)[0]:
                    killed_for = "timeout"
        finally:
            _kill_group(child.pid)
            _, status, usage = os.wait4(child.pid, 0)
            os.close(pidfd)
            os.close(child.result_r)
        frame = _parse_frame(bytes(data), child.token)
        if frame is not None and killed_for is None:
            return frame
        if killed_for == "timeout":
            return {"status": "timeout", "error": "wall-clock limit reached"}
        if killed_for == "output_limit":
            return {"status": "output_limit", "error": "wrote too much into the result pipe"}
        if frame is not None:
            return frame
        return _status_from_exit(status, usage.ru_utime + usage.ru_stime, self.limits)

    def close(self) -> None:
        while self.spares:
            spare = self.spares.pop()
            os.close(spare.job_w)
            _kill_group(spare.pid)
            os.waitpid(spare.pid, 0)
            os.close(spare.result_r)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, signal.SIGKILL)  # before setpgid took effect the group may not exist
    except (ProcessLookupError, PermissionError):
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _parse_frame(data: bytes, token: bytes) -> dict[str, Any] | None:
    at = data.find(token)
    if at < 0 or len(data) < at + len(token) + 4:
        return None
    (size,) = struct.unpack("!I", data[at + len(token) : at + len(token) + 4])
    body = data[at + len(token) + 4 : at + len(token) + 4 + size]
    try:
        frame = json.loads(body)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("status") not in _STATUSES:
        return None
    return frame


def _status_from_exit(status: int, cpu_s: float, limits: layers.Limits) -> dict[str, Any]:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:
            if cpu_s >= limits.cpu_s:
                return {"status": "timeout", "error": "CPU time limit reached"}
            return {"status": "memory", "error": "killed (out of memory)"}
        found = next((v for k, v in _SIGNAL_STATUS.items() if int(k) == sig), None)
        if found:
            return {"status": found[0], "error": found[1]}
        return {"status": "error", "error": f"killed by signal {sig}"}
    code = os.WEXITSTATUS(status)
    return {"status": "error", "error": f"exited with code {code} without a result"}


# --- protocol -------------------------------------------------------------------------------


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_message(fd: int) -> Any:
    head = _read_exact(fd, 4)
    if head is None:
        return None
    (size,) = struct.unpack("!I", head)
    body = _read_exact(fd, size)
    return None if body is None else json.loads(body)


def write_message(fd: int, message: Any) -> None:
    body = json.dumps(message).encode()
    _write_all(fd, struct.pack("!I", len(body)) + body)


SELF_TEST_JOB = {
    "kind": "call",
    "program": "def f(x):\n    return [x, x * 2]",
    "args": ["21"],
    "repeat": 2,
    "timeout_s": 5.0,
    "max_output": 100,
}


def _seccomp_from_config(config: dict[str, Any]) -> tuple[layers.LayerStatus, bytes | None] | None:
    """The worker compiles the seccomp filter and sends it (hex), so libseccomp is never loaded
    here. Without one, the server builds it itself."""
    sent = config.get("seccomp")
    if not isinstance(sent, dict):
        return None
    bpf = bytes.fromhex(sent["bpf"]) if sent.get("bpf") else None
    return layers.LayerStatus(
        bool(sent.get("active")) and bpf is not None, str(sent["detail"])
    ), bpf


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main() -> None:
    proto_in = 0
    proto_out = os.dup(1)
    os.dup2(2, 1)  # nothing printed by accident may corrupt the protocol
    config = read_message(proto_in) or {}
    limits = layers.Limits(**config.get("limits", {}))
    prepared = layers.prepare_layers(
        read_trees=config.get("read_trees") or [],
        netns=bool(config.get("netns", True)),
        seccomp=_seccomp_from_config(config),
    )
    for name, st in prepared.status.items():
        if not st.active:
            sys.stderr.write(
                f"azr.executor.forkserver: isolation layer {name} unavailable: {st.detail}\n"
            )
    server = ForkServer(prepared, limits, None, batch=int(config.get("spares", 1)))
    if _threads() != 1:  # the raw fork() is only sound in a single-threaded process
        server.fork = os.fork
        sys.stderr.write("azr.executor.forkserver: not single-threaded; using os.fork\n")
    os.environ.clear()  # children inherit an empty environment
    server.guard = prepare_server()
    warm_up(server.guard)
    # Park every object loaded so far outside the collector's reach: a child's gc pass would
    # otherwise touch (and copy-on-write) the whole inherited heap.
    gc.collect()
    gc.freeze()
    probe = server.run(dict(SELF_TEST_JOB))
    calls = probe.get("calls") or [{}]
    ok = probe.get("status") == "ok" and calls[0].get("output") == "[21, 42]"
    write_message(
        proto_out,
        {
            "pid": os.getpid(),
            "spares": server.spare_pids(),
            "self_test": {"ok": ok, "result": probe},
            "layers": {k: v.as_dict() for k, v in prepared.status.items()},
        },
    )
    try:
        while True:
            request = read_message(proto_in)
            if request is None:
                break
            results = [server.run(job) for job in request.get("jobs", [])]
            # the spares' pids let a caller check that no other child outlived its job
            write_message(proto_out, {"results": results, "spares": server.spare_pids()})
    finally:
        server.close()  # the working directory was removed at start-up already


if __name__ == "__main__":
    main()
