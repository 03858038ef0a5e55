"""Slow and hostile clients against a real server on a loopback socket: idle connections,
headers sent a byte at a time, more connections than the limit, a body that stalls.

The server runs with a 1 s header timeout, a 1 s body idle timeout and a limit of 64
connections, so each case takes seconds. ``/healthz`` must keep answering (within the
client's 5 s timeout; the latency seen is printed) while the hostile connections are held.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live_server import dicomweb_server

from .conftest import BOUNDARY, DICOM_MULTIPART, auth, make_settings

HEADER_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    data_dir: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = make_settings(tmp_path, body_idle_timeout_s=1.0)
    limits = {"header_timeout_s": HEADER_TIMEOUT_S, "max_connections": MAX_CONNECTIONS}
    with dicomweb_server(settings, **limits) as url:
        yield Server(url, int(url.rsplit(":", 1)[1]), settings.data_dir)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _healthz(url: str) -> float:
    begin = time.perf_counter()
    response = httpx.get(f"{url}/healthz", timeout=5)
    assert response.status_code == 200
    return time.perf_counter() - begin


def test_idle_and_slow_header_connections_are_closed_and_healthz_answers(
    server: Server,
) -> None:
    idle = [_connect(server.port) for _ in range(40)]
    slow = [_connect(server.port) for _ in range(10)]
    for sock in slow:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # and never the rest
    latency = _healthz(server.url)
    print(f"/healthz with 50 hostile connections held: {latency * 1000:.1f} ms")
    time.sleep(HEADER_TIMEOUT_S + 0.5)
    assert all(_closed_by_server(sock) for sock in idle + slow)
    for sock in idle + slow:
        sock.close()


def test_connections_beyond_the_limit_are_closed_unread_without_flooding_the_log(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    held = [_connect(server.port) for _ in range(MAX_CONNECTIONS + 40)]
    time.sleep(0.3)
    refused = [sock for sock in held if _closed_by_server_now(sock)]
    assert len(refused) >= 40
    warnings = [r for r in caplog.records if "connection limit" in r.getMessage()]
    assert len(warnings) == 1
    time.sleep(HEADER_TIMEOUT_S + 0.5)  # the idle ones time out: room again
    print(f"/healthz after the limit was reached: {_healthz(server.url) * 1000:.1f} ms")
    for sock in held:
        sock.close()


def _closed_by_server_now(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return _closed_by_server(sock)
    finally:
        sock.settimeout(5)


def test_a_stalled_body_fails_with_408_and_stores_nothing(server: Server) -> None:
    sock = _connect(server.port)
    head = (
        "POST /dicomweb/studies HTTP/1.1\r\nHost: t\r\n"
        f"Authorization: {auth('submitter')['Authorization']}\r\n"
        f"Content-Type: {DICOM_MULTIPART}\r\nContent-Length: 100000\r\n\r\n"
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n"
    )
    sock.sendall(head.encode() + bytes(200))  # then nothing more
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    sock.close()
    assert _healthz(server.url) < 5
    assert not list((server.data_dir / "instances").rglob("*.dcm"))
    assert not list((server.data_dir / "tmp").iterdir())
