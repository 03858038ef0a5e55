"""Reading request bodies within bounds: a size limit and an idle timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import Request

from radserve.server.errors import MalformedRequestError, PayloadTooLargeError, RequestTimeoutError


async def body_chunks(request: Request, idle_timeout_s: float) -> AsyncIterator[bytes]:
    """The request body's chunks; :class:`RequestTimeoutError` when none arrives for
    ``idle_timeout_s`` seconds (a client that stalls mid-body)."""
    stream = request.stream()
    while True:
        try:
            with anyio.fail_after(idle_timeout_s):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"the request body stopped arriving for {idle_timeout_s:g} s"
            ) from exc
        yield chunk


async def read_bounded_body(request: Request, limit: int, idle_timeout_s: float) -> bytes:
    """The request body, refused with 413 as soon as it (or its Content-Length) passes
    ``limit`` bytes, so that no more than ``limit`` bytes are ever held; 408 when it stalls
    for ``idle_timeout_s``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        if not declared.isdigit():
            raise MalformedRequestError("Content-Length is not a number")
        raise PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes")
    body = bytearray()
    async for chunk in body_chunks(request, idle_timeout_s):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes")
    return bytes(body)
