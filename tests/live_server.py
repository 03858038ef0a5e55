"""The whole radserve server (lifespan on: workers, exporter, router) on a loopback port.

Used by the tests that need a real HTTP server rather than the ASGI app: other clients
(dicomweb-client, a browser) and the job path end to end.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from radserve.server import (
    ServerLifecycle,
    ServerSettings,
    create_app,
    open_server,
    uvicorn_config,
)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    """A started server: its base URL and its parts."""

    url: str
    lifecycle: ServerLifecycle

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


@contextmanager
def serving(app: FastAPI, **limits: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn (radserve's configuration, ``limits`` passed on to
    :func:`uvicorn_config`) in a thread on a free loopback port; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=port, **limits))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    assert not thread.is_alive(), "the server did not stop"


@contextmanager
def running_server(settings: ServerSettings) -> Iterator[RunningServer]:
    """Start the server in a thread; stop it (and its workers) on exit."""
    lifecycle = open_server(settings)
    app = create_app(settings, server=lifecycle)
    try:
        with serving(app) as url:
            yield RunningServer(url, lifecycle)
    finally:
        lifecycle.stop()


@contextmanager
def dicomweb_server(settings: ServerSettings, **limits: Any) -> Iterator[str]:
    """A DICOMweb-only app (no models, no workers) served on a loopback port; its URL."""
    app = create_app(settings)
    try:
        with serving(app, **limits) as url:
            yield url
    finally:
        app.state.radserve.store.close()
