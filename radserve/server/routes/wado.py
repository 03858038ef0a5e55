"""WADO-RS (PS3.18 10.4): studies, series, instances, metadata, frames, bulk data, rendered
resources and thumbnails.

The handlers are thin: the bodies are built in :mod:`radserve.server.routes.retrieve`, where
each resource's representations are negotiated against the Accept header (PS3.18 8.7).

* Studies, series and instances are ``multipart/related; type="application/dicom"`` in the
  negotiated transfer syntax: Explicit VR Little Endian by default, as stored for
  ``transfer-syntax=*`` (Implicit VR Little Endian as Explicit), or a lossless syntax
  radserve writes (:mod:`radserve.server.routes.retrieve.instances`).
* Metadata is DICOM JSON; Pixel Data and large binary values are ``BulkDataURI`` references
  to ``.../bulkdata/{tag path}``.
* Frames are ``multipart/related``, one part per frame: native pixels as
  ``application/octet-stream``; compressed ones as stored where the Accept header allows,
  else decoded.
* Rendered resources and thumbnails are JPEG (default) or PNG.

Unknown UIDs answer 404, as do frames or bulk data an instance does not have; a bad frame
list or query parameter 400; an Accept header nothing can be sent for 406.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from radserve.dicom_io import MAX_VIEWPORT, RENDERED_MEDIA_TYPES
from radserve.server.deps import StateDep, StoreDep, dicomweb_url, require_role
from radserve.server.routes.api_description import (
    AUTHENTICATED,
    DICOM_JSON,
    MULTIPART_RELATED,
    answers,
    errors,
)
from radserve.server.routes.retrieve import (
    bulkdata_response,
    choose_media_type,
    frames_response,
    metadata_response,
    parse_render_query,
    render_instance,
    rendered_frames,
    rendered_series,
    retrieve_files,
    thumbnail_instance,
)
from radserve.server.settings import Role

router = APIRouter(
    prefix="/dicomweb",
    tags=["WADO-RS"],
    dependencies=[Depends(require_role(Role.READ))],
    default_response_class=Response,
    responses={**AUTHENTICATED, **errors(400, 404, 406)},
)

INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"
_INSTANCES = answers(
    200, 'The instances, multipart/related; type="application/dicom"', MULTIPART_RELATED
)
_METADATA = answers(
    200,
    "DICOM JSON (or PS3.19 XML, a part per instance), bulk data by BulkDataURI",
    DICOM_JSON,
    "application/json",
    MULTIPART_RELATED,
)
_FRAMES = answers(200, "The frames, one part each", MULTIPART_RELATED)
_BULKDATA = answers(200, "The value, one part", MULTIPART_RELATED)
_RENDERED = answers(
    200, "JPEG or PNG (several images: one part each)", *RENDERED_MEDIA_TYPES, MULTIPART_RELATED
)
_THUMBNAIL = answers(200, "JPEG or PNG", *RENDERED_MEDIA_TYPES)
WindowQuery = Annotated[
    str | None, Query(description="center,width[,linear|linear-exact|sigmoid]", max_length=80)
]
ViewportQuery = Annotated[
    str | None,
    Query(
        description=f"width,height in pixels, each 1 to {MAX_VIEWPORT}",
        pattern=r"^[0-9]{1,9},[0-9]{1,9}(,[^,]*){0,4}$",
    ),
]
QualityQuery = Annotated[
    str | None, Query(description="JPEG quality, 1 to 100", pattern=r"^[0-9]{1,3}$")
]
# Checked by the handlers, whose answers name the bad entries (the pattern is documentation).
FrameList = Annotated[
    str,
    Path(
        description="Frame numbers from 1, comma-separated",
        json_schema_extra={"pattern": r"^[0-9]{1,9}(,[0-9]{1,9})*$"},
    ),
]


def _accept(request: Request) -> str | None:
    return request.headers.get("accept")


@router.get("/studies/{study}", summary="Retrieve a study", responses=_INSTANCES)
def retrieve_study(request: Request, store: StoreDep, study: str) -> StreamingResponse:
    """All instances of a study."""
    return retrieve_files(
        _accept(request), store.get_instances(study), max_bytes=store.max_instance_bytes
    )


@router.get("/studies/{study}/series/{series}", summary="Retrieve a series", responses=_INSTANCES)
def retrieve_series(
    request: Request, store: StoreDep, study: str, series: str
) -> StreamingResponse:
    """All instances of a series."""
    return retrieve_files(
        _accept(request), store.get_instances(study, series), max_bytes=store.max_instance_bytes
    )


@router.get(INSTANCE, summary="Retrieve an instance", responses=_INSTANCES)
def retrieve_instance(
    request: Request, store: StoreDep, study: str, series: str, instance: str
) -> StreamingResponse:
    """One instance."""
    return retrieve_files(
        _accept(request),
        store.get_instances(study, series, instance),
        max_bytes=store.max_instance_bytes,
    )


@router.get("/studies/{study}/metadata", summary="Retrieve a study's metadata", responses=_METADATA)
def retrieve_study_metadata(
    request: Request, state: StateDep, store: StoreDep, study: str
) -> StreamingResponse:
    """The metadata of every instance of a study."""
    instances = store.get_instances(study)
    return metadata_response(
        _accept(request),
        instances,
        dicomweb_url(request),
        max_bytes=store.max_instance_bytes,
        cache=state.metadata_cache,
    )


@router.get(
    "/studies/{study}/series/{series}/metadata",
    summary="Retrieve a series' metadata",
    responses=_METADATA,
)
def retrieve_series_metadata(
    request: Request, state: StateDep, store: StoreDep, study: str, series: str
) -> StreamingResponse:
    """The metadata of every instance of a series."""
    instances = store.get_instances(study, series)
    return metadata_response(
        _accept(request),
        instances,
        dicomweb_url(request),
        max_bytes=store.max_instance_bytes,
        cache=state.metadata_cache,
    )


@router.get(INSTANCE + "/metadata", summary="Retrieve an instance's metadata", responses=_METADATA)
def retrieve_instance_metadata(
    request: Request, state: StateDep, store: StoreDep, study: str, series: str, instance: str
) -> StreamingResponse:
    """The metadata of one instance."""
    instances = store.get_instances(study, series, instance)
    return metadata_response(
        _accept(request),
        instances,
        dicomweb_url(request),
        max_bytes=store.max_instance_bytes,
        cache=state.metadata_cache,
    )


@router.get(
    INSTANCE + "/frames/{frames}", summary="Retrieve frames of an instance", responses=_FRAMES
)
def retrieve_frames(
    request: Request, store: StoreDep, study: str, series: str, instance: str, frames: FrameList
) -> Response:
    """Frames ``frames`` (``1`` or ``1,3,5``, from 1), one part each, in the order asked."""
    [stored] = store.get_instances(study, series, instance)
    return frames_response(_accept(request), stored, frames)


@router.get(
    INSTANCE + "/bulkdata/{tag_path:path}", summary="Retrieve bulk data", responses=_BULKDATA
)
def retrieve_bulkdata(
    request: Request, store: StoreDep, study: str, series: str, instance: str, tag_path: str
) -> Response:
    """The value a ``BulkDataURI`` of the instance's metadata points at."""
    [stored] = store.get_instances(study, series, instance)
    return bulkdata_response(_accept(request), stored, tag_path, max_bytes=store.max_instance_bytes)


@router.get(
    "/studies/{study}/series/{series}/rendered",
    summary="Retrieve a rendered series",
    responses=_RENDERED,
)
def retrieve_rendered_series(
    request: Request,
    store: StoreDep,
    study: str,
    series: str,
    window: WindowQuery = None,
    viewport: ViewportQuery = None,
    quality: QualityQuery = None,
) -> Response:
    """Every image instance of a series rendered, one part each."""
    media_type = choose_media_type(_accept(request))
    options = parse_render_query(media_type, window=window, viewport=viewport, quality=quality)
    return rendered_series(store.get_instances(study, series), options)


@router.get(INSTANCE + "/rendered", summary="Retrieve a rendered instance", responses=_RENDERED)
def retrieve_rendered_instance(
    request: Request,
    store: StoreDep,
    study: str,
    series: str,
    instance: str,
    window: WindowQuery = None,
    viewport: ViewportQuery = None,
    quality: QualityQuery = None,
) -> Response:
    """The instance (its first frame) as JPEG or PNG."""
    media_type = choose_media_type(_accept(request))
    options = parse_render_query(media_type, window=window, viewport=viewport, quality=quality)
    [stored] = store.get_instances(study, series, instance)
    return Response(render_instance(stored, 0, options), media_type=media_type)


@router.get(
    INSTANCE + "/frames/{frames}/rendered", summary="Retrieve rendered frames", responses=_RENDERED
)
def retrieve_rendered_frames(
    request: Request,
    store: StoreDep,
    study: str,
    series: str,
    instance: str,
    frames: FrameList,
    window: WindowQuery = None,
    viewport: ViewportQuery = None,
    quality: QualityQuery = None,
) -> Response:
    """Frames as JPEG or PNG (several frames: one part each)."""
    media_type = choose_media_type(_accept(request))
    options = parse_render_query(media_type, window=window, viewport=viewport, quality=quality)
    [stored] = store.get_instances(study, series, instance)
    return rendered_frames(stored, frames, options)


@router.get(
    "/studies/{study}/thumbnail", summary="Retrieve a study thumbnail", responses=_THUMBNAIL
)
def retrieve_study_thumbnail(
    request: Request,
    store: StoreDep,
    study: str,
    viewport: ViewportQuery = None,
    quality: QualityQuery = None,
) -> Response:
    """A thumbnail of the study's first series with images (its middle image)."""
    media_type = choose_media_type(_accept(request))
    options = parse_render_query(
        media_type, window=None, viewport=viewport, quality=quality, thumbnail=True
    )
    shown = thumbnail_instance(store.get_instances(study))
    return Response(render_instance(shown, 0, options), media_type=media_type)


@router.get(
    "/studies/{study}/series/{series}/thumbnail",
    summary="Retrieve a series thumbnail",
    responses=_THUMBNAIL,
)
def retrieve_series_thumbnail(
    request: Request,
    store: StoreDep,
    study: str,
    series: str,
    viewport: ViewportQuery = None,
    quality: QualityQuery = None,
) -> Response:
    """A thumbnail of the series' middle image by Instance Number."""
    media_type = choose_media_type(_accept(request))
    options = parse_render_query(
        media_type, window=None, viewport=viewport, quality=quality, thumbnail=True
    )
    shown = thumbnail_instance(store.get_instances(study, series))
    return Response(render_instance(shown, 0, options), media_type=media_type)


@router.get(INSTANCE + "/thumbnail", summary="Retrieve an instance thumbnail", responses=_THUMBNAIL)
def retrieve_instance_thumbnail(
    request: Request,
    store: StoreDep,
    study: str,
    series: str,
    instance: str,
    viewport: ViewportQuery = None,
    quality: QualityQuery = None,
) -> Response:
    """A thumbnail of the instance's first frame."""
    media_type = choose_media_type(_accept(request))
    options = parse_render_query(
        media_type, window=None, viewport=viewport, quality=quality, thumbnail=True
    )
    [stored] = store.get_instances(study, series, instance)
    return Response(render_instance(stored, 0, options), media_type=media_type)
