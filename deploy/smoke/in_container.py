"""Runs inside a service image for `make images-smoke` (deploy/smoke-images.sh mounts it).

    python in_container.py SERVICE -- <the image's CMD>

Starts the image's own command (its CMD, as the chart runs it), waits until /readyz says ready,
checks what that service is for through its HTTP API, stops it, and prints one last line
`SMOKE <service> ok: <detail>` or `SMOKE <service> FAIL: <reason>` (exit status 0 or 1).
Only the standard library and what the image itself installs are used, except the executor's
test suite, which runs under a pytest that the host mounts (it is no part of the image).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOKEN = os.environ.get("AZR_API_TOKEN", "")
# The chart's readinessProbe path (tests/deploy/test_images_chart.py checks they agree).
READY_PATH = "/readyz"
REPO = Path("/smoke/repo")


class SmokeFailure(Exception):
    pass


def http(method: str, url: str, body: Any = None, timeout: float = 600.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    request.add_header("authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def port_of(cmd: list[str]) -> int:
    return int(cmd[cmd.index("--port") + 1])


def start_service(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open("/tmp/service.log", "wb")  # noqa: SIM115  (kept open for the child's lifetime)
    return subprocess.Popen(["azr", *cmd], env={**os.environ, **env}, stdout=log, stderr=log)


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SmokeFailure(f"service exited with {proc.returncode}: {log_tail()}")
        try:
            status, body = http("GET", f"http://127.0.0.1:{port}{READY_PATH}", timeout=5)
            last = f"{status} {body[:200]!r}"
            if status == 200 and json.loads(body).get("ready", True):
                return dict(json.loads(body))
        except (OSError, ValueError) as exc:
            last = repr(exc)
        time.sleep(1)
    raise SmokeFailure(
        f"not ready after {timeout_s:.0f} s (last {READY_PATH}: {last}): {log_tail()}"
    )


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(lines: int = 15) -> str:
    try:
        text = Path("/tmp/service.log").read_text(errors="replace")
    except OSError:
        return "(no service log)"
    return " | ".join(text.strip().splitlines()[-lines:])


def embedded_redis() -> Any:
    from azr.common.redis_server import EmbeddedRedis

    server = EmbeddedRedis(Path("/data/redis"))
    server.start()
    return server


# --- checks, one per service ----------------------------------------------------------------


def check_executor(port: int) -> str:
    """The project's executor test files, as they are in the tree, with their `engine` fixture
    answered by this container's HTTP API (executor_http.py); tests that need in-process
    fixtures are skipped by that plugin, and every attack of the suite must pass."""
    junit = Path("/tmp/executor-junit.xml")
    env = {
        **os.environ,
        "PYTHONPATH": "/smoke/bin:/smoke/pylib",
        "AZR_SMOKE_EXECUTOR_URL": f"http://127.0.0.1:{port}",
    }
    args = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest",
        "-p", "executor_http", "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"),
        f"--junitxml={junit}", str(REPO / "tests" / "executor"),
    ]  # fmt: skip
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout[-6000:])
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    attacks_passed = attacks = 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        counts[outcome] += 1
        if case.get("name", "").startswith("test_attack_contained"):
            attacks += 1
            attacks_passed += outcome == "passed"
    if done.returncode != 0 or counts["failed"]:
        raise SmokeFailure(f"executor tests: {counts}")
    if attacks == 0 or attacks_passed != attacks:
        raise SmokeFailure(f"attack suite: {attacks_passed}/{attacks} contained through HTTP")
    return (
        f"{attacks_passed}/{attacks} attacks contained through /v1/run; "
        f"{counts['passed']} passed, {counts['skipped']} skipped (in-process only)"
    )


def check_gateway(port: int) -> str:
    status, page = http("GET", f"http://127.0.0.1:{port}/")
    if status != 200 or b"<html" not in page.lower():
        raise SmokeFailure(f"dashboard / answered {status}")
    assets = [
        name.split('"')[0] for name in page.decode(errors="replace").split('"/dashboard/')[1:]
    ]
    for name in assets:
        status, _ = http("GET", f"http://127.0.0.1:{port}/dashboard/{name}")
        if status != 200:
            raise SmokeFailure(f"dashboard asset {name} answered {status}")
    return f"/readyz ready on SQLite, dashboard and {len(assets)} assets served"


def check_inference(port: int) -> str:
    task = {"task_type": "deduction", "program": "def f(x):\n    return x + 1", "inputs": ["1"]}
    body = {"tasks": [task], "n": 1, "sampling": {"temperature": 0.0, "max_tokens": 48}}
    started = time.monotonic()
    status, raw = http("POST", f"http://127.0.0.1:{port}/v1/solve", body)
    if status != 200:
        raise SmokeFailure(f"/v1/solve answered {status}: {raw[:300]!r}")
    result = json.loads(raw)["results"][0]
    answers = result["answers"]
    if result.get("error") or len(answers) != 1 or not answers[0].get("response"):
        raise SmokeFailure(f"/v1/solve gave no answer: {raw[:300]!r}")
    return (
        f"/v1/solve answered in {time.monotonic() - started:.1f} s "
        f"({len(answers[0].get('token_ids') or answers[0]['response'])} tokens/chars)"
    )


def check_trainer(port: int, redis_url: str) -> str:
    import redis

    from azr.contracts.trainer import publish_reward_batch
    from azr.settings import get_settings
    from tests.trainer.helpers import make_batch

    sys.path.insert(0, str(REPO))
    settings = get_settings()
    publish_reward_batch(redis.Redis.from_url(redis_url), settings, make_batch(per_group=2))
    deadline = time.monotonic() + 900
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        code, raw = http("GET", f"http://127.0.0.1:{port}/v1/status", timeout=10)
        status = json.loads(raw) if code == 200 else {}
        if status.get("error"):
            raise SmokeFailure(f"trainer error: {status['error']}")
        if status.get("version", 0) >= 1:
            return f"one reward batch applied: weights v{status['version']:06d} published"
        time.sleep(2)
    raise SmokeFailure(f"no new version after 900 s: {status}: {log_tail()}")


def main(argv: list[str]) -> int:
    service = argv[0]
    cmd = argv[argv.index("--") + 1 :]
    port = port_of(cmd)
    env: dict[str, str] = {}
    redis_server = None
    proc = None
    try:
        if service in {"executor", "trainer"}:
            redis_server = embedded_redis()
            env["AZR_REDIS_URL"] = redis_server.url
        checks: dict[str, Callable[[], str]] = {
            "executor": lambda: check_executor(port),
            "gateway": lambda: check_gateway(port),
            "inference": lambda: check_inference(port),
            "trainer": lambda: check_trainer(port, env["AZR_REDIS_URL"]),
        }
        proc = start_service(cmd, env)
        wait_ready(proc, port, timeout_s=float(os.environ.get("AZR_SMOKE_READY_S", "600")))
        detail = checks[service]()
        print(f"SMOKE {service} ok: {detail}", flush=True)
        return 0
    except Exception as exc:  # any failure is this image's smoke result
        for log in [Path("/tmp/service.log"), *sorted(Path("/data/logs").glob("*.log"))]:
            if log.is_file():
                # a child's traceback (vLLM's engine core) is the root cause, not the API's
                lines = log.read_text(errors="replace").splitlines()
                own = [line for line in lines if not line.startswith("(APIServer")] or lines
                print(f"--- {log}", "\n".join(own)[-6000:], sep="\n", flush=True)
        print(f"SMOKE {service} FAIL: {type(exc).__name__}: {exc}", flush=True)
        return 1
    finally:
        if proc is not None:
            stop_service(proc)
        if redis_server is not None:
            redis_server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
