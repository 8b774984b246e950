"""The worker-side handle on fork-server processes.

`ForkServerProcess` starts ``python -S -s -m services.executor.forkserver`` with an empty
environment (plus its own PYTHONHASHSEED) and talks the length-prefixed JSON protocol to it;
with ``runtime="runsc"`` the fork-server runs inside gVisor (``runsc do``). `SandboxPair` owns
two of them with different hash seeds: the primary runs every job, the secondary repeats
validation calls so that hash-seed-dependent programs are caught.

Fail closed: a fork-server whose report lacks a layer the runtime should have makes
`SandboxPair.start` raise `SandboxDegraded` unless the configuration allows a degraded sandbox,
and a fork-server whose children fail their set-up is replaced."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.executor import child_job
from services.executor.forkserver import read_message, wire_job, write_message
from services.executor.sandbox_layers import LayerStatus, build_seccomp_bpf

log = logging.getLogger("azr.executor.sandbox")

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
_SECCOMP: tuple[LayerStatus, bytes | None, LayerStatus, bytes | None] | None = None


def seccomp_filter() -> dict[str, Any]:
    """The seccomp BPF programs (the child filter, the fork-server's own), compiled once per
    worker process and handed to its fork-servers, so libseccomp never has to be mapped into
    them."""
    global _SECCOMP
    if _SECCOMP is None:
        _SECCOMP = (*build_seccomp_bpf(), *build_seccomp_bpf(server=True))
    status, bpf, server_status, server_bpf = _SECCOMP
    return {
        "active": status.active,
        "detail": status.detail,
        "bpf": bpf.hex() if bpf else None,
        "server_detail": server_status.detail,
        "server_bpf": server_bpf.hex() if server_bpf else None,
    }


class SandboxUnavailable(RuntimeError):
    """The fork-server could not be started or died and could not be restarted."""


class SandboxDegraded(SandboxUnavailable):
    """A required isolation layer is missing and a degraded sandbox is not allowed."""


# Layers every fork-server must report active, by runtime. Inside gVisor there is no Landlock
# (its own kernel, the Sentry, stands between the children and the host instead).
_REQUIRED = (
    "netns",
    "ipcns",
    "pidns",
    "rlimits",
    "drop_privileges",
    "seccomp",
    "landlock",
    "workdir",
    "close_fds",
    "audit_hook",
)
_ON_GVISOR = (*(name for name in _REQUIRED if name != "landlock"), "gvisor")
REQUIRED_LAYERS = {
    "native": _REQUIRED,
    "runsc": _ON_GVISOR,
}
# present only without root; when present it must be active (it carries the namespaces)
_REQUIRED_IF_REPORTED = ("userns",)
UID_BASE = 200_000  # children of fork-server `seed` take uids UID_BASE + seed % 50_000 * 64 + k


@dataclass
class SandboxConfig:
    cpu_s: int = 10
    memory_mb: int = 512
    open_files: int = 16
    netns: bool = True
    pidns: bool = True
    userns: bool = True  # without root: namespaces through a user namespace where allowed
    read_trees: list[str] = field(default_factory=list)
    spares: int = 8  # children forked at once, each with its job (`settings.spare_children`)
    runtime: str = "native"  # or "runsc": the fork-servers run inside gVisor
    allow_degraded: bool = False
    distinct_uids: bool = True
    # (uid, gid) the fork-server switches to first thing, losing every capability: the
    # non-root mode of the chart (uid 10001), reproducible from a root worker
    run_as: tuple[int, int] | None = None
    # what each child adds to the fork-server's inherited filter: "auto" (the cheapest step the
    # fork-server's probe children show sufficient, `sandbox_layers.plan_child_step`) or
    # "seccomp" (every child loads the whole child filter, ~7% of a validation's CPU)
    child_step: str = "auto"
    # the checkout the fork-servers run from (default: this one); benchmarks put two side by side
    code_root: str | None = None

    def __post_init__(self) -> None:
        # "none" asks for no per-child step at all; the fork-server's probe children still
        # overrule it (tests use it to check that they do)
        if self.child_step not in ("auto", "none", "seccomp"):
            raise ValueError(f"child_step must be auto, none or seccomp, not {self.child_step!r}")

    @classmethod
    def from_settings(cls) -> SandboxConfig:
        from azr.settings import get_settings

        s = get_settings().executor
        return cls(
            cpu_s=max(s.cpu_s, int(s.max_timeout_s) + 1),
            memory_mb=s.memory_mb,
            spares=s.spare_children,
            runtime=s.runtime,
            allow_degraded=s.allow_degraded_sandbox,
            child_step="seccomp" if s.child_filter == "always" else "auto",
        )


def runsc_available() -> str | None:
    """Why gVisor can't be used here, or None when it can (`runsc do` needs root)."""
    if shutil.which("runsc") is None:
        return "runsc is not installed (Debian package runsc)"
    if os.geteuid() != 0:
        return "runsc do needs root"
    return None


def missing_layers(layers: dict[str, Any], runtime: str) -> list[str]:
    """The required layers a fork-server's report lacks (or reports inactive). A fork-server that
    reports running on gVisor is held to gVisor's set whatever the runtime setting: in the chart's
    gVisor pods the runtime is native, yet the kernel is the Sentry, which has no Landlock."""
    on_gvisor = bool((layers.get("gvisor") or {}).get("active"))
    wanted = _ON_GVISOR if on_gvisor else REQUIRED_LAYERS.get(runtime, _REQUIRED)
    missing = [n for n in wanted if not (layers.get(n) or {}).get("active")]
    return missing + [
        n for n in _REQUIRED_IF_REPORTED if n in layers and not (layers[n] or {}).get("active")
    ]


class ForkServerProcess:
    def __init__(self, config: SandboxConfig, hash_seed: int) -> None:
        self.config = config
        self.hash_seed = hash_seed
        self.proc: subprocess.Popen[bytes] | None = None
        self.hello: dict[str, Any] = {}
        self.spare_pids: list[int] = []  # children left after the last reply: none
        self.server_pid: int | None = None  # the serving process as the host sees it
        self.replaced = 0  # fork-servers replaced because their children failed set-up
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        # -S: no site-packages. The fork-server needs only the stdlib and this repository (on
        # PYTHONPATH); skipping site keeps its heap and its mappings, which every fork copies, small.
        cmd = [sys.executable, "-S", "-s", "-B", "-m", "services.executor.forkserver"]
        if self.config.runtime == "runsc":
            why = runsc_available()
            if why is not None:
                raise SandboxUnavailable(f"runtime runsc: {why}")
            # a gVisor sandbox without network; the host filesystem is seen read-only through
            # an overlay; -quiet keeps runsc's own messages off the protocol pipe
            cmd = ["runsc", "--network=none", "do", "-quiet", "-cwd", "/", "--", *cmd]
        elif self.config.runtime != "native":
            raise SandboxUnavailable(f"unknown sandbox runtime {self.config.runtime!r}")
        return cmd

    def start(self) -> dict[str, Any]:
        env = {
            "PYTHONHASHSEED": str(self.hash_seed),
            "PYTHONPATH": self.config.code_root or _REPO_ROOT,
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            # resolve every symbol at load time: lazy binding would write each child's first
            # call of a libc/libpython function into the GOT, a copy-on-write fault per page
            "LD_BIND_NOW": "1",
        }
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd="/",
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        write_message(
            self.proc.stdin.fileno(),
            {
                "limits": {
                    "cpu_s": self.config.cpu_s,
                    "memory_mb": self.config.memory_mb,
                    "open_files": self.config.open_files,
                },
                "netns": self.config.netns,
                "pidns": self.config.pidns,
                "userns": self.config.userns,
                "run_as": list(self.config.run_as) if self.config.run_as else None,
                "uid_base": (
                    UID_BASE + self.hash_seed % 50_000 * 64 if self.config.distinct_uids else None
                ),
                "read_trees": self.config.read_trees,
                "seccomp": seccomp_filter(),
                "spares": self.config.spares,
                "child_step": self.config.child_step,
            },
        )
        hello = read_message(self.proc.stdout.fileno())
        if not isinstance(hello, dict):
            self.stop()
            raise SandboxUnavailable("the fork-server exited during start-up")
        if not hello.get("self_test", {}).get("ok"):
            self.stop()
            raise SandboxUnavailable(f"sandbox self-test failed: {hello.get('self_test')}")
        if hello.get("python") != sys.version:
            # the jobs carry code objects compiled here: only the same interpreter can run them
            self.stop()
            raise SandboxUnavailable(
                f"the fork-server runs Python {hello.get('python')!r}, this worker {sys.version!r}"
            )
        self.hello = hello
        self.spare_pids = [int(p) for p in hello.get("spares") or []]
        self.server_pid = int(hello.get("host_pid") or self.proc.pid)
        missing = missing_layers(hello.get("layers") or {}, self.config.runtime)
        if missing and not self.config.allow_degraded:
            self.stop()
            raise SandboxDegraded(
                f"isolation layers missing: {', '.join(missing)} (set "
                "AZR_EXECUTOR__ALLOW_DEGRADED_SANDBOX=true to run without them)"
            )
        return hello

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def run(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            for attempt in (1, 2):
                if not self.alive:
                    self.start()
                try:
                    return self._exchange(jobs)
                except (OSError, ValueError, EOFError) as exc:
                    log.warning("fork-server failed (attempt %d): %s; restarting", attempt, exc)
                    self.stop()
            raise SandboxUnavailable("the fork-server keeps failing")

    def _exchange(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        results: list[dict[str, Any] | None] = []
        wire = []
        for job in jobs:
            try:
                payload = child_job.encode(
                    str(job.get("program", "")),
                    str(job.get("input", "")),
                    int(job.get("repeat") or 1),
                    int(job["max_output"]),
                    float(job["timeout_s"]),
                )
                wire.append(wire_job(payload))
                results.append(None)
            except child_job.CompileFailed as exc:  # that job's error; no child is needed
                results.append({"status": "error", "error": str(exc), "duration_ms": 0.0})
        if not wire:
            return [r for r in results if r is not None]
        write_message(self.proc.stdin.fileno(), {"jobs": wire})
        reply = read_message(self.proc.stdout.fileno())
        if not isinstance(reply, dict) or len(reply.get("results", [])) != len(wire):
            raise EOFError("no reply from the fork-server")
        ran = iter(reply["results"])
        merged: list[dict[str, Any]] = [r if r is not None else next(ran) for r in results]
        self.spare_pids = [int(p) for p in reply.get("spares") or []]
        if reply.get("setup_failures"):
            # its children can't lock down (a lowered limit, a broken layer): a fresh one
            log.warning(
                "fork-server children failed set-up (%s); replacing it", reply.get("setup_error")
            )
            self.replaced += 1
            self.stop()
        return merged

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SandboxPair:
    """A primary and a secondary fork-server (different PYTHONHASHSEED)."""

    def __init__(
        self, config: SandboxConfig | None = None, seeds: tuple[int, int] = (0, 1)
    ) -> None:
        self.config = config or SandboxConfig()
        self.primary = ForkServerProcess(self.config, seeds[0])
        self.secondary = ForkServerProcess(self.config, seeds[1])

    def start(self) -> dict[str, Any]:
        self.primary.start()
        self.secondary.start()
        return self.report()

    def report(self) -> dict[str, Any]:
        hello = self.primary.hello or {}
        layers = hello.get("layers", {})
        return {
            "layers": layers,
            "runtime": self.config.runtime,
            "missing": missing_layers(layers, self.config.runtime),
            "degraded_allowed": self.config.allow_degraded,
            "pids": [self.primary.server_pid, self.secondary.server_pid],
        }

    def run(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.primary.run(jobs) if jobs else []

    def run_both(
        self, primary_jobs: list[dict[str, Any]], secondary_jobs: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Both fork-servers at once (they are separate processes, so this overlaps)."""
        if not secondary_jobs:
            return self.run(primary_jobs), []
        box: dict[str, Any] = {}

        def second() -> None:
            try:
                box["ok"] = self.secondary.run(secondary_jobs)
            except BaseException as exc:
                box["err"] = exc

        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        first = self.run(primary_jobs)
        thread.join()
        if "err" in box:
            raise box["err"]
        return first, box["ok"]

    def close(self) -> None:
        self.primary.stop()
        self.secondary.stop()

    def __enter__(self) -> SandboxPair:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_seeds() -> tuple[int, int]:
    """Different per worker process, and always different between the two servers."""
    base = os.getpid() % 100_000 * 2
    return base, base + 1
