"""Real uvicorn servers on loopback sockets for the HTTP tests, and a raw HTTP/1.1 client that
can send a chunked body that never ends (httpx always finishes a body before it reads)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


@contextlib.contextmanager
def served(app: Any, lifespan: str = "off", start_timeout_s: float = 30) -> Iterator[int]:
    """Serve `app` on a free loopback port in a thread; yields the port. `lifespan="on"` runs
    the app's start-up (an inference app then loads its engine before it answers)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def chunked_post(
    port: int,
    path: str,
    chunks: list[bytes],
    *,
    finish: bool,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> tuple[int, bytes]:
    """POST `chunks` with Transfer-Encoding: chunked (no Content-Length); without `finish` the
    terminating chunk is never sent, so a server that waits for the whole body never answers.
    Returns (status, body); status 0 when no answer came within `timeout_s`."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += ["Transfer-Encoding: chunked", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        with contextlib.suppress(OSError):  # the server may answer and close mid-body
            for piece in chunks:
                s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            if finish:
                s.sendall(b"0\r\n\r\n")
        data = b""
        try:
            while not _complete(data):
                got = s.recv(65536)
                if not got:
                    break
                data += got
        except TimeoutError:
            if not data:
                return 0, b""
        except OSError:
            pass
    if not data:
        return 0, b""
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[-1]


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False
