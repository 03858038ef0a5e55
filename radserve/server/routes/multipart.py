"""``multipart/related`` (RFC 2387, framed as RFC 2046 says) without holding a body in memory.

:class:`MultipartParser` is a push parser: feed it the body in chunks of any size and it
returns what it found in them (a part starts with its headers, a run of a part's data, a part
ends). It skips the preamble and reads the first delimiter line itself; the parts are parsed
by ``python-multipart``'s streaming parser, which keeps at most a delimiter's length of data
between calls. A part's headers are held until complete, so a request of any size is parsed in
constant memory and each part can go straight to disk.

:func:`part_header` and :func:`closing_delimiter` frame a multipart response.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser as _PartsParser

from radserve.server.errors import MalformedRequestError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_HEADER_BYTES = 16 * 1024
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAMETER = re.compile(rf';\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)\s*')
_MEDIA_TYPE = re.compile(rf"\s*({_TOKEN}/{_TOKEN})\s*")
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_MAX_BOUNDARY_LINE = 1024
# Bytes handed to python-multipart at once: its own per-line header limit is set this much
# above ours, so a header block that grows too large is always refused by our count first.
_WRITE_BYTES = 64 * 1024


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


class _PartEvents:
    """python-multipart's callbacks, turned into events and header dictionaries.

    Args:
        max_header_bytes: Refuse parts whose header block (names, values, line ends) is larger.
    """

    def __init__(self, max_header_bytes: int) -> None:
        self.events: list[Event] = []
        self.in_headers = False
        self.complete = False
        self._max_header_bytes = max_header_bytes
        self._headers: dict[str, str] = {}
        self._name = bytearray()
        self._value = bytearray()
        self._header_bytes = 0

    def callbacks(self) -> MultipartCallbacks:
        """The callbacks to give python-multipart's parser."""
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self.in_headers = True
        self._headers = {}
        self._header_bytes = 0

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes:
            raise MalformedRequestError("multipart part headers are too large")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._count(len(b": \r\n"))
        try:
            name, value = self._name.decode("ascii"), self._value.decode("ascii")
        except UnicodeDecodeError as exc:
            raise MalformedRequestError("multipart part headers are not ASCII") from exc
        self._headers[name.strip().lower()] = value.strip()
        self._name.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        self.in_headers = False
        self.events.append(PartStart(self._headers))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.events.append(PartData(bytes(data[start:end])))

    def _part_end(self) -> None:
        self.events.append(PartEnd())

    def _end(self) -> None:
        self.complete = True


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
        self._dash_boundary = b"--" + boundary.encode("ascii")
        self._delimiter = b"\r\n" + self._dash_boundary
        # A CRLF before the first delimiter lets it be found like the others.
        self._opening = bytearray(b"\r\n")
        self._in_preamble = True
        self._opened = False
        self._parts = _PartEvents(max_header_bytes)
        self._parser = _PartsParser(
            self._dash_boundary[2:],
            self._parts.callbacks(),
            max_header_count=max_header_bytes,  # the size limit is the one that counts
            max_header_size=max_header_bytes + _WRITE_BYTES,
        )

    @property
    def complete(self) -> bool:
        """Whether the closing delimiter has been seen."""
        return self._parts.complete

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next bytes of the body.

        Raises:
            MalformedRequestError: The body is not a well-formed multipart body.
        """
        if self._parts.complete:
            return []  # the epilogue is ignored
        if not self._opened:
            data = self._open(data)
        for start in range(0, len(data), _WRITE_BYTES):
            if self._parts.complete:
                break
            self._write(data[start : start + _WRITE_BYTES])
        events, self._parts.events = self._parts.events, []
        return events

    def close(self) -> None:
        """Declare the body complete.

        Raises:
            MalformedRequestError: The body ended before the closing delimiter.
        """
        if self._in_preamble:
            raise MalformedRequestError("body holds no multipart delimiter (wrong boundary?)")
        if not self._parts.complete:
            raise MalformedRequestError("body ends before the closing multipart delimiter")

    def _open(self, data: bytes) -> bytes:
        """Skip the preamble and read the first delimiter line; what follows it.

        The delimiter line is passed on without its transport padding (RFC 2046 allows
        blanks before the line end), which python-multipart refuses on the first one.
        """
        buffer = self._opening
        buffer += data
        if self._in_preamble:
            at = buffer.find(self._delimiter)
            if at < 0:
                del buffer[: max(0, len(buffer) - len(self._delimiter) + 1)]
                return b""
            del buffer[: at + len(self._delimiter)]
            self._in_preamble = False
        if len(buffer) < 2:
            return b""
        if buffer.startswith(b"--"):
            self._parts.complete = True  # a body without parts
            return b""
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > _MAX_BOUNDARY_LINE:
                raise MalformedRequestError("malformed multipart delimiter line")
            return b""
        if buffer[:end].strip(b" \t"):
            raise MalformedRequestError("malformed multipart delimiter line")
        self._opened = True
        rest = self._dash_boundary + bytes(buffer[end:])
        buffer.clear()
        return rest

    def _write(self, data: bytes) -> None:
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            if self._parts.in_headers:
                raise MalformedRequestError("malformed multipart part header") from exc
            raise MalformedRequestError("malformed multipart delimiter line") from exc


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
