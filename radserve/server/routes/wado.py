"""WADO-RS (PS3.18 10.4): retrieve studies, series, instances and their metadata.

Instances are sent as stored (no transcoding) in ``multipart/related;
type="application/dicom"``, each part naming its own transfer syntax; a ``transfer-syntax``
parameter in the Accept header is not enforced. Files are streamed from disk in chunks.
Metadata is a DICOM JSON array, one object per instance, read from the headers: Pixel Data
is left out (no BulkDataURI: radserve serves no bulk data resources), as are other binary
values over :data:`MAX_INLINE_BINARY_BYTES`. Unknown UIDs answer 404; an Accept header that
allows neither ``multipart/related`` nor DICOM JSON answers 406.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from radserve.dicom_io import read_instance
from radserve.server.deps import DICOM_JSON, StoreDep, require_role
from radserve.server.errors import NotAcceptableError
from radserve.server.routes.multipart import (
    closing_delimiter,
    new_boundary,
    parse_media_type,
    part_header,
)
from radserve.server.settings import Role
from radserve.server.store.instances import StoredInstance

router = APIRouter(
    prefix="/dicomweb", tags=["WADO-RS"], dependencies=[Depends(require_role(Role.READ))]
)

CHUNK_BYTES = 1024 * 1024
MAX_INLINE_BINARY_BYTES = 64 * 1024
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def _accepts(accept: str | None, *, multipart: bool) -> bool:
    if not accept:
        return True
    for media_range in accept.split(","):
        if not media_range.strip():
            continue
        media_type = parse_media_type(media_range)
        if media_type.type == "*/*":
            return True
        if multipart:
            part_type = media_type.parameters.get("type", "application/dicom").lower()
            if media_type.type in ("multipart/related", "multipart/*") and part_type in (
                "application/dicom",
                "application/*",
                "*/*",
            ):
                return True
        elif media_type.type in (DICOM_JSON, "application/json", "application/*"):
            return True
    return False


def _retrieve(request: Request, instances: Sequence[StoredInstance]) -> StreamingResponse:
    if not _accepts(request.headers.get("accept"), multipart=True):
        raise NotAcceptableError('WADO-RS sends multipart/related; type="application/dicom"')
    boundary = new_boundary()
    headers = [
        part_header(boundary, _part_type(i), i.size_bytes) for i in instances
    ]  # computed first: the Content-Length is known before anything is sent
    length = sum(len(h) + i.size_bytes + 2 for h, i in zip(headers, instances, strict=True))
    length += len(closing_delimiter(boundary))

    def body() -> Iterator[bytes]:
        for header, instance in zip(headers, instances, strict=True):
            yield header
            with instance.path.open("rb") as fp:
                while chunk := fp.read(CHUNK_BYTES):
                    yield chunk
            yield b"\r\n"
        yield closing_delimiter(boundary)

    return StreamingResponse(
        body(),
        media_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
        headers={"Content-Length": str(length)},
    )


def _part_type(instance: StoredInstance) -> str:
    if instance.transfer_syntax_uid:
        return f"application/dicom; transfer-syntax={instance.transfer_syntax_uid}"
    return "application/dicom"


def _metadata(
    request: Request, instances: Sequence[StoredInstance], *, limit: int
) -> StreamingResponse:
    if not _accepts(request.headers.get("accept"), multipart=False):
        raise NotAcceptableError("WADO-RS metadata is sent as application/dicom+json")

    def body() -> Iterator[bytes]:
        yield b"["
        for k, instance in enumerate(instances):
            ds = read_instance(instance.path, stop_before_pixels=True, max_bytes=limit)
            for tag in list(ds.keys()):
                element = ds.get_item(tag, keep_deferred=True)
                if (
                    element is not None
                    and element.VR in _BINARY_VRS
                    and element.value is not None
                    and len(element.value) > MAX_INLINE_BINARY_BYTES
                ):
                    del ds[tag]
            text = json.dumps(ds.to_json_dict(suppress_invalid_tags=True), ensure_ascii=False)
            yield (("," if k else "") + text).encode("utf-8")
        yield b"]"

    return StreamingResponse(body(), media_type=DICOM_JSON)


@router.get("/studies/{study}", summary="Retrieve a study")
def retrieve_study(request: Request, store: StoreDep, study: str) -> StreamingResponse:
    """All instances of a study."""
    return _retrieve(request, store.get_instances(study))


@router.get("/studies/{study}/series/{series}", summary="Retrieve a series")
def retrieve_series(
    request: Request, store: StoreDep, study: str, series: str
) -> StreamingResponse:
    """All instances of a series."""
    return _retrieve(request, store.get_instances(study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}", summary="Retrieve an instance")
def retrieve_instance(
    request: Request, store: StoreDep, study: str, series: str, instance: str
) -> StreamingResponse:
    """One instance."""
    return _retrieve(request, store.get_instances(study, series, instance))


@router.get("/studies/{study}/metadata", summary="Retrieve a study's metadata")
def retrieve_study_metadata(request: Request, store: StoreDep, study: str) -> StreamingResponse:
    """The metadata of every instance of a study."""
    return _metadata(request, store.get_instances(study), limit=store.max_instance_bytes)


@router.get("/studies/{study}/series/{series}/metadata", summary="Retrieve a series' metadata")
def retrieve_series_metadata(
    request: Request, store: StoreDep, study: str, series: str
) -> StreamingResponse:
    """The metadata of every instance of a series."""
    return _metadata(request, store.get_instances(study, series), limit=store.max_instance_bytes)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/metadata",
    summary="Retrieve an instance's metadata",
)
def retrieve_instance_metadata(
    request: Request, store: StoreDep, study: str, series: str, instance: str
) -> StreamingResponse:
    """The metadata of one instance."""
    return _metadata(
        request, store.get_instances(study, series, instance), limit=store.max_instance_bytes
    )
