"""What runs inside one forked sandbox child: lock the process down, wait for one job, run it,
report one framed result on the result pipe, exit. Never returns.

The result frame starts with a per-child random token that the fork-server generated, so text a
hostile program writes into the result pipe cannot pass for a result."""

from __future__ import annotations

import ast
import builtins
import json
import os
import struct
import sys
from typing import Any, NoReturn

from azr.core.checks import ARGS_CALLEE, parse_arguments
from azr.core.verification import literal_equal, round_trips
from services.executor import sandbox_layers as layers

# Modules a program may not reach even though the fork-server itself loaded them.
_HIDDEN_MODULES = (
    "ctypes",
    "_ctypes",
    "ctypes.util",
    "socket",
    "_socket",
    "subprocess",
    "_posixsubprocess",
    "pyseccomp",
    "select",
    "selectors",
    "signal",
    "threading",
    "_thread",
    "pwd",
    "resource",
    "tempfile",
    "shutil",
    "services",
    "services.executor",
    "services.executor.sandbox_layers",
    "services.executor.sandbox_child",
    "services.executor.forkserver",
    "__main__",
)
# An attempt to import one of these is an attack, not a missing dependency.
_DANGEROUS_IMPORTS = frozenset(
    {
        "ctypes",
        "_ctypes",
        "socket",
        "_socket",
        "subprocess",
        "_posixsubprocess",
        "pty",
        "multiprocessing",
        "_multiprocessing",
        "signal",
        "_signal",
        "resource",
        "mmap",
        "fcntl",
        "threading",
        "_thread",
        "shutil",
        "tempfile",
        "asyncio",
        "ssl",
        "_ssl",
        "urllib",
        "http",
        "pickle",
        "_pickle",
        "marshal",
        "importlib",
        "gc",
        "inspect",
        "code",
        "pwd",
        "posix",
    }
)
# Audit events refused once the program runs (prefix match on the event name).
_REFUSED_EVENT_PREFIXES = (
    "open",
    "os.",
    "subprocess.",
    "socket.",
    "ctypes.",
    "shutil.",
    "pty.",
    "glob.",
    "tempfile.",
    "fcntl.",
    "mmap.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "imaplib.",
    "poplib.",
    "telnetlib.",
    "sqlite3.",
    "webbrowser.",
    "gc.get_",
    "sys._current_frames",
    "sys.addaudithook",
    "sys.settrace",
    "sys.setprofile",
    "code.__new__",
    "marshal.",
    "pickle.",
    "cpython.",
    "object.__getattr__",
    "resource.",
    "signal.",
    "_posixsubprocess",
    "builtins.input",
    "setopencodehook",
    "syslog.",
    "winreg.",
    "msvcrt.",
    "socket",
)


class OutputLimitExceeded(BaseException):
    """Raised by the capped stdout; a BaseException so `except Exception` does not swallow it."""


class _CappedSink:
    """Replaces stdout/stderr: printing is allowed but counted, never delivered anywhere."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.size = 0
        self.exceeded = False

    def write(self, text: str) -> int:
        self.size += len(text)
        if self.size > self.cap:
            self.exceeded = True
            raise OutputLimitExceeded(f"printed over {self.cap} characters")
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


_dumps = json.dumps  # bound at import: a program patching json cannot forge the frame


def _frame(token: bytes, result: dict[str, Any]) -> bytes:
    body = _dumps(result).encode()
    return token + struct.pack("!I", len(body)) + body


def _short(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."


class BuiltinsGuard:
    """Puts the builtins back after program code ran. Re-installing all ~160 of them writes the
    reference count of each (and of their static types in libpython's data), a copy-on-write
    fault per page in every child, so when CPython's dict version tag (PEP 509) can be read it
    restores only when the builtins dict was modified at all. The reader is a ctypes view made
    once in the fork-server (making one in a child would be an audited ctypes event) and
    checked at start-up; without it every restore is done in full."""

    def __init__(self) -> None:
        self.pristine = dict(builtins.__dict__)
        self._tag = _version_tag_view(builtins.__dict__)
        self._clean = self._tag.value if self._tag is not None else None

    @property
    def cheap(self) -> bool:
        return self._tag is not None

    def restore(self) -> None:
        if self._tag is None or self._tag.value != self._clean:
            builtins.__dict__.update(self.pristine)
            if self._tag is not None:
                self._clean = self._tag.value


def _version_tag_view(d: dict[str, Any]) -> Any:
    """A ctypes view of `d`'s ma_version_tag (after the object header and ma_used), or None
    unless it demonstrably changes on every modification and only then."""
    try:
        import ctypes

        def view(obj: dict[Any, Any]) -> Any:
            return ctypes.c_uint64.from_address(id(obj) + 3 * ctypes.sizeof(ctypes.c_ssize_t))

        probe: dict[Any, Any] = {"a": 1}
        tag = view(probe)
        seen = [tag.value, tag.value]
        probe["a"] = 2  # replaced value
        seen.append(tag.value)
        probe["b"] = 3  # added name
        seen.append(tag.value)
        del probe["b"]  # removed name
        seen.append(tag.value)
        # unchanged while untouched, and a new value after each modification
        if seen[0] != seen[1] or len(set(seen)) != 4:
            return None
        return view(d)
    except Exception:
        return None


def prepare_server() -> BuiltinsGuard:
    """Once in the fork-server, before it forks anything: hide the modules programs must not reach
    (the server keeps its own references) and snapshot the builtins. Doing this per child would
    touch, and so copy-on-write, those objects in every child."""
    guard = BuiltinsGuard()  # first: it needs ctypes, which is hidden next
    for name in _HIDDEN_MODULES:
        sys.modules.pop(name, None)
    return guard


def warm_up(guard: BuiltinsGuard, rounds: int = 30) -> None:
    """Run the child's own code paths (on fixed, trusted input) in the fork-server, so their code
    objects are already quickened and specialised when a child inherits them. Otherwise every
    child would do that work again and copy-on-write each code object it touches."""
    job = {
        "kind": "call",
        "program": "def f(a, b=2):\n    return {'s': [a + b, (a, b)], 't': {a * b}}",
        "args": ["3", "4, b=5", "'x', 'y'"],
        "repeat": 2,
        "max_output": 1000,
    }
    body = _dumps(job).encode()
    for _ in range(rounds):
        parsed = json.loads(body)
        result = _run_calls(parsed, guard)
        _frame(b"", result)
        _frame(b"", _run_compare({"pairs": [["[1, 2.0]", "[1.0, 2]"], ["{1: (2,)}", "{1: [2]}"]]}))
        _short(ValueError("x"))


def run_child(
    job_r: int,
    result_w: int,
    token: bytes,
    prepared: layers.PreparedLayers,
    limits: layers.Limits,
    guard: BuiltinsGuard,
) -> NoReturn:
    write = os.write
    exit_now = os._exit
    restore_builtins = guard.restore  # a program may patch builtins; we must not care

    def report(result: dict[str, Any]) -> NoReturn:
        try:
            restore_builtins()
            write(result_w, _frame(token, result))
        finally:
            exit_now(0)

    try:
        _lock_down(job_r, result_w, prepared, limits)
    except BaseException as exc:
        report({"status": "error", "error": f"sandbox setup failed: {_short(exc)}"})

    armed = [False]

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if not armed[0]:
            return
        if event == "import":
            name = str(args[0]) if args else ""
            if name.split(".")[0] in _DANGEROUS_IMPORTS:
                report({"status": "forbidden", "error": f"import of {name!r} refused"})
            raise ImportError(f"module {name!r} is not available in the sandbox")
        if event.startswith(_REFUSED_EVENT_PREFIXES):
            report({"status": "forbidden", "error": f"refused: {event}"})

    sys.addaudithook(audit)

    try:
        job = _read_job(job_r)
        os.close(job_r)
    except BaseException as exc:
        report({"status": "error", "error": f"could not read the job: {_short(exc)}"})

    sink = _CappedSink(int(job.get("max_output", 4000)))
    sys.stdout = sys.stderr = sink
    try:
        layers.lower_cpu_limit(float(job.get("timeout_s", limits.cpu_s)) + 1)
        armed[0] = True
        if job["kind"] == "call":
            result = _run_calls(job, guard)
        elif job["kind"] == "compare":
            result = _run_compare(job)
        else:
            result = {"status": "error", "error": f"unknown job kind {job['kind']!r}"}
    except OutputLimitExceeded as exc:
        result = {"status": "output_limit", "error": str(exc)}
    except MemoryError:
        result = {"status": "memory", "error": "MemoryError: address-space limit reached"}
    except BaseException as exc:
        result = {"status": "error", "error": _short(exc)}
    armed[0] = False
    if sink.exceeded:
        result = {"status": "output_limit", "error": f"printed over {sink.cap} characters"}
    report(result)


def _lock_down(
    job_r: int, result_w: int, prepared: layers.PreparedLayers, limits: layers.Limits
) -> None:
    os.setpgid(0, 0)  # own process group: the parent kills the whole group on timeout
    keep = sorted({job_r, result_w, *([prepared.landlock_fd] if prepared.landlock_fd else [])})
    low = 0
    for fd in keep:
        os.closerange(low, fd)  # close_range(2) underneath: one syscall per gap
        low = fd + 1
    os.closerange(low, 1 << 20)
    # the cwd, inherited from the fork-server, is an empty directory that was already deleted
    layers.apply_rlimits(limits)
    if prepared.drop_to is not None:
        layers.drop_privileges(prepared.drop_to)
    layers.set_no_new_privs()
    if prepared.landlock_fd is not None:
        layers.restrict_landlock(prepared.landlock_fd)
        os.close(prepared.landlock_fd)
    if prepared.seccomp_prog is not None:
        prepared.seccomp_prog.load()


def _read_job(fd: int) -> dict[str, Any]:
    head = _read_exact(fd, 4)
    (size,) = struct.unpack("!I", head)
    job: dict[str, Any] = json.loads(_read_exact(fd, size))
    return job


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("job pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _collect_args(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def _run_calls(job: dict[str, Any], guard: BuiltinsGuard) -> dict[str, Any]:
    program: str = job["program"]
    repeat = int(job.get("repeat", 1))
    cap = int(job.get("max_output", 4000))
    code = compile(program, "<program>", "exec")
    calls: list[dict[str, Any]] = []
    for text in job["args"]:
        calls.append(_one_call(code, text, repeat, cap, guard))
        if calls[-1]["status"] in ("memory", "output_limit"):
            # the process is in an unknown state; the remaining inputs are not run
            break
    # The child finished; each input's own status says how its call went.
    return {"status": "ok", "calls": calls}


def _one_call(code: Any, text: str, repeat: int, cap: int, guard: BuiltinsGuard) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__azr__", "__builtins__": builtins}
    try:
        call = parse_arguments(text)
        if isinstance(call, str):
            return {"status": "error", "error": f"input: {call}"}
        exec(code, namespace)
        fn = namespace.get("f")
        if not callable(fn):
            return {"status": "error", "error": "the program defines no function f"}
        args_code = compile(_as_expression(call), "<input>", "eval")
        results = []
        for _ in range(repeat):
            namespace[ARGS_CALLEE] = _collect_args
            args, kwargs = eval(args_code, namespace)
            results.append(fn(*args, **kwargs))
        guard.restore()
        out = repr(results[0])
        if len(out) > cap:
            return {"status": "output_limit", "error": f"repr over {cap} characters"}
        entry: dict[str, Any] = {"status": "ok", "output": out}
        if repeat > 1:
            entry["deterministic"] = all(repr(r) == out for r in results[1:])
        entry["literal"] = round_trips(out, results[0])
        return entry
    except OutputLimitExceeded:
        raise
    except MemoryError:
        return {"status": "memory", "error": "MemoryError: address-space limit reached"}
    except RecursionError as exc:
        return {"status": "error", "error": _short(exc)}
    except BaseException as exc:  # SystemExit, KeyboardInterrupt from the program included
        return {"status": "error", "error": _short(exc)}


def _as_expression(call: Any) -> Any:
    return ast.fix_missing_locations(ast.Expression(body=call))


def _run_compare(job: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ok", "values": [literal_equal(a, b) for a, b in job["pairs"]]}
