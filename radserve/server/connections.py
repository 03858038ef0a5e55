"""Connection guards uvicorn does not have: a header timeout and a connection limit.

uvicorn times out an idle keep-alive connection after a response, but a connection that
opens and never sends (or sends its request headers a byte at a time) is held forever, and
it accepts connections until the process runs out of file descriptors. The HTTP protocol
here is uvicorn's h11 protocol with two guards:

* **header timeout**: the request line and headers must arrive within ``header_timeout_s``
  of the connection opening, or of the previous response on a kept-alive connection; else
  the connection is closed;
* **connection limit**: beyond ``max_connections`` open connections a new one is closed at
  once, before anything is read from it, so descriptors are never exhausted (and the
  process keeps answering its other connections).

A body that stops arriving is the application's to time out (STOW-RS does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 2048
_REFUSAL_LOG_INTERVAL_S = 60.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a connection limit (see the module);
    :func:`guarded_protocol` makes one with given limits."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    _last_refusal_log = 0.0
    _refused_since_log = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._waiting_after: object | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._note_refusal()
            transport.abort()
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._waiting_after:
            self._header_timer.cancel()  # a new request's headers are in
            self._header_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._waiting_after = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.cycle is self._waiting_after and not self.transport.is_closing():
            self.transport.close()

    @classmethod
    def _note_refusal(cls) -> None:
        cls._refused_since_log += 1
        now = time.monotonic()
        if now - cls._last_refusal_log >= _REFUSAL_LOG_INTERVAL_S:
            logger.warning(
                "connection limit of %d reached: %d new connections closed",
                cls.max_connections,
                cls._refused_since_log,
            )
            cls._last_refusal_log = now
            cls._refused_since_log = 0


def guarded_protocol(*, header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` class with these limits (uvicorn's ``http`` setting)."""
    return type(
        "RadserveH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )
