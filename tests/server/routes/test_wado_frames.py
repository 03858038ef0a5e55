"""WADO-RS frames (PS3.18 10.4.1.1.3) over the ASGI app: native, 1-bit SEG and compressed."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.encaps import get_frame
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, generate_uid

from radserve.dicom_io import AlgorithmIdentity, LabelMap, SegmentInfo, read_image_series, write_seg
from radserve.server import Offer, negotiate

from .conftest import auth, dicom_bytes, instance_path, multipart_parts, stow

pytestmark = pytest.mark.anyio

READ = auth("reader")
NATIVE = "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
ANY_SYNTAX = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
ALGORITHM = AlgorithmIdentity(name="frames-test", version="1.0.0", model_sha256="cd" * 32)


async def _frames(
    client: httpx.AsyncClient, ds: pydicom.Dataset, frames: str, accept: str | None = None
) -> httpx.Response:
    headers = {**READ, **({"Accept": accept} if accept else {})}
    return await client.get(f"{instance_path(ds)}/frames/{frames}", headers=headers)


def _copy_with_new_uids(path: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


async def test_native_ct_frames_are_the_stored_pixels(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    for path in demo_stored[:3]:
        ds = pydicom.dcmread(path)
        expected = ds.pixel_array.astype("<i2").tobytes()
        for accept in (None, "*/*", 'multipart/related; type="application/octet-stream"'):
            response = await _frames(client, ds, "1", accept)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(
                'multipart/related; type="application/octet-stream"; boundary='
            )
            [(headers, data)] = multipart_parts(response)
            assert headers["content-type"] == NATIVE
            assert data == expected
        repeated = multipart_parts(await _frames(client, ds, "1,1", ANY_SYNTAX))
        assert [d for _, d in repeated] == [expected, expected]


@pytest.fixture
async def seg(client: httpx.AsyncClient, demo_study: Path, tmp_path: Path) -> Path:
    """A BINARY SEG of the demo CT (143 x 161: frames do not end on byte boundaries), stored."""
    series = read_image_series(demo_study / "image")
    array = np.asarray(series.volume.array)
    labels = np.zeros(array.shape, dtype=np.int64)
    labels[array > 200] = 1
    labels[(array > -200) & (array < -50)] = 2
    labelmap = LabelMap(
        series.volume.with_array(labels), (SegmentInfo(1, "Bone"), SegmentInfo(2, "Fat"))
    )
    path = tmp_path / "seg.dcm"
    write_seg(series, labelmap, algorithm=ALGORITHM).save_as(path, enforce_file_format=True)
    await stow(client, [path.read_bytes()])
    return path


async def test_seg_frames_are_repacked_from_bit_zero(client: httpx.AsyncClient, seg: Path) -> None:
    ds = pydicom.dcmread(seg)
    frames = int(ds.NumberOfFrames)
    assert ds.BitsAllocated == 1 and (ds.Rows * ds.Columns) % 8 != 0 and frames > 8
    order = list(range(frames, 0, -1))  # reversed: the order asked is kept
    response = await _frames(client, ds, ",".join(map(str, order)))
    assert response.status_code == 200, response.text
    parts = multipart_parts(response)
    assert len(parts) == frames
    # pydicom's decode of the whole Pixel Data (its one-frame read, pixel_array(index=),
    # mis-cuts 1-bit frames that start inside a byte).
    whole = ds.pixel_array
    pixels = ds.Rows * ds.Columns
    for number, (headers, data) in zip(order, parts, strict=True):
        assert headers["content-type"] == NATIVE
        assert data == np.packbits(whole[number - 1].ravel(), bitorder="little").tobytes()
        assert len(data) == (pixels + 7) // 8
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        assert not bits[pixels:].any()  # the padding is zero bits
    assert any(whole[k].any() for k in range(frames))


@pytest.mark.parametrize(
    ("syntax", "image_type"),
    [(JPEGLSLossless, "image/jls"), (JPEG2000Lossless, "image/jp2")],
    ids=["jpeg-ls", "jpeg-2000"],
)
async def test_compressed_frames_as_stored_or_decoded(
    client: httpx.AsyncClient, demo_files: list[Path], syntax: str, image_type: str
) -> None:
    ds = _copy_with_new_uids(demo_files[10])
    native = ds.pixel_array.copy()
    ds.compress(syntax)
    await stow(client, [dicom_bytes(ds)])
    stored_frame = get_frame(ds.PixelData, 0, number_of_frames=1)

    [(headers, data)] = multipart_parts(await _frames(client, ds, "1", ANY_SYNTAX))
    assert headers["content-type"] == f"application/octet-stream; transfer-syntax={syntax}"
    assert data == stored_frame

    response = await _frames(client, ds, "1", f'multipart/related; type="{image_type}"')
    assert response.headers["content-type"].startswith(f'multipart/related; type="{image_type}"')
    [(headers, data)] = multipart_parts(response)
    assert headers["content-type"] == f"{image_type}; transfer-syntax={syntax}"
    assert data == stored_frame

    for accept in (None, 'multipart/related; type="application/octet-stream"'):
        [(headers, data)] = multipart_parts(await _frames(client, ds, "1", accept))
        assert headers["content-type"] == NATIVE
        assert data == native.astype("<i2").tobytes()

    preferred = (
        f'multipart/related; type="{image_type}"; q=0.4, '
        'multipart/related; type="application/octet-stream"; q=0.9'
    )
    [(headers, _)] = multipart_parts(await _frames(client, ds, "1", preferred))
    assert headers["content-type"] == NATIVE


async def test_bad_frame_lists_are_400_naming_them(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_stored[0], stop_before_pixels=True)
    for frames, named in (
        ("0", "0"),
        ("2", "2"),
        ("1,7,99", "7, 99"),
        ("1,abc", "'abc'"),
        ("-1", "'-1'"),
        ("1,,2", "''"),
    ):
        response = await _frames(client, ds, frames)
        assert response.status_code == 400, (frames, response.text)
        assert named in response.json()["error"]
    assert "1..1" in (await _frames(client, ds, "2")).json()["error"]


async def test_not_acceptable_and_non_images(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_stored[0], stop_before_pixels=True)
    # (image/jls of a native frame is JPEG-LS Lossless, encoded on request:
    # tests/server/routes/test_wado_transfer_syntax.py)
    for accept in ('multipart/related; type="image/jpx"', "image/png", "application/dicom"):
        response = await _frames(client, ds, "1", accept)
        assert response.status_code == 406, accept
        assert "offered: multipart/related" in response.json()["error"]
    refused = await _frames(
        client, ds, "1", 'multipart/related; type="application/octet-stream"; q=0'
    )
    assert refused.status_code == 406
    rtstruct = pydicom.dcmread(demo_stored[-1], stop_before_pixels=True)
    assert rtstruct.Modality == "RTSTRUCT"
    response = await _frames(client, rtstruct, "1")
    assert response.status_code == 404
    assert "no Pixel Data" in response.json()["error"]


def test_negotiation_rules() -> None:
    native = Offer("multipart/related", "application/octet-stream", "1.2.840.10008.1.2.1")
    jls = Offer("multipart/related", "image/jls", "1.2.840.10008.1.2.4.80")
    offers = [jls, native]
    assert negotiate(None, offers, default=native) == native
    assert negotiate("*/*", offers, default=native) == native
    assert negotiate('multipart/related; type="image/jls"', offers, default=native) == jls
    assert negotiate('multipart/related; type="image/*"', offers, default=native) == jls
    assert negotiate("multipart/related", offers, default=native) == native
    with_ts = 'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.81'
    with pytest.raises(Exception, match="offered"):
        negotiate(with_ts, offers, default=native)
    weighted = 'multipart/*; type="image/jls"; q=0.2, multipart/related; q=0.8'
    assert negotiate(weighted, offers, default=native) == native
    quoted = 'multipart/related; type="image/jls, x"; q=1, multipart/related; type="image/jls"'
    assert negotiate(quoted, offers, default=native) == jls
