"""A stored instance re-encoded in another transfer syntax, losslessly (PS3.18 8.7.3: a
WADO-RS client names the syntax it wants; PS3.18 8.7.3.5: never Implicit VR Little Endian).

Targets: Explicit VR Little Endian (native pixels; from any syntax radserve decodes), and
the lossless compressed syntaxes pydicom's encoders write: RLE Lossless, JPEG-LS Lossless
and JPEG 2000 Lossless. An instance without pixel data (an SR, an RT Structure Set) is
re-encoded as Explicit VR Little Endian whatever the target. A lossy stored instance is
decoded to native pixels for Explicit VR Little Endian (the pixels as stored, no further
loss) but never re-encoded into a lossless syntax, which would claim a fidelity it lacks.

One instance is in memory at a time: its data set and its decoded pixels, at most
``max_bytes`` of them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid as pydicom_uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.encoders.base import get_encoder

from radserve.dicom_io.errors import DicomIOError, InstanceTooLargeError
from radserve.dicom_io.frames import (
    PixelLayout,
    can_decode,
    decode_frame_array,
    native_bytes,
    read_pixel_layout,
    read_pixel_value,
)
from radserve.dicom_io.reading.transfer_syntax import transfer_syntax_name

EXPLICIT_VR_LITTLE_ENDIAN = str(pydicom_uid.ExplicitVRLittleEndian)
IMPLICIT_VR_LITTLE_ENDIAN = str(pydicom_uid.ImplicitVRLittleEndian)
# The lossless compressed syntaxes radserve writes, and the encoder plugin each needs.
LOSSLESS_ENCODERS = {
    str(pydicom_uid.RLELossless): "pydicom",
    str(pydicom_uid.JPEGLSLossless): "pyjpegls",
    str(pydicom_uid.JPEG2000Lossless): "pylibjpeg",
}
TRANSCODE_TARGETS = (EXPLICIT_VR_LITTLE_ENDIAN, *LOSSLESS_ENCODERS)
_LOSSLESS_SOURCES = frozenset(
    {
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_LITTLE_ENDIAN,
        str(pydicom_uid.ExplicitVRBigEndian),
        str(pydicom_uid.DeflatedExplicitVRLittleEndian),
        str(pydicom_uid.RLELossless),
        str(pydicom_uid.JPEGLossless),
        str(pydicom_uid.JPEGLosslessSV1),
        str(pydicom_uid.JPEGLSLossless),
        str(pydicom_uid.JPEG2000Lossless),
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
        "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
        "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
    }
)


class TranscodingError(DicomIOError):
    """The instance cannot be sent in the transfer syntax asked for."""


def web_transfer_syntax(stored: str) -> str:
    """The syntax an instance stored as ``stored`` is sent in "as stored": itself, except
    Implicit VR Little Endian, which the web never gets (Explicit VR Little Endian)."""
    return EXPLICIT_VR_LITTLE_ENDIAN if stored == IMPLICIT_VR_LITTLE_ENDIAN else stored


def transcode_problem(
    path: Path, stored: str, target: str, *, max_bytes: int | None = None
) -> str | None:
    """Why the instance at ``path`` (stored as ``stored``) cannot be sent as ``target``,
    or ``None`` when it can (cheap: reads the header only); ``max_bytes`` bounds its
    decoded pixels."""
    if target == stored:
        return None
    if target not in TRANSCODE_TARGETS:
        return f"radserve does not write {transfer_syntax_name(target)}"
    layout = read_pixel_layout(path)
    if layout is None:
        return None
    if layout.encapsulated and not can_decode(layout):
        return f"no codec is installed to decode {transfer_syntax_name(stored)}"
    decoded = layout.native_frame_bytes * layout.number_of_frames
    if max_bytes is not None and layout.encapsulated and decoded > max_bytes:
        return f"its decoded pixel data ({decoded} bytes) is larger than the limit of {max_bytes}"
    if target != EXPLICIT_VR_LITTLE_ENDIAN:
        if stored not in _LOSSLESS_SOURCES:
            return f"a lossy {transfer_syntax_name(stored)} instance is not re-encoded losslessly"
        if target != str(pydicom_uid.RLELossless) and layout.bits > 16:
            return f"{transfer_syntax_name(target)} takes at most 16 bits a sample"
        if layout.bits == 1:
            return "1-bit pixel data is sent native or as stored"
    return None


def transcode(path: Path, target: str, *, max_bytes: int) -> bytes:
    """The instance at ``path`` as a DICOM file in ``target`` (see the module).

    Raises:
        TranscodingError: It cannot be (see :func:`transcode_problem`).
        InstanceTooLargeError: Its decoded pixels exceed ``max_bytes``.
    """
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    stored = str(ds.file_meta.TransferSyntaxUID)
    problem = transcode_problem(path, stored, target)
    if problem is not None:
        raise TranscodingError(problem)
    layout = read_pixel_layout(path)
    if layout is None or (target == EXPLICIT_VR_LITTLE_ENDIAN and layout.seekable):
        # No pixels, or native little endian ones: the data set as it is, re-encoded.
        return _encode(pydicom.dcmread(path), EXPLICIT_VR_LITTLE_ENDIAN)
    frames = _decoded_frames(path, layout, max_bytes=max_bytes)
    if layout.encapsulated and int(layout.pixel["samples_per_pixel"]) == 3:
        ds.PhotometricInterpretation = "RGB"  # pydicom's decoders give RGB
        ds.PlanarConfiguration = 0
    if target == EXPLICIT_VR_LITTLE_ENDIAN:
        if layout.bits == 1:  # the frames' bits run on from one frame to the next
            ds.PixelData = native_bytes(np.concatenate([f.ravel() for f in frames]), 1)
        else:
            ds.PixelData = b"".join(native_bytes(frame, layout.bits) for frame in frames)
        ds["PixelData"].VR = "OB" if layout.bits <= 8 else "OW"
        return _encode(ds, target)
    array = np.stack(frames) if len(frames) > 1 else frames[0]
    ds.PixelData = native_bytes(array, layout.bits)
    ds["PixelData"].VR = "OB" if layout.bits <= 8 else "OW"
    _set_meta(ds, EXPLICIT_VR_LITTLE_ENDIAN)
    try:
        ds.compress(target, array, encoding_plugin=LOSSLESS_ENCODERS[target])
    except Exception as exc:  # the encoders raise many types
        raise TranscodingError(f"cannot encode as {transfer_syntax_name(target)}: {exc}") from exc
    return _encode(ds, target)


def frame_encoding_problem(layout: PixelLayout, target: str) -> str | None:
    """Why frames of ``layout`` cannot be re-encoded as ``target`` (one of
    :data:`LOSSLESS_ENCODERS`), or ``None`` when they can."""
    if target not in LOSSLESS_ENCODERS:
        return f"radserve does not write {transfer_syntax_name(target)}"
    if layout.encapsulated and not can_decode(layout):
        return f"no codec is installed to decode {transfer_syntax_name(layout.transfer_syntax_uid)}"
    if layout.transfer_syntax_uid not in _LOSSLESS_SOURCES:
        return "a lossy frame is not re-encoded losslessly"
    if layout.bits == 1 or (target != str(pydicom_uid.RLELossless) and layout.bits > 16):
        return f"{transfer_syntax_name(target)} does not take {layout.bits}-bit samples here"
    return None


def encode_frame(frame: np.ndarray, layout: PixelLayout, target: str) -> bytes:
    """One decoded frame (as :func:`~radserve.dicom_io.decode_frame_array` gives it) as a
    ``target`` codestream, losslessly (decoded colour is RGB).

    Raises:
        TranscodingError: The encoder refuses it (see :func:`frame_encoding_problem`).
    """
    problem = frame_encoding_problem(layout, target)
    if problem is not None:
        raise TranscodingError(problem)
    pixel = layout.pixel
    samples = int(pixel["samples_per_pixel"])
    photometric = (
        "RGB" if layout.encapsulated and samples == 3 else str(pixel["photometric_interpretation"])
    )
    try:
        data: bytes = get_encoder(target).encode(
            np.ascontiguousarray(frame),
            encoding_plugin=LOSSLESS_ENCODERS[target],
            rows=int(pixel["rows"]),
            columns=int(pixel["columns"]),
            samples_per_pixel=samples,
            bits_allocated=layout.bits,
            bits_stored=int(pixel["bits_stored"]),
            pixel_representation=int(pixel["pixel_representation"]),
            photometric_interpretation=photometric,
            planar_configuration=0,
            number_of_frames=1,
        )
    except Exception as exc:  # the encoders raise many types
        raise TranscodingError(f"cannot encode as {transfer_syntax_name(target)}: {exc}") from exc
    return data


def native_pixel_data(path: Path, *, max_bytes: int) -> bytes | None:
    """The instance's Pixel Data as native little endian bytes, every frame (decoded when
    compressed; 1-bit frames packed on from one to the next); ``None`` without pixel data.

    Raises:
        TranscodingError: No codec decodes its syntax.
        InstanceTooLargeError: The decoded pixels exceed ``max_bytes``.
    """
    layout = read_pixel_layout(path)
    if layout is None:
        return None
    if not layout.encapsulated and layout.seekable:
        return read_pixel_value(path, layout)
    if layout.encapsulated and not can_decode(layout):
        raise TranscodingError(
            f"no codec is installed to decode {transfer_syntax_name(layout.transfer_syntax_uid)}"
        )
    frames = _decoded_frames(path, layout, max_bytes=max_bytes)
    if layout.bits == 1:
        return native_bytes(np.concatenate([f.ravel() for f in frames]), 1)
    return b"".join(native_bytes(frame, layout.bits) for frame in frames)


def _decoded_frames(path: Path, layout: PixelLayout, *, max_bytes: int) -> list[np.ndarray]:
    decoded = layout.native_frame_bytes * layout.number_of_frames
    if decoded > max_bytes:
        raise InstanceTooLargeError(
            f"the decoded pixel data ({decoded} bytes) is larger than the limit of {max_bytes}"
        )
    return [decode_frame_array(path, layout, k) for k in range(layout.number_of_frames)]


def _set_meta(ds: Dataset, transfer_syntax_uid: str) -> None:
    meta = ds.file_meta if hasattr(ds, "file_meta") else FileMetaDataset()
    meta.TransferSyntaxUID = pydicom_uid.UID(transfer_syntax_uid)
    ds.file_meta = meta


def _encode(ds: Dataset, transfer_syntax_uid: str) -> bytes:
    _set_meta(ds, transfer_syntax_uid)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
