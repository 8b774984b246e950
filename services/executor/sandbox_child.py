"""What runs inside one forked sandbox child: lock the process down, wait for the byte that starts
its job (one program on one input, loaded by the fork-server before the fork), set the job's CPU
limit, load the child filter where the fork-server's plan says so (it was born under the
fork-server's own seccomp filter), install the audit hook, run the job, write one result frame,
exit. Never returns.

The child is the *untrusted* side: model code runs here, so everything in this process must be
assumed forgeable by it. It therefore holds nothing worth forging: no token, no gold value, no
comparison, no verdict. It hands back bytes only, ``<status>\n<body>``, where the body is the
repr of each call's value (NUL-separated) or an error class name and message; the fork-server
parses that strictly (size-capped, a known set of statuses, see `forkserver.parse_frame`) and the
worker decides everything (literal parsing, comparisons, determinism) in `azr.core.verification`.
A program that writes its own frame can only claim what it could have returned anyway.

The audit hook is installed unconditionally, before any model code runs: there is no switch to
turn it off, it holds no closure cell, and it is reachable from no frame (``sys._getframe`` is
removed in the fork-server; traceback/generator frames are audited events it refuses)."""

from __future__ import annotations

import builtins
import os
import resource
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

from azr.core.checks import ARGS_CALLEE
from services.executor import sandbox_layers as layers
from services.executor.child_job import COMPILE_FLAGS, encode, load
from services.executor.child_job import describe as _short


def _trampoline(fn: Any) -> Any:
    """`fn` behind a `functools.partial`, for the functions a child calls (its defaults below).
    Calling a builtin writes its reference count, and the module functions a child needs lie on
    five pages, each a copy-on-write fault; a partial calls its function without touching it,
    and the partials, made together, share a page."""
    return partial(fn)


# Modules a program may not reach even though the fork-server itself loaded them.
_HIDDEN_MODULES = (
    "ctypes",
    "_ctypes",
    "ctypes.util",
    "fcntl",
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
    "services.executor.child_job",
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
        "_posixshmem",
        "sysv_ipc",
    }
)
# Audit events refused once the hook is in (prefix match on the event name).
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
    "sys._getframe",
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
# What a child may say about itself; `timeout` only ever comes from the fork-server.
CHILD_STATUSES = frozenset({"ok", "error", "memory", "forbidden", "output_limit"})
GO_FD, RESULT_FD = 0, 1  # where a child finds its pipes
# (rlimits, (syscall, its arguments) for a Landlock signal scope or None, hard CPU limit,
# (prctl, its arguments, error) for the child filter or None, audit hook, the sink's state):
# see `child_setup`
ChildSetup = tuple[
    tuple[tuple[int, tuple[int, int]], ...],
    tuple[Any, tuple[Any, ...]] | None,
    int,
    tuple[Any, tuple[Any, ...], Callable[[], BaseException]] | None,
    Any,
    list[Any],
]
RLIMIT_CPU = resource.RLIMIT_CPU
# set-up done: written before the job is read (before any model code), so it comes back ahead
# of the frame and can't be forged; SETUP_FAILED and why instead when the lock-down failed
READY = b"R"
SETUP_FAILED = b"F"


class OutputLimitExceeded(BaseException):
    """Raised by the capped stdout; a BaseException so `except Exception` does not swallow it."""


class _CappedSink:
    """stdout and stderr of every child: printing is allowed but counted, never delivered
    anywhere. Installed once in the fork-server (`prepare_server`), so a child inherits it and
    only sets its cap: assigning ``sys.stdout`` in each child missed CPython's type attribute
    cache and wrote a dozen inherited pages. Its state is a list ``[cap, printed, exceeded]``
    that a child reads and writes by index, with no attribute lookup of its own. In the server
    (which prints nothing after start-up) the cap is unbounded: a stray warning is dropped, not
    raised."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: list[Any] = [1 << 62, 0, False]

    def write(self, text: str) -> int:
        state = self.state
        state[1] += len(text)
        if state[1] > state[0]:
            state[2] = True
            raise OutputLimitExceeded(f"printed over {state[0]} characters")
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


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


_HOOK: Any = None  # made once in the fork-server (`prepare_server`) for every child
_SINK = _CappedSink()  # sys.stdout and sys.stderr of every child (see `prepare_server`)


def prepare_server() -> BuiltinsGuard:
    """Once in the fork-server, before it forks anything: hide the modules programs must not reach
    (the server keeps its own references), remove ``sys._getframe`` (the one frame source that
    raises no audit event on Python 3.11) and snapshot the builtins. Doing this per child would
    touch, and so copy-on-write, those objects in every child."""
    global _HOOK
    _HOOK = _make_audit_hook(RESULT_FD)
    guard = BuiltinsGuard()  # first: it needs ctypes, which is hidden next
    for name in _HIDDEN_MODULES:
        sys.modules.pop(name, None)
    if hasattr(sys, "_getframe"):
        del sys._getframe  # stdlib callers (enum, typing, namedtuple) handle its absence
    # the server prints nothing after start-up (`forkserver.main` puts the real stderr back
    # should it fail)
    sys.stdout = sys.stderr = _SINK
    return guard


def warm_up(guard: BuiltinsGuard, rounds: int = 30) -> None:
    """Run the child's own code paths (on fixed, trusted input) in the fork-server, so their code
    objects are already quickened and specialised when a child inherits them. Otherwise every
    child would do that work again and copy-on-write each code object it touches."""
    payload = encode(
        "def f(a, b=2):\n    return {'s': [a + b, (a, b)], 't': {a * b}}", "4, b=5", 2, 1000, 5.0
    )
    for _ in range(rounds):
        sink = _CappedSink()
        sink.state[0] = 1000
        sink.write("x")
        program, arguments, repeat, cap, _ = load(payload)
        _frame(*_evaluate(program, arguments, repeat, cap, guard))
        _frame("error", _short(ValueError("x")))


def child_setup(prepared: layers.PreparedLayers) -> ChildSetup:
    """What every child applies, gathered once in the fork-server (after `prepare_server`) into
    one tuple that a child unpacks into locals: every attribute it looked up instead would be a
    reference-count write, and so a copy-on-write fault, in each child."""
    seccomp, load, scope = prepared.seccomp_prog, None, None
    if seccomp is not None and prepared.child_step == layers.CHILD_STEP_SECCOMP:
        load = (*seccomp.call, seccomp.failed)
    if prepared.child_step == layers.CHILD_STEP_SCOPE and prepared.scope_fd is not None:
        scope = (layers.syscall, (layers.SYS_LANDLOCK_RESTRICT_SELF, prepared.scope_fd, 0))
    hook = _HOOK if _HOOK is not None else _make_audit_hook(RESULT_FD)
    return tuple(prepared.child_rlimits), scope, prepared.cpu_hard, load, hook, _SINK.state


def child_ids(prepared: layers.PreparedLayers, slot: int) -> tuple[int, int] | None:
    """The (uid, gid) the child of `slot` drops to (see `layers.plan_privilege_drop`), or None
    where the server has no right to switch uids."""
    if prepared.drop_to is None:
        return None
    k = slot % prepared.uid_slots
    return prepared.drop_to[0] + k, prepared.drop_to[1] + k


def run_child(
    go_r: int,
    result_w: int,
    setup: ChildSetup,
    ids: tuple[int, int] | None,
    guard: BuiltinsGuard,
    job: tuple[Any, Any, int, int, int],
    _write: Any = _trampoline(os.write),
    _exit: Callable[[int], NoReturn] = _trampoline(os._exit),
    _close: Any = _trampoline(os.close),
    _setrlimit: Any = _trampoline(resource.setrlimit),
    _addaudithook: Any = _trampoline(sys.addaudithook),
    _read: Any = _trampoline(os.read),
) -> NoReturn:
    # Runs once per process, so CPython never specialises it: every global or module attribute
    # looked up here would be a method-cache write (a copy-on-write fault) in each child; the
    # functions it calls come in as defaults, bound once in the server.
    rlimits, scope, cpu_hard, load_seccomp, hook, printed = setup
    # `job` was loaded by the fork-server (`child_job.load`): the program and the argument
    # list as code objects (or source, compiled below), repeat, max_output, the soft CPU limit
    program, arguments, repeat, max_output, cpu_s = job
    try:
        lock_down(go_r, result_w, rlimits, scope, ids)
    except BaseException as exc:
        _write(RESULT_FD, SETUP_FAILED + _short(exc).encode("utf-8", "replace"))
        _exit(71)
    _write(RESULT_FD, READY)
    if not _read(GO_FD, 1):  # the server closed the pipe without starting this job
        _exit(0)
    try:
        _close(GO_FD)
        # still before any model code: the per-job CPU limit (soft: this job's timeout + 1 s,
        # hard: the configuration's), then the child filter where the inherited one is not
        # enough (`layers.plan_child_step`), then the hook, which has no off switch
        _setrlimit(RLIMIT_CPU, (cpu_s if cpu_s < cpu_hard else cpu_hard, cpu_hard))
        if load_seccomp is not None:  # the pre-bound prctl (a method here was a fault more)
            prctl, args, failed = load_seccomp
            if prctl(*args) != 0:
                raise failed()
        _addaudithook(hook)
    except BaseException as exc:
        _write(RESULT_FD, _frame("error", f"sandbox setup failed: {_short(exc)}"))
        _exit(0)
    del setup, load_seccomp, hook, job  # nothing of the set-up stays reachable from this frame
    printed[0], printed[1] = max_output, 0  # the inherited sink's cap, nothing printed yet
    try:
        status, body = _evaluate(program, arguments, repeat, max_output, guard)
    except OutputLimitExceeded as exc:
        status, body = "output_limit", str(exc)
    except MemoryError:
        status, body = "memory", "MemoryError: address-space limit reached"
    except BaseException as exc:
        status, body = "error", _short(exc)
    if printed[2]:  # even if the program caught the exception
        status, body = "output_limit", f"printed over {max_output} characters"
    try:
        guard.restore()  # the program may have patched what formatting the frame uses
        frame = _frame(status, body)
    except BaseException as exc:
        frame = _frame("error", f"could not encode the result: {type(exc).__name__}")
    _write(RESULT_FD, frame)
    _exit(0)


def _make_audit_hook(result_w: int) -> Any:
    """The hook gets everything it uses as default arguments: no global a program could
    rebind, no closure cell it could rewrite, no state at all. It is made once in the server and
    reachable from no frame or module a program can get at (``__globals__`` reads are refused)."""

    def audit(
        event: str,
        args: tuple[Any, ...],
        _refused: tuple[str, ...] = _REFUSED_EVENT_PREFIXES,
        _rest: tuple[Any, ...] = (
            result_w,
            os.write,
            os._exit,
            _DANGEROUS_IMPORTS,
            type,
            str,
            ImportError,
        ),
    ) -> None:
        # Two defaults, not nine: every call copies each default into its frame (a reference
        # count write, so a copy-on-write fault per page in a child) and the hook runs on each
        # audited event. Builtins are looked up through the program's (patchable) builtins:
        # none is used here.
        if event == "import":
            fd, write, exit_, dangerous, type_, str_, import_error = _rest
            name = args[0] if args and type_(args[0]) is str_ else ""
            if name.partition(".")[0] in dangerous:
                write(fd, b"forbidden\nimport of a refused module")
                exit_(0)
            raise import_error("this module is not available in the sandbox")
        if event.startswith(_refused):
            fd, write, exit_, *_ = _rest
            write(fd, b"forbidden\nrefused: " + event.encode("ascii", "replace")[:100])
            exit_(0)

    return audit


def _frame(status: str, body: str) -> bytes:
    return status.encode() + b"\n" + body.encode("utf-8")


def lock_down(
    go_r: int,
    result_w: int,
    rlimits: tuple[tuple[int, tuple[int, int]], ...],
    scope: tuple[Any, tuple[Any, ...]] | None,
    ids: tuple[int, int] | None,
    _dup2: Any = _trampoline(os.dup2),
    _closerange: Any = _trampoline(os.closerange),
    _setpgid: Any = _trampoline(os.setpgid),
    _setrlimit: Any = _trampoline(resource.setrlimit),
    _setresgid: Any = _trampoline(os.setresgid),
    _setresuid: Any = _trampoline(os.setresuid),
) -> None:
    # the pipes move to fixed numbers (the server's pipes are all above 2), everything else
    # inherited is closed with one close_range(2)
    _dup2(go_r, GO_FD)
    _dup2(result_w, RESULT_FD)
    if scope is not None:  # a Landlock domain of its own: it can signal no other process
        restrict, args = scope
        if restrict(*args) != 0:
            raise OSError("landlock_restrict_self (signal scope) failed")
    _closerange(RESULT_FD + 1, 1 << 20)  # the scope's ruleset fd among them
    _setpgid(0, 0)  # own process group: the parent kills the whole group on timeout
    # the cwd, inherited from the fork-server, is an empty directory that was already deleted
    for which, value in rlimits:  # computed once in the server
        _setrlimit(which, value)
    if ids is not None:  # a uid of its own slot
        uid, gid = ids
        _setresgid(gid, gid, gid)  # no supplementary groups: the server dropped them
        _setresuid(uid, uid, uid)
    # no_new_privs, the Landlock domain and the seccomp filter come from the fork-server
    # (`layers.lock_server`); RLIMIT_NPROC 0 refuses the fork() that filter lets through


def _collect_args(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def _evaluate(
    program: Any, arguments: Any, repeat: int, cap: int, guard: BuiltinsGuard
) -> tuple[str, str]:
    """One program on one input, `repeat` calls: ("ok", the reprs NUL-separated) or a failure.
    Deciding whether the reprs agree, or are literals, is the trusted side's job. The trusted
    side also checked that the input is exactly one argument list
    (`azr.core.checks.parse_arguments`) and wrote it as a call of ``ARGS_CALLEE``."""
    namespace: dict[str, Any] = {"__name__": "__azr__", "__builtins__": builtins}
    try:
        # source the trusted side left to this child (`child_job.MAX_PLUS`): compiled here
        if type(program) is str:
            program = compile(program, "<program>", "exec", COMPILE_FLAGS, dont_inherit=True)
        if type(arguments) is str:
            arguments = compile(arguments, "<input>", "eval", COMPILE_FLAGS, dont_inherit=True)
        exec(program, namespace)
        fn = namespace.get("f")
        if not callable(fn):
            return "error", "the program defines no function f"
        results = []
        for _ in range(repeat):
            namespace[ARGS_CALLEE] = _collect_args
            args, kwargs = eval(arguments, namespace)
            results.append(fn(*args, **kwargs))
        guard.restore()
        outs = []
        for value in results:
            out = repr(value)
            if type(out) is not str or "\x00" in out:
                return "error", "repr returned no text or a NUL character"
            if len(out) > cap:
                return "output_limit", f"repr over {cap} characters"
            outs.append(out)
        return "ok", "\x00".join(outs)
    except OutputLimitExceeded:
        raise
    except MemoryError:
        return "memory", "MemoryError: address-space limit reached"
    except BaseException as exc:  # SystemExit, KeyboardInterrupt from the program included
        return "error", _short(exc)
