"""`azr up --run` follows its run over HTTP; a dropped connection must not end the watch (it used to
end `azr up`, which then stopped the whole stack mid-run). A real HTTP server on loopback drops the
first requests without an answer, as a server closing a keep-alive connection does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from services.gateway.cli_run import follow


class Flaky(BaseHTTPRequestHandler):
    drops = 0  # requests still to drop (class-wide, set per test)

    def do_GET(self) -> None:
        if Flaky.drops > 0:
            Flaky.drops -= 1
            self.close_connection = True
            self.connection.close()  # no status line at all
            return
        body = (
            {"steps": [{"step": 1, "metrics": {}}]}
            if self.path.endswith("/metrics")
            else {"id": 1, "status": "finished"}
        )
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_follow_survives_dropped_connections(gateway: str) -> None:
    Flaky.drops = 3
    final = follow(gateway, 1, 1, poll_s=0.01, max_failures=5)
    assert final["status"] == "finished" and Flaky.drops == 0


def test_follow_gives_up_on_a_gateway_that_stays_away(gateway: str) -> None:
    Flaky.drops = 100
    with pytest.raises(httpx.TransportError):
        follow(gateway, 1, 1, poll_s=0.01, max_failures=3)
    assert Flaky.drops == 100 - 4  # the first try and three retries
