"""The fork-server: a small dedicated process (never the Celery worker itself) that pre-imports
what programs may use, prepares the isolation layers once, and forks one sandboxed child per job.

A request's jobs are loaded here and their children forked in bursts, each child with its job
already in memory; they lock themselves down together and then run one at a time, each started
by one byte on its pipe once the one before it is reaped. See docs/executor.md, "Performance",
for what a child costs and why.

This process is on the *trusted* side: it never runs model code. Every child is a fresh process
for exactly one (program, input) evaluation; what a child writes back is parsed here strictly
(`parse_frame`: size-capped, a known set of statuses, UTF-8, the expected number of outputs) and
anything else is that job's ``error``, never the batch's.

Protocol on stdin/stdout: 4-byte big-endian length + JSON. First message in: the config; first
message out: the layer report. Then requests ``{"jobs": [...]}`` -> ``{"results": [...]}``, one
job being the base64 of `child_job.encode`'s bytes (a header with repeat, max_output and
timeout, then the program and the argument list, compiled by the worker) and one result
``{"status", "outputs" | "error", "duration_ms"}``; every child of a request is reaped before
its reply.
Run as ``python -S -s -m services.executor.forkserver`` with an empty environment (plus
PYTHONHASHSEED)."""

from __future__ import annotations

import binascii
import ctypes
import fcntl
import gc
import json
import os
import resource
import select
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

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

from services.executor import child_job  # noqa: E402
from services.executor import sandbox_layers as layers  # noqa: E402
from services.executor.child_job import MAX_ERROR_CHARS  # noqa: E402
from services.executor.sandbox_child import (  # noqa: E402
    CHILD_STATUSES,
    GO_FD,
    READY,
    RESULT_FD,
    SETUP_FAILED,
    BuiltinsGuard,
    ChildSetup,
    child_ids,
    child_setup,
    lock_down,
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


@dataclass
class Child:
    pid: int
    go_w: int  # one byte here starts its job (closed unwritten: it exits)
    result_r: int
    room: int  # bytes the result pipe holds before a writer blocks


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
        prepared.child_rlimits = layers.child_rlimits(limits)
        prepared.cpu_hard = max(1, int(limits.cpu_s)) + 1
        self.guard = guard
        self.setup: ChildSetup | None = None  # `child_setup`, once `prepare_server` ran
        self.waiting: list[Child] = []  # forked with their jobs, not yet started
        self.batch = max(1, batch)
        self.fork: Callable[[], int] = _fork
        self.spawned = 0
        self.reaped_cpu = 0.0  # CPU seconds of every child reaped so far (`_reap`)
        self.setup_failures = 0
        self.last_setup_error = ""

    def waiting_pids(self) -> list[int]:
        return [c.pid for c in self.waiting]

    def run_all(self, payloads: list[bytes]) -> list[dict[str, Any]]:
        """Every payload (from `child_job.encode`) in a fresh child, the frames back in order.
        Children are forked `batch` at a time, each with its job already in memory, and lock
        down together; they then run one after the other (the next is started once the one
        before it is reaped), so no job shares the CPU with another job's model code."""
        results: list[dict[str, Any]] = []
        for start in range(0, len(payloads), self.batch):
            burst = payloads[start : start + self.batch]
            jobs = [_load_job(payload) for payload in burst]  # a str: why it did not load
            self._fork_burst([job for job in jobs if not isinstance(job, str)])
            for payload, job in zip(burst, jobs, strict=True):
                if isinstance(job, str):
                    results.append({"status": "error", "error": job, "duration_ms": 0.0})
                else:
                    results.append(self._run_next(payload))
        return results

    def _fork_burst(self, jobs: list[tuple[Any, ...]]) -> None:
        """Fork one child per job, back to back. The job is unmarshalled here, before the
        forks, so a child finds it in memory: unmarshalling in every child (allocating the code
        objects and interning their names) wrote ~15 more inherited pages per child, each a
        copy-on-write fault. Every fork write-protects the server's pages, and each page the
        server then writes costs it a fault: forking in bursts pays for the job loop's pages
        once per burst, and creating every pipe first leaves nothing between two forks but the
        fork itself."""
        pipes = [(os.pipe(), os.pipe()) for _ in jobs]
        calls = [
            (pipe, child_ids(self.prepared, self.spawned + i), job)
            for i, (pipe, job) in enumerate(zip(pipes, jobs, strict=True))
        ]
        self.spawned += len(jobs)
        # What a child runs below after fork() is prepared here. In the child, looking `_child`
        # up missed CPython's type attribute cache (the server never calls it), and indexing or
        # a plain call there was the first run of an instruction CPython specialises in place
        # (writing this code object and the callee's version); each write is a copy-on-write
        # fault. A call with `*` is never specialised.
        fork, start, pids = self.fork, self._child, []
        try:
            for call in calls:
                pid = fork()
                if pid == 0:  # pragma: no cover - the child never returns
                    start(*call)
                pids.append(pid)
        finally:  # (a failed fork keeps the children forked before it)
            # a child closes every inherited descriptor (its siblings' pipe ends included)
            # during its lock-down, before its job starts
            for k, ((go_r, go_w), (result_r, result_w)) in enumerate(pipes):
                os.close(go_r)
                os.close(result_w)
                if k < len(pids):
                    room = fcntl.fcntl(result_r, fcntl.F_GETPIPE_SZ)
                    self.waiting.append(Child(pids[k], go_w, result_r, room))
                else:
                    os.close(go_w)
                    os.close(result_r)
        self.waiting.reverse()  # `pop()` takes them in job order

    def _child(
        self,
        pipes: tuple[tuple[int, int], tuple[int, int]],
        ids: tuple[int, int] | None,
        job: tuple[Any, ...],
    ) -> NoReturn:
        (go_r, _), (_, result_w) = pipes
        try:
            assert self.guard is not None and self.setup is not None, "prepare_server() first"
            run_child(go_r, result_w, self.setup, ids, self.guard, job)
        finally:
            os._exit(70)

    def _run_next(self, payload: bytes) -> dict[str, Any]:
        """Start the next waiting child and collect its frame. The one byte it writes before
        its job can start (`READY`, or `SETUP_FAILED` and why) comes back ahead of the frame,
        before any model code could write anything."""
        if not self.waiting:  # not expected: a failed fork ends the request with its error
            return {"status": "error", "error": "fork failed", "duration_ms": 0.0}
        child = self.waiting.pop()
        t0 = time.monotonic()
        repeat, max_output, timeout_s = child_job.HEADER.unpack_from(payload)
        timeout_s = float(timeout_s or self.limits.cpu_s)
        repeat = max(1, repeat)
        try:
            os.write(child.go_w, b"g")  # an empty pipe: never blocks
        except OSError:
            pass  # the child died; what it wrote and its exit status tell why
        os.close(child.go_w)
        child.go_w = -1
        cap = 64 + MAX_ERROR_CHARS * 4 + repeat * (4 * max_output + 1)
        result = self._collect(child, t0 + timeout_s, cap, repeat, max_output)
        result["duration_ms"] = (time.monotonic() - t0) * 1000.0
        return result

    def _setup_failed(self, data: bytes) -> dict[str, Any]:
        """A child that reported a set-up failure (or ended before it was ready) is counted: the
        worker replaces a fork-server whose children fail set-up."""
        detail = "no ready signal"
        if data[:1] == SETUP_FAILED:
            detail = data[1 : 1 + MAX_ERROR_CHARS].decode("utf-8", "replace")
        self.setup_failures += 1
        self.last_setup_error = detail
        return {"status": "error", "error": f"sandbox setup failed: {detail}"}

    def _collect(
        self, child: Child, deadline: float, cap: int, repeat: int, max_output: int
    ) -> dict[str, Any]:
        """Everything a child may write (`cap`) fits into its pipe in the usual case, so it
        never blocks on it: the server sleeps once per job, until the child has exited, then
        reaps it and reads what it wrote in one read. A child that writes more than its pipe
        holds blocks until the deadline and comes back `output_limit` all the same. Where
        `cap` does not fit, the pipe is read as the bytes arrive."""
        if cap >= child.room:
            return self._collect_streaming(child, deadline, cap, repeat, max_output)
        killed_for: str | None = None
        try:
            reaped = self._await_exit(child.pid, deadline)
            if reaped is None:
                killed_for = "timeout"
                _kill_group(child.pid)
                reaped = self._reap(child.pid, 0)
            status, cpu_s = reaped or (0, 0.0)
            # the child (the pipe's only writer) is gone and all it wrote fits one read
            data = bytearray(os.read(child.result_r, child.room))
        finally:
            os.close(child.result_r)
        if len(data) > cap:
            killed_for = "output_limit"
        return self._result(data, killed_for, status, cpu_s, repeat, max_output)

    def _collect_streaming(
        self, child: Child, deadline: float, cap: int, repeat: int, max_output: int
    ) -> dict[str, Any]:
        data = bytearray()
        killed_for: str | None = None
        reaped: tuple[int, float] | None = None
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
                reaped = self._await_exit(child.pid, deadline)
                if reaped is None:
                    killed_for = "timeout"
        finally:
            if reaped is None:
                _kill_group(child.pid)
                reaped = self._reap(child.pid, 0)
            os.close(child.result_r)
        status, cpu_s = reaped or (0, 0.0)
        return self._result(data, killed_for, status, cpu_s, repeat, max_output)

    def _await_exit(self, pid: int, deadline: float) -> tuple[int, float] | None:
        """Sleep until `pid` has exited (reaped here) or the deadline passed (None). SIGCHLD is
        blocked in the fork-server (`main`) and waited for: one syscall per wake-up, no pidfd
        to open and close (gVisor has none), and a sibling's exit only wakes it once more."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or _sigtimedwait(_SIGCHLD, left) is None:
                return self._reap(pid, os.WNOHANG)  # it may have exited right at the deadline
            reaped = self._reap(pid, os.WNOHANG)
            if reaped is not None:
                return reaped

    def _reap(self, pid: int, flags: int) -> tuple[int, float] | None:
        """Reap `pid`: (status, its CPU seconds), or None when WNOHANG found it still running.
        Every reap goes through here: a child's CPU is what the reaped children's total grew
        by since the last reap. Not os.wait4: that imports `resource` by name, which would put
        the module back into sys.modules (where every later child could find it) or fail
        where it can't be read."""
        got, status = os.waitpid(pid, flags)
        if not got:
            return None
        usage = _getrusage(resource.RUSAGE_CHILDREN)
        total = usage.ru_utime + usage.ru_stime
        cpu, self.reaped_cpu = total - self.reaped_cpu, total
        return status, cpu

    def _result(
        self,
        data: bytearray,
        killed_for: str | None,
        status: int,
        cpu_s: float,
        repeat: int,
        max_output: int,
    ) -> dict[str, Any]:
        if data[:1] != READY:  # written before any model code ran: it can't be forged
            return self._setup_failed(bytes(data))
        del data[:1]
        if killed_for == "timeout":
            return {"status": "timeout", "error": "wall-clock limit reached"}
        if killed_for == "output_limit":
            return {"status": "output_limit", "error": "wrote too much into the result pipe"}
        if os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0:
            # how the process ended outranks anything it wrote before
            return _status_from_exit(status, cpu_s, self.limits)
        return parse_frame(bytes(data), repeat, max_output)

    def probe_containment(self) -> str:
        """What a child could still do that its lock-down should stop, checked on two children
        locked down exactly as jobs' children are (`self.setup`, their own slots): the first
        tries to fork and to signal the second (waiting for its turn, as a burst's siblings do)
        and the fork-server. Empty when all of it was refused."""
        assert self.setup is not None, "child_setup() first"
        rlimits, scope = self.setup[0], self.setup[1]
        (hold_r, hold_w), (out_r, out_w) = os.pipe(), os.pipe()
        slots = self.spawned, self.spawned + 1
        self.spawned += 2
        pids: list[int] = []
        try:
            for k, slot in enumerate(reversed(slots)):  # the waiting sibling first
                pid = self.fork()
                if pid == 0:  # pragma: no cover - the probe children exit
                    try:
                        lock_down(hold_r, out_w, rlimits, scope, child_ids(self.prepared, slot))
                        if k == 0:
                            os.read(GO_FD, 1)  # until the server closes the pipe
                        else:
                            os.write(RESULT_FD, _escapes(pids[0]).encode())
                    finally:
                        os._exit(0)
                pids.append(pid)
            os.close(hold_r)
            os.close(out_w)
            self._reap(pids[1], 0)
            os.set_blocking(out_r, False)  # the sibling keeps the pipe open
            try:
                found = os.read(out_r, 256).decode("ascii", "replace")
            except BlockingIOError:
                found = ""
        finally:
            os.close(hold_w)
            os.close(out_r)
            if len(pids) > 0:
                self._reap(pids[0], 0)
        return "ended before its report" if not found.startswith("probe:") else found[6:]

    def close(self) -> None:
        """Kill and reap children that were never started (their jobs did not run)."""
        while self.waiting:
            child = self.waiting.pop()
            os.close(child.go_w)
            _kill_group(child.pid)
            self._reap(child.pid, 0)
            os.close(child.result_r)


_getrusage = resource.getrusage  # kept here: children must not find `resource` in sys.modules
_sigtimedwait = signal.sigtimedwait
_SIGCHLD = (signal.SIGCHLD,)


def _escapes(sibling: int) -> str:
    """In a probe child: ``probe:`` and what got through (comma-separated), if anything."""
    escaped = []
    try:
        pid = _fork()
    except OSError:  # refused (EAGAIN from RLIMIT_NPROC)
        pid = -1
    if pid == 0:  # pragma: no cover - the forked grandchild
        os._exit(0)
    if pid > 0:
        escaped.append("fork")
        os.waitpid(pid, 0)
    for who, target in (("signal a sibling", sibling), ("signal the fork-server", os.getppid())):
        try:
            os.kill(target, 0)  # no signal sent; the permission check is the same
            escaped.append(who)
        except OSError:
            pass
    return "probe:" + ",".join(escaped)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, signal.SIGKILL)  # before setpgid took effect the group may not exist
    except (ProcessLookupError, PermissionError):
        pass


def _load_job(payload: bytes) -> tuple[Any, ...] | str:
    try:
        return child_job.load(payload)
    except ValueError as exc:
        return str(exc)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def parse_frame(data: bytes, repeat: int, max_output: int) -> dict[str, Any]:
    """A child's frame, ``<status>\\n<body>``, read as hostile bytes: a known status, UTF-8, and for
    ``ok`` exactly `repeat` outputs of at most `max_output` characters each. Anything else is
    this job's error (never an exception, never another job's problem). Whether the outputs are
    literals, equal or deterministic is decided by the worker."""
    head, sep, body = data.partition(b"\n")
    status = head.decode("ascii", "replace")
    if not sep or status not in CHILD_STATUSES:
        return {"status": "error", "error": "the child wrote no well-formed result frame"}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"status": "error", "error": "the result frame is not UTF-8"}
    if status != "ok":
        return {"status": status, "error": text[:MAX_ERROR_CHARS]}
    outputs = text.split("\x00")
    if len(outputs) != repeat:
        return {
            "status": "error",
            "error": f"expected {repeat} output(s), the frame has {len(outputs)}",
        }
    if any(len(out) > max_output for out in outputs):
        return {"status": "output_limit", "error": f"an output is over {max_output} characters"}
    return {"status": "ok", "outputs": outputs}


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


def wire_job(payload: bytes) -> str:
    """A child's job as it travels in the JSON protocol."""
    return binascii.b2a_base64(payload, newline=False).decode("ascii")


def self_test_job() -> bytes:
    return child_job.encode("def f(x):\n    return [x, x * 2]", "21", 2, 100, 5.0)


def _seccomp_from_config(
    config: dict[str, Any],
) -> tuple[tuple[layers.LayerStatus, bytes | None] | None, bytes | None]:
    """The worker compiles the seccomp filters and sends them (hex), so libseccomp is never
    loaded here: (the child filter's status and program, the fork-server's own program).
    Without them, the server builds the child filter itself and has none of its own."""
    sent = config.get("seccomp")
    if not isinstance(sent, dict):
        return None, None
    bpf = bytes.fromhex(sent["bpf"]) if sent.get("bpf") else None
    server_bpf = bytes.fromhex(sent["server_bpf"]) if sent.get("server_bpf") else None
    return (
        layers.LayerStatus(bool(sent.get("active")) and bpf is not None, str(sent["detail"])),
        bpf,
    ), server_bpf


def _plan_children(
    server: ForkServer, prepared: layers.PreparedLayers, requested: str, server_detail: str
) -> None:
    """After `lock_server`: what each child adds to the filter it inherits, checked by the
    probe children; whatever got through sends every child back to the child filter."""
    prepared.child_step = layers.plan_child_step(prepared, server.batch, requested)
    server.setup = child_setup(prepared)
    escaped = ""
    if prepared.child_step != layers.CHILD_STEP_SECCOMP:
        escaped = server.probe_containment()
        if escaped:
            prepared.child_step = layers.CHILD_STEP_SECCOMP
            server.setup = child_setup(prepared)
    status = prepared.status["seccomp"]
    if not status.active:
        return
    if prepared.child_step == layers.CHILD_STEP_SECCOMP:
        why = f" (a probe child could {escaped.replace(',', ', ')})" if escaped else ""
        inherited = "under the fork-server's filter, " if prepared.server_seccomp_prog else ""
        detail = f"{inherited}each child loads the child filter{why}: {status.detail}"
    else:
        how = {
            layers.CHILD_STEP_NONE: "each with a uid of its own",
            layers.CHILD_STEP_SCOPE: "each in a Landlock domain that scopes its signals",
        }[prepared.child_step]
        detail = (
            f"the fork-server's filter, inherited by every child ({how}; RLIMIT_NPROC 0 "
            f"refuses fork; probed): {server_detail}"
        )
    prepared.status["seccomp"] = layers.LayerStatus(True, detail)


def _host_pid() -> int:
    """Our pid as the host sees it (/proc is the host's mount even inside our PID namespace)."""
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main() -> None:
    proto_in = 0
    proto_out = os.dup(1)
    os.dup2(2, 1)  # nothing printed by accident may corrupt the protocol
    config = read_message(proto_in) or {}
    if config.get("run_as"):  # become an unprivileged server (no capabilities left)
        uid, gid = (int(x) for x in config["run_as"])
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    userns: layers.LayerStatus | None = None
    if os.geteuid() != 0 and config.get("userns", True):
        userns = layers.enter_userns()
    pidns: layers.LayerStatus | None = None
    if config.get("pidns", True):
        pidns, inner = layers.enter_pidns()
        if inner:  # this process only stands in for the fork-server (pid 1 of the namespace)
            os.closerange(0, 2)
            os.close(proto_out)
            _, status = os.waitpid(inner, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    limits = layers.Limits(**config.get("limits", {}))
    uid_base = config.get("uid_base")
    child_filter, server_filter = _seccomp_from_config(config)
    prepared = layers.prepare_layers(
        read_trees=config.get("read_trees") or [],
        netns=bool(config.get("netns", True)),
        seccomp=child_filter,
        server_seccomp=server_filter,
        uid_base=int(uid_base) if uid_base is not None else None,
        pidns=pidns,
    )
    if userns is not None:
        prepared.status["userns"] = userns
        if userns.active and not layers.drop_capabilities():
            prepared.status["userns"] = layers.LayerStatus(
                False, "could not drop the capabilities the user namespace gave"
            )
    for name, st in prepared.status.items():
        if not st.active:
            sys.stderr.write(
                f"azr.executor.forkserver: isolation layer {name} unavailable: {st.detail}\n"
            )
    server = ForkServer(prepared, limits, None, batch=int(config.get("spares", 1)))
    # children's exits are waited for with sigtimedwait (`ForkServer._await_exit`); they
    # inherit the blocked signal, which changes nothing for a process that cannot fork
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGCHLD)
    if _threads() != 1:  # the raw fork() is only sound in a single-threaded process
        server.fork = os.fork
        sys.stderr.write("azr.executor.forkserver: not single-threaded; using os.fork\n")
    os.environ.clear()  # children inherit an empty environment
    server.guard = prepare_server()
    warm_up(server.guard)
    host_pid = _host_pid()
    layers.lock_server(prepared, limits)  # its seccomp filter last
    _plan_children(
        server,
        prepared,
        str(config.get("child_step", "auto")),
        str((config.get("seccomp") or {}).get("server_detail", "")),
    )
    # Park every object loaded so far outside the collector's reach: a child's gc pass would
    # otherwise touch (and copy-on-write) the whole inherited heap.
    gc.collect()
    gc.freeze()
    (probe,) = server.run_all([self_test_job()])
    ok = probe.get("status") == "ok" and probe.get("outputs") == ["[21, 42]", "[21, 42]"]
    write_message(
        proto_out,
        {
            "pid": os.getpid(),
            "host_pid": host_pid,
            "python": sys.version,
            "spares": server.waiting_pids(),
            "setup_failures": server.setup_failures,
            "self_test": {"ok": ok, "result": probe},
            "layers": {k: v.as_dict() for k, v in prepared.status.items()},
        },
    )
    try:
        while True:
            request = read_message(proto_in)
            if request is None:
                break
            results = server.run_all([binascii.a2b_base64(job) for job in request.get("jobs", [])])
            # every child of this request is reaped: a caller checks that none outlived its job
            write_message(
                proto_out,
                {
                    "results": results,
                    "spares": server.waiting_pids(),
                    "setup_failures": server.setup_failures,
                    "setup_error": server.last_setup_error,
                },
            )
    except BaseException:
        sys.stderr = sys.__stderr__  # not the children's sink: the traceback goes to the log
        raise
    finally:
        server.close()  # the working directory was removed at start-up already


if __name__ == "__main__":
    main()
