"""Verifier integrity (issue 12): a program can't forge, leak into or sabotage a verdict. Each
test is an attack of one finding class; the program runs on the engine's own fork-servers (the
static checks are bypassed on /v1/run), and a benign neighbour in the same batch must keep its
verdict. Some run with an unprivileged fork-server (the chart's uid 10001), some under gVisor."""

from __future__ import annotations

import ast
import ctypes
import errno
import os
import resource
import signal
from collections.abc import Iterator

import pytest

from azr.core.checks import check_program
from services.executor import sandbox_layers as layers
from services.executor.engine import Engine, EngineLimits
from services.executor.sandbox import (
    SandboxConfig,
    SandboxDegraded,
    SandboxPair,
    missing_layers,
    runsc_available,
)
from tests.executor.test_attacks import BENIGN, BENIGN_OUTPUT

# --- finding 1: result forgery ---------------------------------------------------------------

# Walks the outer frames for the runner's writer (and its token) and reports a forged success,
# then fails for real.
FORGE_VIA_FRAMES = """
import sys
def f(x=0):
    fr = sys._getframe(1)
    while fr is not None:
        for name, value in list(fr.f_locals.items()):
            if name == 'report' and callable(value):
                value({'status': 'ok', 'calls': [{'status': 'ok', 'output': '42',
                       'deterministic': True, 'literal': True}]})
        fr = fr.f_back
    raise ValueError('always fails')
"""
# Patches the JSON encoder the runner formats its frame with, then fails.
FORGE_VIA_JSON = """
import json
FORGED = '{"status": "ok", "calls": [{"status": "ok", "output": "42", "deterministic": true, "literal": true}]}'
def f(x=0):
    json._default_encoder.encode = lambda obj: FORGED
    json.encoder.JSONEncoder.encode = lambda self, obj: FORGED
    raise ValueError('always fails')
"""


@pytest.mark.parametrize("program", [FORGE_VIA_FRAMES, FORGE_VIA_JSON], ids=["frames", "json"])
def test_a_failing_program_cannot_forge_success(engine: Engine, program: str) -> None:
    run, benign = engine.run(
        [{"program": program, "input": ""}, {"program": BENIGN[0], "input": BENIGN[1]}]
    )
    assert run["status"] == "error" and run["output"] is None, run
    assert benign["status"] == "ok" and benign["output"] == BENIGN_OUTPUT
    (valid,) = engine.validate([{"task_type": "deduction", "program": program, "inputs": ["1"]}])
    assert not valid["valid"], valid
    (verdict,) = engine.verify(
        [{"task_type": "abduction", "program": program, "output": "42", "answer": "1"}]
    )
    assert not verdict["correct"], verdict


def test_forged_determinism_is_caught_across_processes(engine: Engine) -> None:
    # claims two equal calls for itself, but each process draws its own value
    program = """
import os, random
def f(x):
    v = repr(random.random()).encode()
    for fd in range(3, 64):
        try:
            os.write(fd, b'ok\\n' + v + b'\\x00' + v)
        except OSError:
            pass
    os._exit(0)
"""
    banned, engine.limits.banned_modules = engine.limits.banned_modules, ()
    try:  # no banned modules: the runtime layers and the trusted side alone decide
        (res,) = engine.validate([{"task_type": "deduction", "program": program, "inputs": ["1"]}])
    finally:
        engine.limits.banned_modules = banned
    # whatever it claims, the other process's claim differs (or the count of calls is off)
    assert not res["valid"], res


# --- finding 2: the audit hook can't be switched off; aliased getattr ------------------------


def test_the_audit_hook_has_no_switch(engine: Engine) -> None:
    # flip every boolean cell of the outer frames (the old arm of the hook), then open a file;
    # where sys._getframe is gone, reach the frames through a generator instead
    program = """
import sys
def frames():
    get = getattr(sys, '_getframe', None)
    if get is not None:
        return get(1)
    def g():
        yield gen.gi_frame.f_back
    gen = g()
    return next(gen)
def f():
    fr = frames()
    while fr is not None:
        for value in fr.f_locals.values():
            if isinstance(value, list) and value and isinstance(value[0], bool):
                value[0] = False
        fr = fr.f_back
    return open('/etc/hostname').read()
"""
    res, benign = engine.run(
        [{"program": program, "input": ""}, {"program": BENIGN[0], "input": BENIGN[1]}]
    )
    # refused by the hook itself, not by a lower layer after the hook was switched off
    assert res["status"] == "forbidden" and res["output"] is None, res
    assert benign["output"] == BENIGN_OUTPUT


def test_aliased_getattr_is_refused_statically() -> None:
    for program in (
        "g = getattr\ndef f(x):\n    return g(x, '__class__')",
        "def f(x):\n    return [getattr][0](x, '__cla' + 'ss__')",
    ):
        assert not check_program(program).ok, program
    assert check_program("def f(x):\n    return getattr(x, 'real')").ok


# --- finding 3/4/5: sabotage of siblings and of the fork-server ------------------------------

_SYS = {  # x86_64 syscall numbers
    "prlimit64": 302,
    "setpriority": 141,
    "sched_setaffinity": 203,
    "ioprio_set": 251,
    "shmget": 29,
    "msgget": 68,
    "semget": 64,
    "mq_open": 240,
    "clone": 56,
    "clone3": 435,
}


def _in_filtered_child(call: str, uid: int | None, server: bool = False) -> int:
    """Fork; in the child (optionally as `uid`, with RLIMIT_NPROC 0 as a job's child has) load
    the executor's child filter (or with `server` the fork-server's own, which every child
    inherits) and make one raw syscall. Returns the signal that ended the child, else the
    errno of a failed call (0 when it succeeded)."""
    status, bpf = layers.build_seccomp_bpf(server=server)
    assert status.active and bpf is not None, status.detail
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            if uid is not None:
                resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            layers.set_no_new_privs()
            layers.load_seccomp(bpf)
            limit = (ctypes.c_uint64 * 2)(1 << 20, 1 << 20)
            old = (ctypes.c_uint64 * 2)()
            args: tuple[object, ...] | None = {
                "prlimit64 parent": (_SYS["prlimit64"], parent, 9, ctypes.byref(limit), 0),
                "prlimit64 self write": (_SYS["prlimit64"], 0, 9, ctypes.byref(limit), 0),
                "prlimit64 self read": (_SYS["prlimit64"], 0, 9, 0, ctypes.byref(old)),
                "setpriority": (_SYS["setpriority"], 1, 0, 19),  # PRIO_PGRP
                "sched_setaffinity": (_SYS["sched_setaffinity"], parent, 8, ctypes.byref(old)),
                "ioprio_set": (_SYS["ioprio_set"], 1, parent, 0),
                "shmget": (_SYS["shmget"], 0x4A5A, 4096, 0o1666),
                "msgget": (_SYS["msgget"], 0x4A5A, 0o1666),
                "semget": (_SYS["semget"], 0x4A5A, 1, 0o1666),
                "mq_open": (
                    _SYS["mq_open"],
                    ctypes.c_char_p(b"azr"),
                    os.O_CREAT | os.O_RDWR,
                    0o600,
                    0,
                ),
                # a thread's clone (any flags but fork()'s), clone3 (glibc's threads), fork()
                "clone thread": (_SYS["clone"], 0x400 | signal.SIGCHLD, 0, 0, 0, 0),
                "clone3": (_SYS["clone3"], 0, 0),
            }.get(call)
            # fork: glibc's own, the flags the fork-server's filter lets through
            ret = libc.fork() if args is None else libc.syscall(*args)
            os._exit(ctypes.get_errno() if ret == -1 else 0)
        finally:
            os._exit(0)
    _, st = os.waitpid(pid, 0)
    return os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)


SABOTAGE = [
    "prlimit64 parent",
    "prlimit64 self write",
    "setpriority",
    "sched_setaffinity",
    "ioprio_set",
    "shmget",
    "msgget",
    "semget",
    "mq_open",
]


# children set their own limits under the fork-server's filter: only the child filter kills that
_KILLED_BY = [
    pytest.param(call, server, id=f"{call}-{'fork-server' if server else 'child'} filter")
    for call in [*SABOTAGE, "clone thread", "clone3"]
    for server in (False, True)
    if not (server and call == "prlimit64 self write")
]


@pytest.mark.parametrize("uid", [None, 10001], ids=["root", "uid10001"])
@pytest.mark.parametrize(("call", "server"), _KILLED_BY)
def test_seccomp_kills_sabotage_syscalls(call: str, server: bool, uid: int | None) -> None:
    if os.geteuid() != 0 and uid is not None:
        pytest.skip("switching to uid 10001 needs root")
    assert _in_filtered_child(call, uid, server) == signal.SIGSYS


def test_a_child_may_still_read_its_own_limits() -> None:
    assert _in_filtered_child("prlimit64 self read", None) == 0
    assert _in_filtered_child("prlimit64 self read", None, server=True) == 0


def test_the_fork_server_filter_lets_fork_through_to_rlimit_nproc() -> None:
    # the fork-server forks under its own filter; a child, no longer root, is refused by its
    # RLIMIT_NPROC of 0 instead (and the child filter kills it outright)
    if os.geteuid() != 0:
        pytest.skip("switching to uid 10001 needs root")
    assert _in_filtered_child("fork", 10001, server=True) == errno.EAGAIN
    assert _in_filtered_child("fork", 10001) == signal.SIGSYS


def test_children_add_to_the_inherited_filter_only_what_it_cannot_stop(engine: Engine) -> None:
    detail = engine.pair.report()["layers"]["seccomp"]["detail"]
    if os.geteuid() == 0:  # one uid per slot: signalling a sibling is refused already
        assert "inherited by every child (each with a uid of its own" in detail, detail
    assert "probed" in detail or "child filter" in detail, detail


def test_shared_uids_get_a_signal_scope_or_the_child_filter(unprivileged: Engine) -> None:
    detail = unprivileged.pair.report()["layers"]["seccomp"]["detail"]
    expected = "Landlock domain" if layers.landlock_abi() >= 6 else "child filter"
    assert expected in detail, detail


def test_every_child_loads_the_child_filter_when_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azr.settings import get_settings

    monkeypatch.setenv("AZR_EXECUTOR__CHILD_FILTER", "always")
    get_settings.cache_clear()
    try:
        config = SandboxConfig.from_settings()
    finally:
        monkeypatch.delenv("AZR_EXECUTOR__CHILD_FILTER")
        get_settings.cache_clear()
    assert config.child_step == "seccomp"
    config.spares, config.memory_mb = 2, 256
    eng = Engine(EngineLimits(timeout_s=3.0), SandboxPair(config, seeds=(51, 52)))
    eng.start()
    try:
        detail = eng.pair.report()["layers"]["seccomp"]["detail"]
        assert "each child loads the child filter:" in detail, detail
        (res,) = eng.run([{"program": BENIGN[0], "input": BENIGN[1]}])
        assert res["output"] == BENIGN_OUTPUT, res
    finally:
        eng.close()


def test_an_unknown_child_step_is_refused() -> None:
    with pytest.raises(ValueError, match="child_step"):
        SandboxConfig(child_step="off")


def test_the_probe_sends_children_back_to_the_filter_when_they_could_signal() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (all children as nobody)")
    # every child as nobody, and asked to add nothing: a probe child could signal its
    # waiting sibling, so every child loads the child filter after all
    config = SandboxConfig(spares=2, distinct_uids=False, child_step="none")
    eng = Engine(EngineLimits(timeout_s=3.0), SandboxPair(config, seeds=(49, 50)))
    eng.start()
    try:
        detail = eng.pair.report()["layers"]["seccomp"]["detail"]
        assert "each child loads the child filter (a probe child could signal a sibling" in detail
        (res,) = eng.run([{"program": BENIGN[0], "input": BENIGN[1]}])
        assert res["output"] == BENIGN_OUTPUT, res
    finally:
        eng.close()


def test_fork_servers_have_their_own_ipc_and_pid_namespaces(engine: Engine) -> None:
    if os.geteuid() != 0:
        pytest.skip("IPC/PID namespaces need root")
    mine = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("ipc", "pid")}
    seen = []
    for proc in (engine.pair.primary, engine.pair.secondary):
        theirs = {ns: os.readlink(f"/proc/{proc.server_pid}/ns/{ns}") for ns in ("ipc", "pid")}
        assert theirs["ipc"] != mine["ipc"] and theirs["pid"] != mine["pid"], theirs
        seen.append(theirs)
    # a segment one request leaves behind is invisible to the other fork-server too
    assert seen[0]["ipc"] != seen[1]["ipc"]


def test_setpriority_from_a_program_is_forbidden(engine: Engine) -> None:
    program = "import os\ndef f():\n    os.setpriority(os.PRIO_USER, 0, 19)\n    return 1"
    res, benign = engine.run(
        [{"program": program, "input": ""}, {"program": BENIGN[0], "input": BENIGN[1]}]
    )
    assert res["status"] == "forbidden", res
    assert benign["output"] == BENIGN_OUTPUT


def test_neighbouring_children_have_distinct_uids(engine: Engine) -> None:
    if os.geteuid() != 0:
        pytest.skip("distinct uids need a root fork-server")
    program = "import os\ndef f():\n    return [os.getuid(), os.getgid(), os.getgroups()]"
    probe = {"program": program, "input": ""}
    ids = [ast.literal_eval(str(r["output"])) for r in engine.run([probe] * 4)]
    uids = [uid for uid, _, _ in ids]
    assert len(set(uids)) == 4 and 0 not in uids, ids
    assert all(gid == uid for uid, gid, _ in ids), ids


def test_children_keep_no_supplementary_group_of_the_server() -> None:
    if os.geteuid() != 0:
        pytest.skip("distinct uids need a root fork-server")
    # the fork-server inherits a supplementary group from here; it drops it once for all its
    # children (they no longer call setgroups themselves)
    before = os.getgroups()
    os.setgroups([4242])
    try:
        eng = Engine(EngineLimits(timeout_s=3.0), SandboxPair(SandboxConfig(spares=2), (47, 48)))
        eng.start()
    finally:
        os.setgroups(before)
    try:
        program = "import os\ndef f():\n    return os.getgroups()"
        runs = eng.run([{"program": program, "input": ""}] * 3)
    finally:
        eng.close()
    assert [r["output"] for r in runs] == ["[]"] * 3, runs


# --- finding 6: a frame with an unknown status ------------------------------------------------


def test_an_unknown_status_frame_is_that_items_error(engine: Engine) -> None:
    program = """
import os, sys
def f():
    try:
        fr = sys._getframe(1)
        while fr is not None:
            rep = fr.f_locals.get('report')
            if callable(rep):
                rep({'status': 'ok', 'calls': [{'status': 'pwned', 'output': '1'}]})
            fr = fr.f_back
    except AttributeError:
        pass
    for fd in range(3, 64):
        try:
            os.write(fd, b'pwned\\n1')
        except OSError:
            pass
    os._exit(0)
"""
    res, benign = engine.run(
        [{"program": program, "input": ""}, {"program": BENIGN[0], "input": BENIGN[1]}]
    )
    assert res["status"] == "error", res
    assert benign["status"] == "ok" and benign["output"] == BENIGN_OUTPUT


# --- finding 7: fresh state for every (program, input) ----------------------------------------

STATEFUL = """
import math
def f(x):
    if not hasattr(math, 'azr_first'):
        math.azr_first = x
    return math.azr_first
"""


def test_inputs_do_not_share_interpreter_state(engine: Engine) -> None:
    (res,) = engine.validate(
        [{"task_type": "deduction", "program": STATEFUL, "inputs": ["1", "2", "3"]}]
    )
    assert res["valid"] and res["outputs"] == ["1", "2", "3"], res
    (verdict,) = engine.verify(
        [
            {
                "task_type": "induction",
                "program": "",
                "answer": STATEFUL,
                "hidden": [{"input": "5", "output": "5"}, {"input": "6", "output": "6"}],
            }
        ]
    )
    assert verdict["correct"], verdict


# --- finding 12: one item's cost never changes another's verdict ------------------------------


def test_slow_collision_answers_do_not_reach_a_neighbour(engine: Engine) -> None:
    # integers k * (2**61 - 1) all hash alike: building and comparing such sets is quadratic
    m = 2**61 - 1
    slow = "{" + ", ".join(str(k * m) for k in range(1, 60_000)) + "}"
    swapped = "{" + ", ".join(str(k * m) for k in range(59_999, 0, -1)) + "}"
    good = {"task_type": "deduction", "output": "[1, 2]", "answer": "[1.0, 2]"}
    res = engine.verify(
        [
            {"task_type": "deduction", "output": slow, "answer": swapped},
            good,
            {
                "task_type": "induction",
                "program": "",
                "answer": "def f(x):\n    return {x}",
                "hidden": [{"input": "1", "output": slow}],
            },
            good,
        ]
    )
    assert res[1]["correct"] and res[3]["correct"], res
    assert not res[0]["correct"] and "characters" in (res[0]["reason"] or ""), res[0]
    assert not res[2]["correct"], res[2]


# --- fail closed, non-root mode, a broken fork-server is replaced ------------------------------


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.skip("switching the fork-server to uid 10001 needs root")
    config = SandboxConfig(spares=2, memory_mb=256, run_as=(10001, 10001), allow_degraded=True)
    eng = Engine(EngineLimits(timeout_s=3.0), SandboxPair(config, seeds=(41, 42)))
    eng.start()
    try:
        yield eng
    finally:
        eng.close()


def test_a_missing_layer_refuses_to_start_unless_allowed() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the fork-server as uid 10001")
    # without root and without a user namespace there is no network namespace
    config = SandboxConfig(spares=1, run_as=(10001, 10001), userns=False)
    pair = SandboxPair(config, seeds=(43, 44))
    with pytest.raises(SandboxDegraded, match="netns"):
        pair.start()
    pair.close()


def test_unprivileged_mode_contains_and_reports(unprivileged: Engine) -> None:
    report = unprivileged.pair.report()
    if report["layers"]["userns"]["active"]:
        # the namespaces come through a user namespace; the server kept no capability
        assert report["missing"] == [], report
        server = unprivileged.pair.primary.server_pid
        with open(f"/proc/{server}/status") as fh:
            caps = {k: v.strip() for k, _, v in (line.partition(":") for line in fh)}
        assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0, caps
        assert caps["Uid"].split()[0] == "10001"
    else:
        assert "netns" in report["missing"]
    res = unprivileged.run(
        [
            {"program": "import os\ndef f():\n    os.kill(os.getppid(), 9)", "input": ""},
            {
                "program": "import os\ndef f():\n    os.setpriority(os.PRIO_USER, 0, 19)",
                "input": "",
            },
            {"program": BENIGN[0], "input": BENIGN[1]},
        ]
    )
    assert [r["status"] for r in res] == ["forbidden", "forbidden", "ok"], res


def test_a_fork_server_whose_children_fail_set_up_is_replaced(unprivileged: Engine) -> None:
    # what a program could do to its own fork-server before: lower its limits, so that no
    # later child can set its own (256 MiB of address space > 128 MiB) and every job failed
    # until a restart
    proc = unprivileged.pair.primary
    assert proc.server_pid is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a process of the server's uid, as a program was
        try:
            os.setgroups([])
            os.setresgid(10001, 10001, 10001)
            os.setresuid(10001, 10001, 10001)
            resource.prlimit(proc.server_pid, resource.RLIMIT_AS, (1 << 27, 1 << 27))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    with open(f"/proc/{proc.server_pid}/limits") as fh:
        limit = next(line for line in fh if line.startswith("Max address space")).split()
    assert limit[3:5] == [str(1 << 27)] * 2, limit
    benign = {"program": BENIGN[0], "input": BENIGN[1]}
    results = [unprivileged.run([benign])[0] for _ in range(6)]
    assert proc.replaced >= 1, results
    assert results[-1]["status"] == "ok", results


# --- gVisor -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gvisor() -> Iterator[Engine]:
    why = runsc_available()
    if why is not None:
        pytest.skip(f"gVisor attack tests skipped: {why}")
    config = SandboxConfig(spares=2, memory_mb=256, runtime="runsc")
    eng = Engine(EngineLimits(timeout_s=3.0), SandboxPair(config, seeds=(45, 46)))
    eng.start()
    try:
        yield eng
    finally:
        eng.close()


def test_attacks_are_contained_under_gvisor(gvisor: Engine) -> None:
    from tests.executor.test_attacks import ATTACKS

    report = gvisor.pair.report()
    assert report["runtime"] == "runsc" and report["missing"] == [], report
    picked = [a for a in ATTACKS if a[0] in _UNDER_GVISOR]
    items = []
    for _, program, inp, _, timeout in picked:
        items += [
            {"program": program, "input": inp, "timeout_s": timeout},
            {"program": BENIGN[0], "input": BENIGN[1]},
        ]
    items.append({"program": FORGE_VIA_FRAMES, "input": ""})
    res = gvisor.run(items)
    for i, (name, _, _, expected, _) in enumerate(picked):
        assert res[2 * i]["status"] == expected, (name, res[2 * i])
        assert res[2 * i + 1]["output"] == BENIGN_OUTPUT, name
    assert res[-1]["status"] == "error"


_UNDER_GVISOR = {
    "network to a local port",
    "read /etc/passwd",
    "os.open /etc/passwd",
    "fork bomb",
    "thread bomb (no audit event: seccomp)",
    "memory bomb (list)",
    "infinite loop",
    "kill the parent",
    "import gc to find the token",
    "frame walk via traceback",
}


def test_unprivileged_under_gvisor_has_every_layer() -> None:
    # the chart's shape: uid 10001 inside gVisor; the namespaces come through a user namespace
    why = runsc_available()
    if why is not None:
        pytest.skip(f"gVisor attack tests skipped: {why}")
    config = SandboxConfig(spares=1, memory_mb=256, runtime="runsc", run_as=(10001, 10001))
    eng = Engine(EngineLimits(timeout_s=3.0), SandboxPair(config, seeds=(47, 48)))
    try:
        report = eng.start()  # fails closed (SandboxDegraded) if a layer is missing
        assert report["missing"] == [] and report["layers"]["userns"]["active"], report
        res = eng.run(
            [
                {"program": "import os\ndef f():\n    return os.getuid()", "input": ""},
                {"program": FORGE_VIA_FRAMES, "input": ""},
                {
                    "program": "import os\ndef f():\n    os.setpriority(os.PRIO_USER, 0, 19)",
                    "input": "",
                },
            ]
        )
        assert [r["status"] for r in res] == ["ok", "error", "forbidden"], res
        assert res[0]["output"] == "10001"
    finally:
        eng.close()


def test_a_native_worker_on_gvisor_is_held_to_gvisors_layers(gvisor: Engine) -> None:
    # the chart's shape: runtime native in a gVisor pod, where Landlock does not exist; the
    # fork-server's own report says where it runs
    layers_on_gvisor = gvisor.pair.report()["layers"]
    assert layers_on_gvisor["gvisor"]["active"], layers_on_gvisor
    assert not layers_on_gvisor["landlock"]["active"]
    assert missing_layers(layers_on_gvisor, "native") == []
    # the same report without the gVisor line is a native host without Landlock: refused
    on_host = {
        **layers_on_gvisor,
        "gvisor": layers.gvisor_kernel("#1 SMP PREEMPT_DYNAMIC").as_dict(),
    }
    assert missing_layers(on_host, "native") == ["landlock"]
    # and runtime runsc insists that the fork-server really is on gVisor
    assert missing_layers(on_host, "runsc") == ["gvisor"]


def test_frames_are_parsed_strictly() -> None:
    from services.executor.forkserver import parse_frame

    assert parse_frame(b"ok\n[1]\x00[1]", 2, 10) == {"status": "ok", "outputs": ["[1]", "[1]"]}
    for data in (b"", b"ok", b"pwned\n1", b"ok\n1", b"ok\n\xff\xfe\x001", b"timeout\n"):
        assert parse_frame(data, 2, 10)["status"] == "error", data
    assert parse_frame(b"ok\n" + b"x" * 11 + b"\x001", 2, 10)["status"] == "output_limit"
    assert parse_frame(b"forbidden\nrefused: open", 2, 10) == {
        "status": "forbidden",
        "error": "refused: open",
    }


def test_ordinary_programs_still_run(engine: Engine) -> None:
    # what the hook refuses must not catch legitimate stdlib use (functional NamedTuple/Enum set
    # function defaults and module names; functools.wraps copies attributes)
    programs = [
        "from typing import NamedTuple\ndef f(x):\n    P = NamedTuple('P', [('a', int)])\n    return P(x).a",
        "from enum import Enum\ndef f(x):\n    C = Enum('C', 'A B')\n    return C.B.value + x - 2",
        "from collections import namedtuple\ndef f(x):\n    P = namedtuple('P', 'a b', defaults=[0])\n    return P(x).a",
        "import functools\ndef deco(fn):\n    @functools.wraps(fn)\n    def w(*a):\n        return fn(*a)\n    return w\n@deco\ndef f(x):\n    return x",
    ]
    res = engine.run([{"program": p, "input": "5"} for p in programs])
    assert [(r["status"], r["output"]) for r in res] == [("ok", "5")] * 4, res
