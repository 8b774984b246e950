"""`azr up`: the whole local stack as supervised child processes.

Order: Redis (embedded unless AZR_REDIS_URL) -> executor (API + its Celery workers) -> inference
(proposer and solver routers over one engine) -> trainer -> gateway. Every child is an ordinary
`azr serve NAME` process with the shared URLs in its environment, logs to
`<data_dir>/logs/NAME.log`, and is restarted when it dies (with a back-off and a cap on restarts
within a window). Shutdown stops the children in reverse order (SIGTERM, then SIGKILL).

The executor's and inference's data routes take a bearer token: the stack uses AZR_SERVICE_TOKEN
when set, else generates one, hands it to every child (the gateway's clients send it) and writes
it to `<data_dir>/service-token` (mode 0600) for other local callers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from azr.common.processes import die_with_parent
from azr.common.redis_server import EmbeddedRedis
from azr.settings import Settings

log = logging.getLogger("azr.supervisor")

SERVICES = ("executor", "inference", "trainer", "gateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Child:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    started_at: float = 0.0
    gave_up: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        argv = [sys.executable, "-m", "services.cli", "serve", self.name]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        # own process group, so stopping a child also stops what it started (workers, vLLM)
        self.proc = subprocess.Popen(
            argv,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # no orphaned services if the supervisor is killed
        )
        out.close()
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None:
            return
        # Remember every descendant first: some (a vLLM server) run in their own session, out of
        # reach of the group signal, and would be orphaned if their parent had to be killed.
        try:
            descendants = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        else:
            # the leader is gone; make sure nothing it started lingers in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        _, alive = psutil.wait_procs(descendants, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        self.proc = None


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        services: tuple[str, ...] = SERVICES,
        auto_ports: bool = False,
        extra_env: dict[str, str] | None = None,
        ready_timeout_s: float = 900.0,
        max_restarts: int = 5,
        restart_window_s: float = 300.0,
    ) -> None:
        self.settings = settings
        self.services = services
        self.auto_ports = auto_ports
        self.extra_env = dict(extra_env or {})
        self.ready_timeout_s = ready_timeout_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.data_dir = Path(settings.data_dir).resolve()
        self.service_token = settings.service_token or secrets.token_urlsafe(32)
        self.redis: EmbeddedRedis | None = None
        self.redis_url = ""
        self.children: dict[str, Child] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ URLs
    def _port(self, name: str) -> int:
        configured = {
            "executor": self.settings.executor.port,
            "inference": self.settings.inference.port,
            "trainer": self.settings.trainer.port,
            "gateway": self.settings.gateway_port,
        }[name]
        if self.auto_ports:
            return free_port()
        if not port_is_free(configured):
            raise RuntimeError(
                f"port {configured} for {name} is in use; stop what holds it or set "
                f"the {name} port in the settings (AZR_...PORT)"
            )
        return configured

    def url(self, name: str) -> str:
        return self.children[name].url

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    def _env(self, ports: dict[str, int]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["AZR_DATA_DIR"] = str(self.data_dir)
        env["AZR_REDIS_URL"] = self.redis_url
        env["AZR_DATABASE_URL"] = self.settings.sqlalchemy_url
        env["AZR_SERVICE_TOKEN"] = self.service_token
        env["AZR_GATEWAY_PORT"] = str(ports.get("gateway", self.settings.gateway_port))
        if "executor" in ports:
            env["AZR_EXECUTOR__URL"] = f"http://127.0.0.1:{ports['executor']}"
            env["AZR_EXECUTOR__PORT"] = str(ports["executor"])
        if "inference" in ports:
            url = f"http://127.0.0.1:{ports['inference']}"
            env["AZR_INFERENCE__PROPOSER_URL"] = url
            env["AZR_INFERENCE__SOLVER_URL"] = url
            env["AZR_INFERENCE__PORT"] = str(ports["inference"])
            if self.settings.inference.engine == "vllm" and self.auto_ports:
                env["AZR_INFERENCE__VLLM_PORT"] = str(free_port())
        if "trainer" in ports:
            env["AZR_TRAINER__PORT"] = str(ports["trainer"])
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        token_file = self.data_dir / "service-token"
        token_file.unlink(missing_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.service_token + "\n")
        if self.settings.redis_url:
            self.redis_url = self.settings.redis_url
        else:
            self.redis = EmbeddedRedis(self.data_dir / "redis")
            self.redis_url = self.redis.start()
        ports = {name: self._port(name) for name in self.services}
        env = self._env(ports)
        try:
            for name in self.services:
                child = Child(name, ports[name], env, self.data_dir / "logs" / f"{name}.log")
                self.children[name] = child
                log.info("starting %s on port %s", name, child.port)
                child.spawn()
                self.wait_ready(child)
        except BaseException:
            self.stop()
            raise
        self._watcher = threading.Thread(target=self._watch, name="azr-supervisor", daemon=True)
        self._watcher.start()

    def wait_ready(self, child: Child, timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (timeout_s or self.ready_timeout_s)
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if not child.alive():
                    raise RuntimeError(
                        f"{child.name} exited during start-up; see {child.log_path}:\n"
                        + tail(child.log_path)
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{child.url}/readyz").status_code == 200:
                        return
                time.sleep(0.25)
        raise TimeoutError(f"{child.name} was not ready in time; see {child.log_path}")

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                for child in self.children.values():
                    if self._stop.is_set() or child.gave_up or child.alive():
                        continue
                    code = child.proc.returncode if child.proc else None
                    now = time.monotonic()
                    recent = [t for t in child.restarts if now - t < self.restart_window_s]
                    if len(recent) >= self.max_restarts:
                        log.error("%s keeps crashing (exit %s); not restarting", child.name, code)
                        child.gave_up = True
                        continue
                    child.restarts.append(now)
                    log.warning("%s exited (code %s); restarting", child.name, code)
                    child.stop()
                    child.spawn()

    def restarts(self, name: str) -> int:
        return len(self.children[name].restarts)

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        with self._lock:
            for name in reversed(list(self.children)):
                self.children[name].stop()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
