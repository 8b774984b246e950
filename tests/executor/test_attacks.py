"""The attack suite: hostile programs run with the static checks BYPASSED (the /v1/run path of the
engine), so what contains them is the runtime sandbox: fork-server children with rlimits, a
dropped uid, seccomp, Landlock, an audit hook, closed fds and a wall-clock kill.

Every hostile item is followed by a benign one in the same batch (same fork-servers), which must
still return the right answer; afterwards no child may be left behind."""

from __future__ import annotations

import os

import pytest

from services.executor.engine import Engine
from tests.executor.conftest import children_of

BENIGN = ("def f(xs):\n    return sorted(set(len(str(x)) for x in xs))", "[1, 22, 333, 4444]")
BENIGN_OUTPUT = repr(sorted({len(str(x)) for x in [1, 22, 333, 4444]}))

# name, program, input, expected status, per-item timeout
ATTACKS: list[tuple[str, str, str, str, float | None]] = [
    (
        "network to a local port",
        "import socket\ndef f():\n    s = socket.create_connection(('127.0.0.1', 6379))\n    return 1",
        "",
        "forbidden",
        None,
    ),
    (
        "file write",
        "def f():\n    open('/tmp/azr-pwned', 'w').write('x')\n    return 1",
        "",
        "forbidden",
        None,
    ),
    ("read /etc/passwd", "def f():\n    return open('/etc/passwd').read()", "", "forbidden", None),
    (
        "os.open /etc/passwd",
        "import os\ndef f():\n    return os.read(os.open('/etc/passwd', 0), 100)",
        "",
        "forbidden",
        None,
    ),
    (
        "read /proc/self/environ",
        "def f():\n    return open('/proc/self/environ', 'rb').read()",
        "",
        "forbidden",
        None,
    ),
    (
        "list the filesystem",
        "import os\ndef f():\n    return os.listdir('/')",
        "",
        "forbidden",
        None,
    ),
    (
        "__import__ os.system",
        "def f():\n    return __import__('os').system('id')",
        "",
        "forbidden",
        None,
    ),
    (
        "__subclasses__ to Popen",
        "def f():\n    P = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]\n    return P(['id']).wait()",
        "",
        # subprocess is not even loaded in the fork-server: the class isn't there to find
        "error",
        None,
    ),
    (
        "__subclasses__ to os.system",
        "def f():\n    W = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]\n    return W.__init__.__globals__['system']('id')",
        "",
        "forbidden",
        None,
    ),
    (
        "ctypes import",
        "import ctypes\ndef f():\n    return ctypes.CDLL(None).system(b'id')",
        "",
        "forbidden",
        None,
    ),
    (
        "ctypes via __subclasses__",
        "def f():\n    C = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'CDLL'][0]\n    return C(None).getpid()",
        "",
        "forbidden",
        None,
    ),
    (
        "pickle trick",
        "import pickle\ndef f():\n    return pickle.loads(b\"cos\\nsystem\\n(S'id'\\ntR.\")",
        "",
        "forbidden",
        None,
    ),
    (
        "exec of a shell",
        "import os\ndef f():\n    os.execv('/bin/sh', ['sh', '-c', 'id'])",
        "",
        "forbidden",
        None,
    ),
    ("fork bomb", "import os\ndef f():\n    while True:\n        os.fork()", "", "forbidden", None),
    (
        "thread bomb (no audit event: seccomp)",
        "import dataclasses\ndef f():\n    for _ in range(1000):\n        dataclasses._thread.start_new_thread(lambda: None, ())\n    return 1",
        "",
        "forbidden",
        None,
    ),
    ("memory bomb (list)", "def f():\n    return len([0] * 10**9)", "", "memory", None),
    (
        "memory bomb (doubling string)",
        "def f():\n    s = 'x'\n    while True:\n        s += s",
        "",
        "memory",
        None,
    ),
    ("infinite loop", "def f():\n    while True:\n        pass", "", "timeout", 1.0),
    ("C-level busy loop", "def f():\n    return sum(range(10**13))", "", "timeout", 1.0),
    ("sleep past the wall clock", "import time\ndef f():\n    time.sleep(30)", "", "timeout", 1.0),
    ("huge output", "def f():\n    return 'x' * 10**6", "", "output_limit", None),
    (
        "print flood",
        "def f():\n    while True:\n        print('y' * 1000)",
        "",
        "output_limit",
        None,
    ),
    ("deep recursion", "def f(n=0):\n    return f(n + 1)", "", "error", None),
    (
        "recursion limit lifted (C stack overflow)",
        "import sys\nsys.setrecursionlimit(10**8)\ndef f():\n    a, b = [], []\n    for _ in range(10**6):\n        a, b = [a], [b]\n    return a == b",
        "",
        "error",
        15.0,
    ),
    ("kill the parent", "import os\ndef f():\n    os.kill(os.getppid(), 9)", "", "forbidden", None),
    (
        "kill every process of the uid",
        "import os\ndef f():\n    os.kill(-1, 9)",
        "",
        "forbidden",
        None,
    ),
    (
        "import gc to find the token",
        "import gc\ndef f():\n    return len(gc.get_objects())",
        "",
        "forbidden",
        None,
    ),
    (
        "frame walk via traceback",
        "def f():\n    try:\n        1 / 0\n    except Exception as e:\n        return str(e.__traceback__.tb_frame.f_back.f_locals)",
        "",
        "forbidden",
        None,
    ),
    ("sys.exit", "import sys\ndef f():\n    sys.exit(0)", "", "error", None),
    ("os._exit without a result", "import os\ndef f():\n    os._exit(0)", "", "error", None),
]


@pytest.fixture(scope="module")
def batch(engine: Engine) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    for _, program, inp, _, timeout in ATTACKS:
        items.append({"program": program, "input": inp, "timeout_s": timeout})
        items.append({"program": BENIGN[0], "input": BENIGN[1]})
    return engine.run(items)


def test_suite_is_large_enough() -> None:
    assert len(ATTACKS) >= 25


@pytest.mark.parametrize("index", range(len(ATTACKS)), ids=[a[0] for a in ATTACKS])
def test_attack_contained(batch: list[dict[str, object]], index: int) -> None:
    name, _, _, expected, _ = ATTACKS[index]
    hostile, benign = batch[2 * index], batch[2 * index + 1]
    assert hostile["status"] == expected, f"{name}: {hostile}"
    assert hostile["output"] is None
    assert benign == {**benign, "status": "ok", "output": BENIGN_OUTPUT}, f"after {name}: {benign}"


def test_no_file_was_written(batch: list[dict[str, object]]) -> None:
    assert not os.path.exists("/tmp/azr-pwned")


def test_builtins_patching_does_not_poison_the_next_program(engine: Engine) -> None:
    poison = "import builtins\nbuiltins.len = lambda x: -1\nbuiltins.sorted = None\ndef f():\n    return len([1, 2])"
    results = engine.run(
        [{"program": poison, "input": ""}, {"program": BENIGN[0], "input": BENIGN[1]}]
    )
    assert results[0] == {**results[0], "status": "ok", "output": "-1"}
    assert results[1]["output"] == BENIGN_OUTPUT


def test_environment_is_empty(engine: Engine) -> None:
    os.environ["AZR_TEST_SECRET"] = "hunter2"
    try:
        (res,) = engine.run(
            [{"program": "import os\ndef f():\n    return dict(os.environ)", "input": ""}]
        )
    finally:
        del os.environ["AZR_TEST_SECRET"]
    assert res["status"] == "ok" and res["output"] == "{}"


def test_forged_result_frames_are_ignored(engine: Engine) -> None:
    forge = (
        "import os\n"
        "def f():\n"
        "    for fd in range(64):\n"
        "        try:\n"
        '            os.write(fd, b\'{"status": "ok", "calls": [{"status": "ok", "output": "999"}]}\')\n'
        "        except OSError:\n"
        "            pass\n"
        "    return 7"
    )
    res, benign = engine.run(
        [{"program": forge, "input": ""}, {"program": BENIGN[0], "input": BENIGN[1]}]
    )
    # what a program writes into its own result pipe spoils its own result, nothing else
    assert res["output"] != "999" and res["status"] in ("ok", "error"), res
    assert benign["status"] == "ok" and benign["output"] == BENIGN_OUTPUT


def test_children_run_unprivileged_in_an_empty_readonly_dir(engine: Engine) -> None:
    # a removed directory has no links left: the cwd is neither / nor anything a child can fill
    probe = (
        "import os\ndef f():\n    st = os.stat('.')\n"
        "    return (os.getuid() != 0 or os.getgid() != 0, st.st_nlink, st.st_ino != os.stat('/').st_ino)"
    )
    (res,) = engine.run([{"program": probe, "input": ""}])
    assert res["output"] == "(True, 0, True)", res


def test_no_child_outlives_its_request(engine: Engine, batch: list[dict[str, object]]) -> None:
    for proc in (engine.pair.primary, engine.pair.secondary):
        assert proc.alive, "a fork-server died"
        assert proc.server_pid is not None
        # every child of a request is reaped before its reply; none waits for a later one
        kids = children_of(proc.server_pid)
        assert kids == [] and proc.spare_pids == [], f"fork-server {proc.server_pid} has {kids}"


def test_patched_builtins_cannot_forge_the_programs_own_result(engine: Engine) -> None:
    # the runner puts the builtins back before it formats the result, so a patched repr (or
    # literal check) can't make the program report something it didn't return
    program = (
        "import builtins\n"
        "def f(x):\n"
        "    builtins.repr = lambda v: '42'\n"
        "    builtins.len = lambda v: 0\n"
        "    return x + 1"
    )
    (res,) = engine.run([{"program": program, "input": "1"}])
    assert res["status"] == "ok" and res["output"] == "2", res


def test_fork_servers_leave_no_directory_behind(engine: Engine) -> None:
    # the working directory is removed as soon as the fork-server is inside it, so even a
    # SIGKILLed fork-server leaves nothing in /tmp
    for proc in (engine.pair.primary, engine.pair.secondary):
        cwd = os.readlink(f"/proc/{proc.server_pid}/cwd")
        assert "azr-sandbox-" in cwd and cwd.endswith("(deleted)"), cwd
