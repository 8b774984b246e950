"""The worker-side handle on fork-server processes.

`ForkServerProcess` starts ``python -S -s -m services.executor.forkserver`` with an empty
environment (plus its own PYTHONHASHSEED) and talks the length-prefixed JSON protocol to it.
`SandboxPair` owns two of them with different hash seeds: the primary runs every job, the
secondary repeats validation calls so that hash-seed-dependent programs are caught."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.executor.forkserver import read_message, write_message
from services.executor.sandbox_layers import LayerStatus, build_seccomp_bpf

log = logging.getLogger("azr.executor.sandbox")

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
_SECCOMP: tuple[LayerStatus, bytes | None] | None = None


def seccomp_filter() -> dict[str, Any]:
    """The seccomp BPF, compiled once per worker process and handed to its fork-servers, so
    libseccomp never has to be mapped into them."""
    global _SECCOMP
    if _SECCOMP is None:
        _SECCOMP = build_seccomp_bpf()
    status, bpf = _SECCOMP
    return {"active": status.active, "detail": status.detail, "bpf": bpf.hex() if bpf else None}


class SandboxUnavailable(RuntimeError):
    """The fork-server could not be started or died and could not be restarted."""


@dataclass
class SandboxConfig:
    cpu_s: int = 10
    memory_mb: int = 512
    open_files: int = 16
    netns: bool = True
    read_trees: list[str] = field(default_factory=list)
    spares: int = 8  # pre-forked, locked-down children each fork-server keeps ready

    @classmethod
    def from_settings(cls) -> SandboxConfig:
        from azr.settings import get_settings

        s = get_settings().executor
        return cls(
            cpu_s=max(s.cpu_s, int(s.max_timeout_s) + 1),
            memory_mb=s.memory_mb,
            spares=s.spare_children,
        )


class ForkServerProcess:
    def __init__(self, config: SandboxConfig, hash_seed: int) -> None:
        self.config = config
        self.hash_seed = hash_seed
        self.proc: subprocess.Popen[bytes] | None = None
        self.hello: dict[str, Any] = {}
        self.spare_pids: list[int] = []  # as of the last reply
        self._lock = threading.Lock()

    def start(self) -> dict[str, Any]:
        env = {
            "PYTHONHASHSEED": str(self.hash_seed),
            "PYTHONPATH": _REPO_ROOT,
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }
        # -S: no site-packages. The fork-server needs only the stdlib and this repository (on
        # PYTHONPATH); skipping site keeps its heap and its mappings, which every fork copies, small.
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-s", "-B", "-m", "services.executor.forkserver"],
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
                "read_trees": self.config.read_trees,
                "seccomp": seccomp_filter(),
                "spares": self.config.spares,
            },
        )
        hello = read_message(self.proc.stdout.fileno())
        if not isinstance(hello, dict):
            self.stop()
            raise SandboxUnavailable("the fork-server exited during start-up")
        if not hello.get("self_test", {}).get("ok"):
            self.stop()
            raise SandboxUnavailable(f"sandbox self-test failed: {hello.get('self_test')}")
        self.hello = hello
        self.spare_pids = [int(p) for p in hello.get("spares") or []]
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
        write_message(self.proc.stdin.fileno(), {"jobs": jobs})
        reply = read_message(self.proc.stdout.fileno())
        if not isinstance(reply, dict) or len(reply.get("results", [])) != len(jobs):
            raise EOFError("no reply from the fork-server")
        results: list[dict[str, Any]] = reply["results"]
        self.spare_pids = [int(p) for p in reply.get("spares") or []]
        return results

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
        return {
            "layers": hello.get("layers", {}),
            "pids": [self.primary.hello.get("pid"), self.secondary.hello.get("pid")],
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
