"""Running `azr serve trainer` as a real child process in tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from azr.settings import Settings
from tests.trainer.helpers import settings_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TrainerProcess:
    """`azr serve trainer`; with `ranks` > 0 under torchrun (gloo on CPU), which restarts the
    whole job up to `max_restarts` times when a rank dies."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        ranks: int = 0,
        max_restarts: int = 0,
        **env: str,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **settings_env(settings), **env}
        full_env["AZR_LOG_LEVEL"] = "INFO"
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        serve = ["-m", "services.cli", "serve", "trainer", "--port", str(self.port)]
        launcher: list[str] = []
        if ranks:
            full_env["OMP_NUM_THREADS"] = "1"  # two ranks share two cores
            launcher = ["-m", "torch.distributed.run", "--standalone"]
            launcher += ["--nproc-per-node", str(ranks), "--max-restarts", str(max_restarts)]
        self.proc = subprocess.Popen(
            [sys.executable, *launcher, *serve],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.log_path = log_path

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def wait_ready(self, timeout_s: float = 120) -> None:
        self.wait_for(lambda s: s["ready"], timeout_s)

    def wait_for(self, predicate: Any, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"trainer exited ({self.proc.returncode}): {self.tail()}")
            try:
                status: dict[str, Any] = self.get("/v1/status").json()
                if predicate(status):
                    return status
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"trainer condition not met in {timeout_s} s: {self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def rank_pid(self, rank: int) -> int:
        """The process id of one torchrun worker (found by its RANK variable)."""
        import psutil

        for child in psutil.Process(self.proc.pid).children():
            try:
                if child.environ().get("RANK") == str(rank):
                    return int(child.pid)
            except psutil.Error:
                continue
        raise LookupError(f"no rank {rank} under torchrun {self.proc.pid}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        import psutil

        ranks: list[psutil.Process] = []
        if self.proc.poll() is None:
            try:
                ranks = psutil.Process(self.proc.pid).children()
            except psutil.Error:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # torchrun's workers must not outlive it, whatever state they were in.
        for rank in ranks:
            try:
                rank.kill()
            except psutil.Error:
                pass
        self.log.close()
