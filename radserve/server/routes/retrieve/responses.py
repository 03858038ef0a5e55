"""Multipart responses built from parts held in memory (frames, bulk data, renderings)."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Response

from radserve.server.routes.multipart import closing_delimiter, new_boundary, part_header


def multipart_response(part_type: str, parts: Iterable[tuple[str, bytes]]) -> Response:
    """A ``multipart/related`` response.

    Args:
        part_type: The ``type`` parameter of the response (the parts' media type).
        parts: ``(Content-Type, data)`` of each part, in order.
    """
    boundary = new_boundary()
    chunks: list[bytes] = []
    for content_type, data in parts:
        chunks += (part_header(boundary, content_type, len(data)), data, b"\r\n")
    chunks.append(closing_delimiter(boundary))
    return Response(
        b"".join(chunks),
        media_type=f'multipart/related; type="{part_type}"; boundary={boundary}',
    )
