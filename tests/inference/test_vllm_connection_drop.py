"""The vLLM client survives a dropped keep-alive connection.

A real vLLM server cannot be made to close a pooled connection at the exact moment it is reused,
so a small HTTP server on a loopback port stands in for it here (it speaks the three routes the
engine uses). It closes the connection of the first completion request without answering, as a
server does when its keep-alive timer fires; the engine must send that request again. The real
server is covered by tests/inference/test_vllm_engine.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.inference.engine import EngineUnavailable, SamplingParams
from services.inference.vllm_engine import VLLMEngine


class DroppingServer(BaseHTTPRequestHandler):
    drops = 0  # completion requests to drop before answering
    completions = 0

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json({})
        else:
            self._json({"data": [{"id": "served"}]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length))
        type(self).completions += 1
        if type(self).drops > 0:
            type(self).drops -= 1
            self.close_connection = True
            self.connection.shutdown(2)  # gone before any status line
            return
        ids = list(body["prompt"])
        self._json(
            {
                "choices": [
                    {
                        "index": 0,
                        "text": "ok",
                        "prompt_token_ids": ids,
                        "token_ids": [7, 8],
                        "logprobs": {"token_logprobs": [-0.1, -0.2]},
                        "finish_reason": "stop",
                    }
                ]
            }
        )


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), DroppingServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _complete(model_dir: Path, url: str) -> list[list[object]]:
    async def go() -> list[list[object]]:
        engine = VLLMEngine(model_dir, url=url)
        await engine.start()
        try:
            params = SamplingParams(n=1, temperature=0.0, max_tokens=4)
            return list(await engine.generate_params([[5, 6]], params))
        finally:
            await engine.close()

    return asyncio.run(go())


def test_a_dropped_connection_is_retried(tiny_model_dir: Path, server: str) -> None:
    DroppingServer.drops, DroppingServer.completions = 1, 0
    [[sample]] = _complete(tiny_model_dir, server)
    assert DroppingServer.completions == 2
    assert sample.completion_token_ids == [7, 8]  # type: ignore[attr-defined]


def test_a_server_that_keeps_dropping_fails_clearly(tiny_model_dir: Path, server: str) -> None:
    DroppingServer.drops, DroppingServer.completions = 10, 0
    with pytest.raises(EngineUnavailable, match="vLLM request failed"):
        _complete(tiny_model_dir, server)
    assert DroppingServer.completions == 3
