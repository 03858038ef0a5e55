"""WADO-RS instances in the transfer syntax asked for (PS3.18 8.7.3.5, Table 8.7.3-5):
Explicit VR Little Endian by default, as stored for ``transfer-syntax=*`` but never Implicit
VR Little Endian, the lossless syntaxes radserve writes on request, 406 otherwise. The
bundled CT is stored in Implicit VR Little Endian, as older modalities and PACS send."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from radserve.dicom_io import ValidatorReport

from .conftest import auth, dicom_bytes, instance_path, multipart_parts, stow

pytestmark = pytest.mark.anyio

READ = auth("reader")
DICOM = 'multipart/related; type="application/dicom"'


async def _retrieve(
    client: httpx.AsyncClient, path: str, accept: str | None = None
) -> httpx.Response:
    headers = {**READ, **({"Accept": accept} if accept else {})}
    return await client.get(path, headers=headers)


def _assert_decodes_to(frame: bytes, syntax: str, stored: pydicom.Dataset) -> None:
    """``frame``, a codestream in ``syntax``, decodes to the single frame of ``stored``."""
    decoded = get_decoder(syntax).as_array(
        encapsulate([frame]),
        rows=stored.Rows,
        columns=stored.Columns,
        samples_per_pixel=1,
        bits_allocated=16,
        bits_stored=int(stored.BitsStored),
        pixel_representation=int(stored.PixelRepresentation),
        photometric_interpretation=str(stored.PhotometricInterpretation),
        number_of_frames=1,
        transfer_syntax_uid=syntax,
    )[0]
    np.testing.assert_array_equal(decoded.reshape(stored.pixel_array.shape), stored.pixel_array)


def _instances(response: httpx.Response) -> list[tuple[str, pydicom.Dataset, bytes]]:
    """(part transfer syntax, data set, bytes) of each part."""
    assert response.status_code == 200, response.text
    parts = []
    for headers, data in multipart_parts(response):
        media_type, _, syntax = headers["content-type"].partition("; transfer-syntax=")
        assert media_type == "application/dicom"
        parts.append((syntax, pydicom.dcmread(io.BytesIO(data)), data))
    return parts


async def test_the_default_is_explicit_vr_little_endian_with_the_same_pixels(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    stored = pydicom.dcmread(demo_stored[0])
    assert stored.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    for accept in (None, "*/*", DICOM, f"{DICOM}; transfer-syntax={ExplicitVRLittleEndian}"):
        [(syntax, ds, _)] = _instances(await _retrieve(client, instance_path(stored), accept))
        assert syntax == ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian, accept
        np.testing.assert_array_equal(ds.pixel_array, stored.pixel_array)
        assert ds.SOPInstanceUID == stored.SOPInstanceUID and ds.PatientID == stored.PatientID


async def test_as_stored_never_sends_implicit_vr_and_keeps_other_files_verbatim(
    client: httpx.AsyncClient, demo_stored: list[Path], demo_files: list[Path]
) -> None:
    first = pydicom.dcmread(demo_files[1])
    first.SOPInstanceUID = first.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    first.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    jpeg_ls = dicom_bytes(first)
    await stow(client, [jpeg_ls])
    implicit = pydicom.dcmread(demo_stored[0], stop_before_pixels=True)
    [(syntax, sent, _)] = _instances(
        await _retrieve(client, instance_path(implicit), f"{DICOM}; transfer-syntax=*")
    )
    assert syntax == sent.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    [(syntax, _, data)] = _instances(
        await _retrieve(client, instance_path(first), f"{DICOM}; transfer-syntax=*")
    )
    assert syntax == JPEGLSLossless and data == jpeg_ls  # the stored file, byte for byte


@pytest.mark.parametrize("target", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
async def test_lossless_syntaxes_on_request_hold_the_same_pixels(
    client: httpx.AsyncClient,
    demo_stored: list[Path],
    tmp_path: Path,
    target: str,
    dciodvfy: Callable[[Path], ValidatorReport],
) -> None:
    stored = pydicom.dcmread(demo_stored[0])
    response = await _retrieve(client, instance_path(stored), f"{DICOM}; transfer-syntax={target}")
    [(syntax, ds, data)] = _instances(response)
    assert syntax == ds.file_meta.TransferSyntaxUID == target
    np.testing.assert_array_equal(ds.pixel_array, stored.pixel_array)  # lossless
    (tmp_path / "out.dcm").write_bytes(data)
    source_errors = set(dciodvfy(demo_stored[0]).errors)
    assert [e for e in dciodvfy(tmp_path / "out.dcm").errors if e not in source_errors] == []


async def test_a_series_mixing_syntaxes_and_an_object_without_pixels(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    rtstruct = pydicom.dcmread(demo_stored[-1], stop_before_pixels=True)
    assert rtstruct.Modality == "RTSTRUCT"
    path = f"/dicomweb/studies/{rtstruct.StudyInstanceUID}"
    parts = _instances(await _retrieve(client, path, f"{DICOM}; transfer-syntax={RLELossless}"))
    assert len(parts) == len(demo_stored)
    by_modality = {ds.Modality: syntax for syntax, ds, _ in parts}
    assert by_modality == {"CT": RLELossless, "RTSTRUCT": RLELossless}
    [rt] = [ds for _, ds, _ in parts if ds.Modality == "RTSTRUCT"]
    assert rt.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # no pixels to compress


async def test_what_cannot_be_sent_is_406_naming_it(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    stored = pydicom.dcmread(demo_stored[0], stop_before_pixels=True)
    for syntax in (ImplicitVRLittleEndian, JPEGLSNearLossless, "1.2.3.4"):
        response = await _retrieve(
            client, instance_path(stored), f"{DICOM}; transfer-syntax={syntax}"
        )
        assert response.status_code == 406, syntax
        assert "offered:" in response.json()["error"]
    with_q = f"{DICOM}; transfer-syntax={JPEGLSLossless}; q=0.5, {DICOM}; q=0.9"
    [(syntax, _, _)] = _instances(await _retrieve(client, instance_path(stored), with_q))
    assert syntax == ExplicitVRLittleEndian  # the higher q


async def test_the_bulk_data_of_instances_is_their_native_pixel_data(
    client: httpx.AsyncClient, demo_stored: list[Path], demo_files: list[Path]
) -> None:
    """PS3.18 Table 8.7.3-2: ``multipart/related; type="application/octet-stream"`` on a
    Study, Series or Instance resource; here one part per instance with pixels (the RT
    Structure Set has none), native even where the instance is stored compressed."""
    octet = 'multipart/related; type="application/octet-stream"'
    stored = pydicom.dcmread(demo_stored[0])
    response = await _retrieve(client, instance_path(stored), octet)
    assert response.status_code == 200, response.text
    [(headers, data)] = multipart_parts(response)
    assert (
        headers["content-type"]
        == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    )
    assert data == stored.PixelData
    study = await _retrieve(client, f"/dicomweb/studies/{stored.StudyInstanceUID}", octet)
    assert len(multipart_parts(study)) == len(demo_stored) - 1
    compressed = pydicom.dcmread(demo_files[2])
    compressed.SOPInstanceUID = compressed.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    expected = compressed.pixel_array.astype("<i2").tobytes()
    compressed.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    await stow(client, [dicom_bytes(compressed)])
    [(_, data)] = multipart_parts(await _retrieve(client, instance_path(compressed), octet))
    assert data == expected


@pytest.mark.parametrize(
    ("media_type", "target"),
    [
        ("image/jls", JPEGLSLossless),
        ("image/jp2", JPEG2000Lossless),
        ("image/dicom-rle", RLELossless),
        ("application/octet-stream", JPEGLSLossless),
    ],
)
async def test_frames_are_re_encoded_losslessly_on_request(
    client: httpx.AsyncClient, demo_stored: list[Path], media_type: str, target: str
) -> None:
    """PS3.18 8.7.3.5 for frames: a syntax radserve writes, asked for by media type and
    transfer-syntax; decoding the frame gives the stored pixels back."""
    stored = pydicom.dcmread(demo_stored[0])
    accept = f'multipart/related; type="{media_type}"; transfer-syntax={target}'
    response = await _retrieve(client, f"{instance_path(stored)}/frames/1", accept)
    assert response.status_code == 200, response.text
    [(headers, data)] = multipart_parts(response)
    assert headers["content-type"] == f"{media_type}; transfer-syntax={target}"
    _assert_decodes_to(data, target, stored)
    near = f'multipart/related; type="image/jls"; transfer-syntax={JPEGLSNearLossless}'
    refused = await _retrieve(client, f"{instance_path(stored)}/frames/1", near)
    assert refused.status_code == 406


async def test_pixel_bulk_data_is_re_encoded_on_request(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    """PS3.18 8.7.3.3.2: compressed bulk data, a part per frame; here JPEG-LS Lossless of a
    native CT, which decodes to the stored pixels."""
    stored = pydicom.dcmread(demo_stored[0])
    accept = f'multipart/related; type="image/jls"; transfer-syntax={JPEGLSLossless}'
    response = await _retrieve(client, f"{instance_path(stored)}/bulkdata/7FE00010", accept)
    [(headers, data)] = multipart_parts(response)
    assert headers["content-type"] == f"image/jls; transfer-syntax={JPEGLSLossless}"
    _assert_decodes_to(data, JPEGLSLossless, stored)
    native = await _retrieve(client, f"{instance_path(stored)}/bulkdata/7FE00010")
    [(_, value)] = multipart_parts(native)
    assert value == stored.PixelData
