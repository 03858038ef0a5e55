"""The streaming multipart/related parser and media type parsing."""

from __future__ import annotations

import pytest

from radserve.server import (
    Event,
    MalformedRequestError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    closing_delimiter,
    parse_media_type,
    part_header,
)

from .conftest import BOUNDARY, multipart

PARTS = [b"first part", b"", b"\r\n--not-the-boundary\r\n" + bytes(range(256)) * 40]


def _parse(body: bytes, chunk: int) -> list[tuple[dict[str, str], bytes]]:
    parser = MultipartParser(BOUNDARY)
    events: list[Event] = []
    for start in range(0, len(body), chunk):
        events.extend(parser.feed(body[start : start + chunk]))
    parser.close()
    parts: list[tuple[dict[str, str], bytes]] = []
    for event in events:
        if isinstance(event, PartStart):
            parts.append((dict(event.headers), b""))
        elif isinstance(event, PartData):
            headers, data = parts[-1]
            parts[-1] = (headers, data + event.data)
        else:
            assert isinstance(event, PartEnd)
    return parts


@pytest.mark.parametrize("chunk", [1, 2, 7, 23, 64, 1000, 1 << 20])
def test_parts_survive_any_chunking(chunk: int) -> None:
    body = b"preamble to ignore\r\n" + multipart(PARTS) + b"epilogue to ignore"
    parts = _parse(body, chunk)
    assert [data for _, data in parts] == PARTS
    assert all(headers == {"content-type": "application/dicom"} for headers, _ in parts)


def test_headerless_parts_and_transport_padding() -> None:
    body = (
        f"--{BOUNDARY}  \r\n\r\nabc\r\n--{BOUNDARY}\t\r\nX-Other: 1\r\n\r\ndef\r\n--{BOUNDARY}--"
    ).encode()
    assert _parse(body, 5) == [({}, b"abc"), ({"x-other": "1"}, b"def")]


def test_memory_stays_bounded_while_streaming() -> None:
    parser = MultipartParser(BOUNDARY)
    parser.feed(f"--{BOUNDARY}\r\n\r\n".encode())
    total = 0
    for fed in range(1, 201):
        events = parser.feed(b"x" * 65536)
        total += sum(len(e.data) for e in events if isinstance(e, PartData))
        # Only what could be the start of a delimiter is held back between calls.
        assert fed * 65536 - total < len(BOUNDARY) + 8
    assert total > 200 * 65536 - 100


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (multipart([b"abc"])[:-10], "before the closing"),
        (b"no delimiter anywhere", "no multipart delimiter"),
        (f"--{BOUNDARY}\r\nno colon here\r\n\r\nabc".encode(), "malformed multipart part header"),
        (f"--{BOUNDARY}garbage\r\n\r\nabc".encode(), "delimiter line"),
        (f"--{BOUNDARY}\r\nX: {'y' * 20000}".encode(), "too large"),
        (f"--{BOUNDARY}\r\nX: {'y' * 200000}\r\n\r\nabc".encode(), "too large"),
        (f"--{BOUNDARY}\r\n".encode() + b"A: b\r\n" * 4000 + b"\r\nabc", "too large"),
        (f"--{BOUNDARY}\r\nX: \xff\r\n\r\nabc".encode("latin-1"), "not ASCII"),
        (f"--{BOUNDARY}\r\n\r\nabc\r\n--{BOUNDARY} x\r\n".encode(), "delimiter line"),
    ],
)
def test_malformed_bodies_are_refused(body: bytes, message: str) -> None:
    parser = MultipartParser(BOUNDARY)
    with pytest.raises(MalformedRequestError, match=message):
        parser.feed(body)
        parser.close()


def test_epilogue_and_empty_body_are_accepted() -> None:
    body = multipart([b"abc"]) + f"\r\n--{BOUNDARY}\r\nnot parsed".encode()
    assert _parse(body, 3) == [({"content-type": "application/dicom"}, b"abc")]
    assert _parse(f"--{BOUNDARY}--\r\n".encode(), 1) == []


@pytest.mark.parametrize("boundary", ["", "x" * 71, "bad\nboundary", "trailing "])
def test_invalid_boundaries_are_refused(boundary: str) -> None:
    with pytest.raises(MalformedRequestError, match="boundary"):
        MultipartParser(boundary)


def test_parse_media_type() -> None:
    media_type = parse_media_type(
        'Multipart/Related; type="application/dicom"; boundary=abc;transfer-syntax=*'
    )
    assert media_type.type == "multipart/related"
    assert dict(media_type.parameters) == {
        "type": "application/dicom",
        "boundary": "abc",
        "transfer-syntax": "*",
    }
    assert parse_media_type('a/b; q="x\\"y"').parameters["q"] == 'x"y'
    with pytest.raises(MalformedRequestError):
        parse_media_type("not a media type")
    with pytest.raises(MalformedRequestError):
        parse_media_type("a/b; broken")


def test_response_framing_parses_back() -> None:
    body = b"".join(
        part_header(BOUNDARY, "application/dicom", len(p)) + p + b"\r\n" for p in PARTS
    ) + closing_delimiter(BOUNDARY)
    parts = _parse(body, 100)
    assert [data for _, data in parts] == PARTS
    assert parts[2][0]["content-length"] == str(len(PARTS[2]))
