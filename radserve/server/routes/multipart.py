"""``multipart/related`` (RFC 2387, framed as RFC 2046 says) without holding a body in memory.

:class:`MultipartParser` is a push parser: feed it the body in chunks of any size and it
returns what it found in them (a part starts with its headers, a run of a part's data, a part
ends). It keeps at most one delimiter's length of data between calls, plus a part's headers,
so a request of any size is parsed in constant memory and each part can go straight to disk.

:func:`part_header` and :func:`closing_delimiter` frame a multipart response.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from radserve.server.errors import MalformedRequestError

MAX_HEADER_BYTES = 16 * 1024
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAMETER = re.compile(rf';\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)\s*')
_MEDIA_TYPE = re.compile(rf"\s*({_TOKEN}/{_TOKEN})\s*")
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_MAX_BOUNDARY_LINE = 1024


@dataclass(frozen=True)
class MediaType:
    """A parsed media type: ``type`` lower case, parameter names lower case, values unquoted."""

    type: str
    parameters: Mapping[str, str] = field(default_factory=dict)


def parse_media_type(value: str) -> MediaType:
    """Parse a Content-Type or a media range of an Accept header.

    Raises:
        MalformedRequestError: Not a media type.
    """
    match = _MEDIA_TYPE.match(value)
    if match is None:
        raise MalformedRequestError("malformed media type")
    parameters: dict[str, str] = {}
    position = match.end()
    while position < len(value):
        parameter = _PARAMETER.match(value, position)
        if parameter is None:
            raise MalformedRequestError("malformed media type parameters")
        raw = parameter.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        parameters[parameter.group(1).lower()] = raw
        position = parameter.end()
    return MediaType(match.group(1).lower(), parameters)


@dataclass(frozen=True)
class PartStart:
    """A part begins; header names are lower case."""

    headers: Mapping[str, str]


@dataclass(frozen=True)
class PartData:
    """The next bytes of the current part."""

    data: bytes


@dataclass(frozen=True)
class PartEnd:
    """The current part is complete."""


Event = PartStart | PartData | PartEnd

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _END = range(5)


class MultipartParser:
    """Incremental parser of a multipart body.

    Args:
        boundary: The ``boundary`` parameter of the Content-Type.
        max_header_bytes: Refuse parts whose header block is larger.

    Raises:
        MalformedRequestError: The boundary is not valid (RFC 2046: 1 to 70 characters).
    """

    def __init__(self, boundary: str, *, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        if not _BOUNDARY.fullmatch(boundary):
            raise MalformedRequestError("multipart boundary is not valid (RFC 2046)")
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        self._keep = len(self._delimiter) - 1
        # A CRLF before the first delimiter lets it be found like the others.
        self._buffer = bytearray(b"\r\n")
        self._state = _PREAMBLE
        self._max_header_bytes = max_header_bytes

    @property
    def complete(self) -> bool:
        """Whether the closing delimiter has been seen."""
        return self._state == _END

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next bytes of the body.

        Raises:
            MalformedRequestError: The body is not a well-formed multipart body.
        """
        if self._state == _END:
            return []  # the epilogue is ignored
        self._buffer += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        """Declare the body complete.

        Raises:
            MalformedRequestError: The body ended before the closing delimiter.
        """
        if self._state == _PREAMBLE:
            raise MalformedRequestError("body holds no multipart delimiter (wrong boundary?)")
        if self._state != _END:
            raise MalformedRequestError("body ends before the closing multipart delimiter")

    def _step(self, events: list[Event]) -> bool:
        """Consume what the buffer allows in the current state; whether to continue."""
        buffer = self._buffer
        if self._state == _PREAMBLE:
            at = buffer.find(self._delimiter)
            if at < 0:
                del buffer[: max(0, len(buffer) - self._keep)]
                return False
            del buffer[: at + len(self._delimiter)]
            self._state = _AFTER_DELIMITER
            return True
        if self._state == _AFTER_DELIMITER:
            if len(buffer) < 2:
                return False
            if buffer.startswith(b"--"):
                self._state = _END
                buffer.clear()
                return False
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > _MAX_BOUNDARY_LINE:
                    raise MalformedRequestError("malformed multipart delimiter line")
                return False
            if buffer[:end].strip(b" \t"):
                raise MalformedRequestError("malformed multipart delimiter line")
            del buffer[: end + 2]
            self._state = _HEADERS
            return True
        if self._state == _HEADERS:
            if buffer.startswith(b"\r\n"):
                headers: dict[str, str] = {}
                del buffer[:2]
            else:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > self._max_header_bytes:
                        raise MalformedRequestError("multipart part headers are too large")
                    return False
                headers = _parse_headers(bytes(buffer[:end]))
                del buffer[: end + 4]
            events.append(PartStart(headers))
            self._state = _BODY
            return True
        # _BODY
        at = buffer.find(self._delimiter)
        if at < 0:
            if len(buffer) > self._keep:
                cut = len(buffer) - self._keep
                events.append(PartData(bytes(buffer[:cut])))
                del buffer[:cut]
            return False
        if at:
            events.append(PartData(bytes(buffer[:at])))
        events.append(PartEnd())
        del buffer[: at + len(self._delimiter)]
        self._state = _AFTER_DELIMITER
        return True


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedRequestError("multipart part headers are not ASCII") from exc
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MalformedRequestError("malformed multipart part header")
        headers[name.strip().lower()] = value.strip()
    return headers


def new_boundary() -> str:
    """A random boundary for a multipart response."""
    return secrets.token_hex(16)


def part_header(boundary: str, content_type: str, length: int) -> bytes:
    """The delimiter and headers that open a part of a multipart response."""
    return (
        f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode("ascii")


def closing_delimiter(boundary: str) -> bytes:
    """What ends a multipart response (after the last part's data)."""
    return f"--{boundary}--\r\n".encode("ascii")
