"""The pixel data of stored instances: cached layouts, and the representations of frames.

A stored file never changes under its path while its size and modification time stay the
same, so its :class:`~radserve.dicom_io.PixelLayout` is cached on those: a frame request
then costs one ``stat``, one seek and one read.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from radserve.dicom_io import (
    LOSSLESS_ENCODERS,
    PixelLayout,
    can_decode,
    decode_frame_array,
    encode_frame,
    frame_encoding_problem,
    native_bytes,
    read_frame,
    read_pixel_layout,
)
from radserve.server.errors import NotAcceptableError, ResourceNotFoundError
from radserve.server.routes.retrieve.accept import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    MULTIPART,
    Offer,
    negotiate,
)
from radserve.server.store.batch import StoredInstance

OCTET_STREAM = "application/octet-stream"
LAYOUT_CACHE_SIZE = 4096
#: PS3.18 Table 8.7.3-5: the media type of a compressed frame, by transfer syntax.
IMAGE_TYPE_BY_TRANSFER_SYNTAX = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.110": "image/jxl",
    "1.2.840.10008.1.2.4.111": "image/jxl",
    "1.2.840.10008.1.2.4.112": "image/jxl",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
NATIVE_OFFER = Offer(MULTIPART, OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)


@functools.lru_cache(maxsize=LAYOUT_CACHE_SIZE)
def _cached_layout(path: str, size: int, mtime_ns: int) -> PixelLayout | None:
    return read_pixel_layout(path)


def pixel_layout(instance: StoredInstance) -> PixelLayout | None:
    """The Pixel Data layout of a stored instance (``None``: it has no Pixel Data)."""
    stat = os.stat(instance.path)
    return _cached_layout(str(instance.path), stat.st_size, stat.st_mtime_ns)


def image_layout(instance: StoredInstance) -> PixelLayout:
    """The layout of an image instance.

    Raises:
        ResourceNotFoundError: The instance has no Pixel Data (an SR, a KO, an RTSTRUCT).
    """
    layout = pixel_layout(instance)
    if layout is None:
        raise ResourceNotFoundError("the instance has no Pixel Data: it has no frames")
    return layout


def choose_frame_offer(accept: str | None, layout: PixelLayout) -> Offer:
    """The representation of frames to send.

    Native pixel data is sent as ``application/octet-stream`` in Explicit VR Little Endian.
    Encapsulated pixel data is sent as stored (the frame's media type or octet-stream, with
    the stored transfer syntax) where the Accept header allows it, else decoded to native;
    the default (no Accept, ``*/*``) is native where a codec decodes it. A lossless frame is
    also re-encoded, on request, in the lossless syntaxes radserve writes (RLE, JPEG-LS,
    JPEG 2000: :func:`~radserve.dicom_io.encode_frame`).

    Raises:
        NotAcceptableError: Neither is acceptable (or decoding is impossible).
    """
    encoded = [
        Offer(MULTIPART, media_type, uid)
        for uid in LOSSLESS_ENCODERS
        if uid != layout.transfer_syntax_uid and frame_encoding_problem(layout, uid) is None
        for media_type in (IMAGE_TYPE_BY_TRANSFER_SYNTAX[uid], OCTET_STREAM)
    ]
    if not layout.encapsulated:
        return negotiate(accept, [NATIVE_OFFER, *encoded], default=NATIVE_OFFER)
    uid = layout.transfer_syntax_uid
    image_type = IMAGE_TYPE_BY_TRANSFER_SYNTAX.get(uid)
    stored = [Offer(MULTIPART, t, uid) for t in (image_type, OCTET_STREAM) if t is not None]
    decodable = can_decode(layout)
    offers = [*stored, NATIVE_OFFER, *encoded] if decodable else stored
    try:
        return negotiate(accept, offers, default=NATIVE_OFFER if decodable else stored[-1])
    except NotAcceptableError as exc:
        if decodable:
            raise
        raise NotAcceptableError(
            f"{exc}; no codec is installed to decode transfer syntax {uid} to native pixels"
        ) from exc


def frame_bytes(path: Path, layout: PixelLayout, offer: Offer, index: int) -> bytes:
    """Frame ``index`` (from 0) in the representation of ``offer``."""
    target = offer.transfer_syntax_uid
    if target in LOSSLESS_ENCODERS and target != layout.transfer_syntax_uid:
        return encode_frame(decode_frame_array(path, layout, index), layout, str(target))
    if layout.encapsulated and target == EXPLICIT_VR_LITTLE_ENDIAN:
        return native_bytes(decode_frame_array(path, layout, index), layout.bits)
    return read_frame(path, layout, index)


def iter_frames(
    path: Path, layout: PixelLayout, offer: Offer, indices: Sequence[int]
) -> Iterator[bytes]:
    """The frames ``indices`` (from 0) in the representation of ``offer``."""
    for index in indices:
        yield frame_bytes(path, layout, offer, index)
