"""Instances in the transfer syntax asked for, and their metadata with bulk data URIs
(PS3.18 10.4.1.1.1-2).

Instances are sent in ``multipart/related; type="application/dicom"``, each part naming
its transfer syntax, negotiated by the Accept header (PS3.18 8.7.3.5):

* no ``transfer-syntax`` parameter (and no Accept header): Explicit VR Little Endian, the
  default of ``application/dicom`` (Table 8.7.3-5);
* ``transfer-syntax=*``: as stored, except that an instance stored in Implicit VR Little
  Endian is sent in Explicit VR Little Endian (the web never gets Implicit VR);
* a UID: that syntax, where radserve can write it losslessly
  (:data:`~radserve.dicom_io.TRANSCODE_TARGETS`, or the stored syntax itself).

An instance that cannot be sent as asked (no codec for its stored syntax, a lossy one asked
for a lossless syntax, more bits than the codec takes) makes the whole request 406, named,
before anything is sent. Files already in the syntax asked for are streamed from disk in
chunks; the others are re-encoded one at a time (:func:`~radserve.dicom_io.transcode`).

Metadata is a DICOM JSON array, one object per instance, read from the headers. Pixel Data
and the binary values over :data:`MAX_INLINE_BINARY_BYTES` (also inside sequences) are
given as a ``BulkDataURI`` (PS3.18 F.2.6) under the instance: ``.../bulkdata/7FE00010``, or
for a value in a sequence item the path of tags and item indices, ``.../bulkdata/
00089215/0/00081160``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi.responses import StreamingResponse
from pydicom.dataset import Dataset

from radserve.dicom_io import (
    TRANSCODE_TARGETS,
    native_dicom_model,
    native_pixel_data,
    read_instance,
    transcode,
    transcode_problem,
    transfer_syntax_name,
    web_transfer_syntax,
)
from radserve.server.errors import NotAcceptableError
from radserve.server.metadata_cache import ROOT_PLACEHOLDER, MetadataCache
from radserve.server.routes.multipart import closing_delimiter, new_boundary, part_header
from radserve.server.routes.retrieve.accept import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    MULTIPART,
    Offer,
    negotiate,
)
from radserve.server.routes.retrieve.pixels import pixel_layout
from radserve.server.routes.retrieve.responses import multipart_response
from radserve.server.store.batch import StoredInstance

DICOM_JSON = "application/dicom+json"
CHUNK_BYTES = 1024 * 1024
MAX_INLINE_BINARY_BYTES = 64 * 1024
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
DICOM = "application/dicom"
# transfer-syntax=*: each instance as stored (Implicit VR Little Endian as Explicit).
AS_STORED = Offer(MULTIPART, DICOM, "*")
OCTET_STREAM = "application/octet-stream"
# The instances' bulk data: their Pixel Data, native (PS3.18 Table 8.7.3-2).
PIXEL_DATA = Offer(MULTIPART, OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)
DICOM_XML = "application/dicom+xml"
METADATA_OFFERS = (Offer(DICOM_JSON), Offer("application/json"), Offer(MULTIPART, DICOM_XML))

TagPath = tuple[str, ...]
"""A value's place in a data set: tags (8 hex digits) and, between them, item indices."""


def instance_url(base: str, instance: StoredInstance) -> str:
    """The WADO-RS URL of an instance under the DICOMweb root ``base``."""
    return (
        f"{base}/studies/{instance.study_instance_uid}/series/{instance.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )


def retrieve_files(
    accept: str | None, instances: Sequence[StoredInstance], *, max_bytes: int
) -> StreamingResponse:
    """The instances in the negotiated transfer syntax, streamed (with a Content-Length when
    none needs re-encoding).

    Raises:
        NotAcceptableError: No acceptable syntax, or an instance cannot be sent in it.
    """
    stored = dict.fromkeys(web_transfer_syntax(i.transfer_syntax_uid) for i in instances)
    offers = [
        AS_STORED,
        *(Offer(MULTIPART, DICOM, uid) for uid in (*TRANSCODE_TARGETS, *stored)),
        PIXEL_DATA,
    ]
    offer = negotiate(accept, list(dict.fromkeys(offers)), default=offers[1])
    if offer == PIXEL_DATA:
        return _pixel_data(instances, max_bytes=max_bytes)
    targets = [
        web_transfer_syntax(i.transfer_syntax_uid)
        if offer == AS_STORED
        else str(offer.transfer_syntax_uid)
        for i in instances
    ]
    for instance, target in zip(instances, targets, strict=True):
        problem = transcode_problem(
            instance.path, instance.transfer_syntax_uid, target, max_bytes=max_bytes
        )
        if problem is not None:
            raise NotAcceptableError(
                f"instance {instance.sop_instance_uid} cannot be sent as "
                f"{transfer_syntax_name(target)}: {problem}"
            )
    boundary = new_boundary()
    as_is = [i.transfer_syntax_uid == t for i, t in zip(instances, targets, strict=True)]
    headers: dict[str, str] = {}
    if all(as_is):
        length = sum(
            len(part_header(boundary, _part_type(t), i.size_bytes)) + i.size_bytes + 2
            for i, t in zip(instances, targets, strict=True)
        )
        headers["Content-Length"] = str(length + len(closing_delimiter(boundary)))

    def body() -> Iterator[bytes]:
        for instance, target, same in zip(instances, targets, as_is, strict=True):
            if same:
                yield part_header(boundary, _part_type(target), instance.size_bytes)
                with instance.path.open("rb") as fp:
                    while chunk := fp.read(CHUNK_BYTES):
                        yield chunk
            else:
                data = transcode(instance.path, target, max_bytes=max_bytes)
                yield part_header(boundary, _part_type(target), len(data)) + data
            yield b"\r\n"
        yield closing_delimiter(boundary)

    return StreamingResponse(
        body(),
        media_type=f'multipart/related; type="{DICOM}"; boundary={boundary}',
        headers=headers,
    )


def _pixel_data(instances: Sequence[StoredInstance], *, max_bytes: int) -> StreamingResponse:
    """The bulk data of the instances (``type="application/octet-stream"``, PS3.18 Table
    8.7.3-2): each instance's Pixel Data, native, one part each; none for an instance
    without pixels."""
    with_pixels = [i for i in instances if pixel_layout(i) is not None]
    for instance in with_pixels:
        problem = transcode_problem(
            instance.path,
            instance.transfer_syntax_uid,
            EXPLICIT_VR_LITTLE_ENDIAN,
            max_bytes=max_bytes,
        )
        if problem is not None:
            raise NotAcceptableError(
                f"the pixel data of instance {instance.sop_instance_uid} cannot be sent "
                f"native: {problem}"
            )
    part_type = PIXEL_DATA.part_content_type
    pixels = (native_pixel_data(i.path, max_bytes=max_bytes) or b"" for i in with_pixels)
    return multipart_response(OCTET_STREAM, ((part_type, data) for data in pixels))


def _part_type(transfer_syntax_uid: str) -> str:
    return f"{DICOM}; transfer-syntax={transfer_syntax_uid}"


def _take_bulk_values(ds: Dataset, prefix: TagPath = ()) -> list[tuple[TagPath, str]]:
    """Remove the binary values too large to inline; their paths and VRs."""
    taken: list[tuple[TagPath, str]] = []
    for tag in list(ds.keys()):
        element = ds.get_item(tag, keep_deferred=True)
        if element is None:
            continue
        key = f"{int(tag):08X}"
        vr = element.VR or ds[tag].VR  # implicit VR: the dictionary's (UN when private)
        if vr == "SQ":
            for k, item in enumerate(ds[tag].value):
                taken += _take_bulk_values(item, (*prefix, key, str(k)))
        elif (
            vr in BINARY_VRS
            and element.value is not None
            and len(element.value) > MAX_INLINE_BINARY_BYTES
        ):
            taken.append(((*prefix, key), str(vr)))
            del ds[tag]
    return taken


def _put_uri(item: dict[str, Any], path: TagPath, vr: str, uri: str) -> None:
    for k in range(0, len(path) - 1, 2):
        item = item[path[k]]["Value"][int(path[k + 1])]
    item[path[-1]] = {"vr": vr, "BulkDataURI": uri}


def metadata_json(instance: StoredInstance, base: str, *, max_bytes: int) -> dict[str, Any]:
    """The DICOM JSON of one instance, with bulk data URIs under ``base``."""
    ds = read_instance(instance.path, stop_before_pixels=True, max_bytes=max_bytes)
    bulk = _take_bulk_values(ds)
    item: dict[str, Any] = ds.to_json_dict(suppress_invalid_tags=True)
    bulkdata = instance_url(base, instance) + "/bulkdata/"
    for path, vr in bulk:
        _put_uri(item, path, vr, bulkdata + "/".join(path))
    layout = pixel_layout(instance)
    if layout is not None:
        item["7FE00010"] = {"vr": layout.vr, "BulkDataURI": bulkdata + "7FE00010"}
    return dict(sorted(item.items()))


def metadata_response(
    accept: str | None,
    instances: Sequence[StoredInstance],
    base: str,
    *,
    max_bytes: int,
    cache: MetadataCache | None = None,
) -> StreamingResponse:
    """The metadata of ``instances`` as a DICOM JSON array, or as PS3.19 XML, one
    ``multipart/related`` part per instance; streamed, each instance's JSON from ``cache``
    when it holds it."""
    offer = negotiate(accept, METADATA_OFFERS)
    root = json.dumps(base, ensure_ascii=False)[1:-1]  # as it reads inside a JSON string

    def build(instance: StoredInstance) -> str:
        item = metadata_json(instance, ROOT_PLACEHOLDER, max_bytes=max_bytes)
        return json.dumps(item, ensure_ascii=False)

    def text_of(instance: StoredInstance) -> str:
        text = (
            build(instance)
            if cache is None
            else cache.text(instance, functools.partial(build, instance))
        )
        return text.replace(ROOT_PLACEHOLDER, root)

    if offer.part_type == DICOM_XML:
        return multipart_response(
            DICOM_XML, ((DICOM_XML, native_dicom_model(json.loads(text_of(i)))) for i in instances)
        )

    def body() -> Iterator[bytes]:
        yield b"["
        for k, instance in enumerate(instances):
            yield (("," if k else "") + text_of(instance)).encode("utf-8")
        yield b"]"

    return StreamingResponse(body(), media_type=DICOM_JSON)
