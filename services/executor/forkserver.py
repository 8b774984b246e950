"""The fork-server: a small dedicated process (never the Celery worker itself) that pre-imports
what programs may use, prepares the isolation layers once, and forks one sandboxed child per job.

A spare child is forked and locked down *before* its job arrives, so the sandbox set-up overlaps
the previous job and a job costs little more than two pipe writes and a reap.

Protocol on stdin/stdout: 4-byte big-endian length + JSON. First message in: the config; first
message out: the layer report. Then requests ``{"jobs": [...]}`` -> ``{"results": [...]}``.
Run as ``python -s -m services.executor.forkserver`` with an empty environment (plus
PYTHONHASHSEED)."""

from __future__ import annotations

import gc
import json
import logging
import os
import select
import signal
import struct
import sys
import time
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
from services.executor.sandbox_child import run_child  # noqa: E402

log = logging.getLogger("azr.executor.forkserver")

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
    def __init__(self, prepared: layers.PreparedLayers, limits: layers.Limits) -> None:
        self.prepared = prepared
        self.limits = limits
        self.spare: Child | None = None

    def spawn(self) -> Child:
        job_r, job_w = os.pipe()
        result_r, result_w = os.pipe()
        token = os.urandom(16)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                run_child(job_r, result_w, token, self.prepared, self.limits)
            finally:
                os._exit(70)
        os.close(job_r)
        os.close(result_w)
        return Child(pid, job_w, result_r, token)

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        child = self.spare or self.spawn()
        self.spare = None
        t0 = time.monotonic()
        payload = json.dumps(job).encode()
        timeout_s = float(job.get("timeout_s") or self.limits.cpu_s)
        try:
            _write_all(child.job_w, struct.pack("!I", len(payload)) + payload)
        except OSError:
            pass  # the child died during set-up; its exit status tells why
        os.close(child.job_w)
        self.spare = self.spawn()  # the next job's child locks down while this one runs
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
        if self.spare is not None:
            os.close(self.spare.job_w)
            _kill_group(self.spare.pid)
            os.waitpid(self.spare.pid, 0)
            os.close(self.spare.result_r)
            self.spare = None


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


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    proto_in = 0
    proto_out = os.dup(1)
    os.dup2(2, 1)  # nothing printed by accident may corrupt the protocol
    config = read_message(proto_in) or {}
    limits = layers.Limits(**config.get("limits", {}))
    prepared = layers.prepare_layers(
        read_trees=config.get("read_trees") or [], netns=bool(config.get("netns", True))
    )
    for name, st in prepared.status.items():
        if not st.active:
            log.warning("isolation layer %s unavailable: %s", name, st.detail)
    # Park every object loaded so far outside the collector's reach: a child's gc pass would
    # otherwise touch (and copy-on-write) the whole inherited heap.
    gc.collect()
    gc.freeze()
    server = ForkServer(prepared, limits)
    probe = server.run(dict(SELF_TEST_JOB))
    calls = probe.get("calls") or [{}]
    ok = probe.get("status") == "ok" and calls[0].get("output") == "[21, 42]"
    write_message(
        proto_out,
        {
            "pid": os.getpid(),
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
            write_message(proto_out, {"results": results})
    finally:
        server.close()
        try:
            os.chmod(prepared.workdir, 0o700)
            os.rmdir(prepared.workdir)
        except OSError:
            pass


if __name__ == "__main__":
    main()
