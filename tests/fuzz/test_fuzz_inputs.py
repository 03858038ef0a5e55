"""Property-based fuzzing (hypothesis) of the parsers every untrusted byte goes through: the
multipart parser, the DICOM reader, STOW-RS end to end and the jobs API's JSON body.

Bounded for ``make test`` (a few hundred examples in all, derandomized so that a failure
reproduces); ``RADSERVE_FUZZ_EXAMPLES`` sets the count for a long, random run. The properties: no
exception other than the documented ones, no 5xx, nothing stored from a refused part, no
staging file left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import tempfile
from pathlib import Path

import httpx
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radserve.dicom_io import DicomIOError, read_instance
from radserve.server import (
    MalformedRequestError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    create_app,
)
from tests.conftest import DEMO_STUDY
from tests.server.routes.conftest import BOUNDARY, DICOM_MULTIPART, auth, make_settings, multipart

EXAMPLES = int(os.environ.get("RADSERVE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="RADSERVE_FUZZ_EXAMPLES" not in os.environ,  # a long run explores anew
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEED_FILE = sorted((DEMO_STUDY / "image").glob("*.dcm"))[0]
SEED = SEED_FILE.read_bytes()


def _parse(body: bytes, cuts: list[int]) -> list[tuple[str, bytes]]:
    """The parts of ``body`` fed in pieces cut at ``cuts``: (content type, data)."""
    parser = MultipartParser(BOUNDARY)
    parts: list[tuple[str, bytes]] = []
    data = bytearray()
    content_type = ""
    edges = sorted({0, *[c % (len(body) + 1) for c in cuts], len(body)})
    for start, end in itertools.pairwise(edges):
        for event in parser.feed(body[start:end]):
            if isinstance(event, PartStart):
                content_type, data = event.headers.get("content-type", ""), bytearray()
            elif isinstance(event, PartData):
                data += event.data
            elif isinstance(event, PartEnd):
                parts.append((content_type, bytes(data)))
    parser.close()
    return parts


@FUZZ
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_multipart_parts_come_back_whatever_the_chunking(
    payloads: list[bytes], cuts: list[int]
) -> None:
    body = multipart(payloads)
    assert [data for _, data in _parse(body, cuts)] == payloads


@FUZZ
@given(body=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_multipart_garbage_is_a_malformed_request_or_parts(body: bytes, cuts: list[int]) -> None:
    with contextlib.suppress(MalformedRequestError):
        _parse(body, cuts)


@st.composite
def _mutated_instance(draw: st.DrawFn) -> bytes:
    data = bytearray(SEED[: draw(st.integers(0, len(SEED)))])
    for _ in range(draw(st.integers(0, 8))):
        if data:
            position = draw(st.integers(0, len(data) - 1))
            data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()) and len(data) > 140:
        position = draw(st.integers(132, len(data) - 1))
        data[position:position] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@FUZZ
@given(data=_mutated_instance())
def test_the_dicom_reader_raises_only_its_own_errors(data: bytes) -> None:
    with contextlib.suppress(DicomIOError):
        read_instance(data, max_bytes=4 * 1024 * 1024)


def test_the_seed_instance_reads() -> None:
    assert pydicom.dcmread(io.BytesIO(SEED)).SOPInstanceUID


async def _stow_once(parts: list[bytes]) -> tuple[int, int, int]:
    """STOW ``parts`` to a fresh server: (status, instances stored, staging files left)."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(make_settings(Path(tmp), max_request_bytes=8 * 1024 * 1024))
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    "/dicomweb/studies",
                    content=multipart(parts),
                    headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART},
                )
            store = app.state.radserve.store
            stored = len(list((store.data_dir / "instances").rglob("*.dcm")))
            left = len(list((store.data_dir / "tmp").iterdir()))
            referenced = response.json().get("00081199", {}).get("Value", [])
            acknowledged = {item["00081155"]["Value"][0] for item in referenced}
            # An identical re-send in the same request is acknowledged again, stored once.
            assert stored == len(acknowledged), "stored instances differ from those acknowledged"
            return response.status_code, stored, left
        finally:
            app.state.radserve.store.close()


@FUZZ
@given(parts=st.lists(_mutated_instance(), min_size=1, max_size=3))
def test_stow_of_hostile_parts_never_answers_5xx(parts: list[bytes]) -> None:
    status, _, left = asyncio.run(_stow_once(parts))
    assert status in (200, 202, 400, 409), status
    assert left == 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=12,
)
_JOB_KEYS = ["study_instance_uid", "series_instance_uid", "model", "destinations", "source"]


async def _post_jobs(bodies: list[bytes]) -> list[int]:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(make_settings(Path(tmp)))
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return [
                    (
                        await client.post("/jobs", content=body, headers=auth("submitter"))
                    ).status_code
                    for body in bodies
                ]
        finally:
            app.state.radserve.store.close()


@FUZZ
@given(values=st.dictionaries(st.sampled_from(_JOB_KEYS) | st.text(max_size=10), _JSON, max_size=6))
def test_hostile_job_bodies_get_4xx(values: dict[str, object]) -> None:
    body = json.dumps(values, allow_nan=True).encode()
    for status in asyncio.run(_post_jobs([body, body[: len(body) // 2]])):
        assert 400 <= status < 500, status


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


_JSON_BOUNDARY = "radserve-json-fuzz"


async def _stow_json_once(metadata: bytes, bulk: list[bytes]) -> tuple[int, int]:
    """STOW of DICOM JSON ``metadata`` with ``bulk`` parts: (status, staging files left)."""
    chunks = [
        f"--{_JSON_BOUNDARY}\r\nContent-Type: application/dicom+json\r\n\r\n".encode()
        + metadata
        + b"\r\n"
    ]
    for k, data in enumerate(bulk):
        head = (
            f"--{_JSON_BOUNDARY}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Location: bulk/{k}\r\n\r\n"
        )
        chunks.append(head.encode() + data + b"\r\n")
    body = b"".join(chunks) + f"--{_JSON_BOUNDARY}--\r\n".encode()
    content_type = f'multipart/related; type="application/dicom+json"; boundary={_JSON_BOUNDARY}'
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(make_settings(Path(tmp)))
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    "/dicomweb/studies",
                    content=body,
                    headers={**auth("submitter"), "Content-Type": content_type},
                )
            left = len(list((app.state.radserve.store.data_dir / "tmp").iterdir()))
            return response.status_code, left
        finally:
            app.state.radserve.store.close()


_SEED_JSON = pydicom.dcmread(io.BytesIO(SEED), stop_before_pixels=True).to_json_dict()
_DICOM_JSON_ITEM = st.fixed_dictionaries(
    {},
    optional={
        tag: st.one_of(st.just(value), _JSON, st.just({"vr": "OB", "BulkDataURI": "bulk/0"}))
        for tag, value in list(_SEED_JSON.items())[:12]
    },
)


@FUZZ
@given(
    items=st.lists(_DICOM_JSON_ITEM | _JSON, max_size=3),
    bulk=st.lists(st.binary(max_size=64), max_size=2),
    nesting=st.integers(0, 3000),
)
def test_stow_of_hostile_json_metadata_never_answers_5xx(
    items: list[object], bulk: list[bytes], nesting: int
) -> None:
    """STOW-RS of DICOM JSON (PS3.18 10.5.1.2.2): mutated data sets, garbage, deep nesting."""
    metadata = json.dumps(items).encode() if nesting < 2000 else b"[" * nesting * 50
    status, left = asyncio.run(_stow_json_once(metadata, bulk))
    assert status in (200, 202, 400, 409), status
    assert left == 0
