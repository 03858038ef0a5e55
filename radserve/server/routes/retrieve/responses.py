"""Multipart responses of parts made one at a time (frames, bulk data, renderings).

The parts are streamed: one part is in memory at a time, however many a request asks for
(a frame list may name a frame thousands of times). The first part is made before the
answer starts, so that an error in it (a frame that cannot be decoded) is still a status;
an error in a later part ends the body early, and the client sees an incomplete multipart.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from fastapi.responses import StreamingResponse

from radserve.server.routes.multipart import closing_delimiter, new_boundary, part_header


def multipart_response(part_type: str, parts: Iterable[tuple[str, bytes]]) -> StreamingResponse:
    """A ``multipart/related`` response, streamed part by part.

    Args:
        part_type: The ``type`` parameter of the response (the parts' media type).
        parts: ``(Content-Type, data)`` of each part, in order; made as they are sent.
    """
    boundary = new_boundary()
    remaining = iter(parts)
    first = list(itertools.islice(remaining, 1))

    def body() -> Iterator[bytes]:
        while first:  # handed on, not kept: one part in memory at a time
            remaining_parts = itertools.chain([first.pop()], remaining)
            for content_type, data in remaining_parts:
                # One chunk per part: each chunk is a hop to the event loop's thread.
                yield b"".join((part_header(boundary, content_type, len(data)), data, b"\r\n"))
        yield closing_delimiter(boundary)

    return StreamingResponse(
        body(), media_type=f'multipart/related; type="{part_type}"; boundary={boundary}'
    )
