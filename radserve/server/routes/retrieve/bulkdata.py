"""Bulk data of an instance, by the tag path of a ``BulkDataURI`` (PS3.18 10.4.1.1.3).

``.../bulkdata/7FE00010`` is the Pixel Data; ``.../bulkdata/00089215/0/00081160`` a value in
item 0 of a sequence. The answer is ``multipart/related`` (PS3.18 8.7.3.3):

* native Pixel Data and other binary values: one ``application/octet-stream`` part holding
  the whole value, as stored (Explicit VR Little Endian byte order);
* encapsulated Pixel Data: PS3.18 8.7.3.3.2 (compressed bulk data) sends each frame as its
  own part in the stored transfer syntax, the frame's compressed bitstream without the
  item encapsulation; where the Accept header asks for uncompressed bulk data, the frames
  are decoded and sent as one native value;
* Pixel Data asked for in another lossless syntax radserve writes (RLE, JPEG-LS, JPEG 2000
  Lossless): a part per frame, re-encoded (as for frames).

A tag the instance does not have answers 404.
"""

from __future__ import annotations

import re

from fastapi import Response
from pydicom.dataset import Dataset

from radserve.dicom_io import (
    PIXEL_DATA_TAG,
    native_pixel_data,
    read_instance,
)
from radserve.server.errors import ResourceNotFoundError
from radserve.server.routes.retrieve.accept import MULTIPART, Offer, negotiate
from radserve.server.routes.retrieve.instances import BINARY_VRS
from radserve.server.routes.retrieve.pixels import (
    NATIVE_OFFER,
    OCTET_STREAM,
    choose_frame_offer,
    image_layout,
    iter_frames,
)
from radserve.server.routes.retrieve.responses import multipart_response
from radserve.server.store.batch import StoredInstance

_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_VALUE_OFFER = Offer(MULTIPART, OCTET_STREAM)


def _parse_path(tag_path: str) -> list[str]:
    parts = tag_path.strip("/").split("/")
    valid = len(parts) % 2 == 1 and all(
        _TAG.fullmatch(p) if k % 2 == 0 else p.isdecimal() for k, p in enumerate(parts)
    )
    if not valid:
        raise ResourceNotFoundError(
            "no such bulk data: the path is not tags (8 hex digits) and item indices"
        )
    return parts


def bulkdata_response(
    accept: str | None, instance: StoredInstance, tag_path: str, *, max_bytes: int
) -> Response:
    """The bulk data value at ``tag_path`` of an instance.

    Raises:
        ResourceNotFoundError: The instance has no such value.
        NotAcceptableError: It cannot be sent as the Accept header asks.
    """
    parts = _parse_path(tag_path)
    if len(parts) == 1 and int(parts[0], 16) == PIXEL_DATA_TAG:
        return _pixel_data(accept, instance, max_bytes=max_bytes)
    negotiate(accept, [_VALUE_OFFER], default=_VALUE_OFFER)
    ds = read_instance(instance.path, stop_before_pixels=False, max_bytes=max_bytes)
    value = _find(ds, parts)
    return multipart_response(OCTET_STREAM, [(OCTET_STREAM, value)])


def _find(ds: Dataset, parts: list[str]) -> bytes:
    missing = ResourceNotFoundError(f"the instance has no bulk data at {'/'.join(parts)}")
    for k in range(0, len(parts) - 1, 2):
        tag, index = int(parts[k], 16), int(parts[k + 1])
        element = ds.get(tag)
        if element is None or element.VR != "SQ" or index >= len(element.value):
            raise missing
        ds = element.value[index]
    element = ds.get(int(parts[-1], 16))
    if element is None or element.VR not in BINARY_VRS or element.value is None:
        raise missing
    return bytes(element.value)


def _pixel_data(accept: str | None, instance: StoredInstance, *, max_bytes: int) -> Response:
    """The Pixel Data: native in one part (decoded where stored compressed), or a part per
    frame as stored or re-encoded (the frames' negotiation, :func:`choose_frame_offer`)."""
    layout = image_layout(instance)
    offer = choose_frame_offer(accept, layout)
    if offer == NATIVE_OFFER:
        value = native_pixel_data(instance.path, max_bytes=max_bytes) or b""
        return multipart_response(OCTET_STREAM, [(offer.part_content_type, value)])
    frames = iter_frames(instance.path, layout, offer, range(layout.number_of_frames))
    return multipart_response(str(offer.part_type), ((offer.part_content_type, f) for f in frames))
