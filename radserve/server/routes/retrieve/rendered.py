"""Rendered resources and thumbnails (PS3.18 10.4.1.1.4, 10.4.1.1.5, query 8.3.5.1).

A rendering is JPEG (the default) or PNG, by the Accept header; the query parameters are
``window=center,width[,linear|linear-exact|sigmoid]``, ``viewport=vw,vh`` (fit, aspect ratio
kept) and ``quality`` (JPEG, 1 to 100). The pixels are rendered by
:func:`radserve.dicom_io.render_frame`. The instance resource renders the first frame of a
multi-frame instance; the series resource sends every image instance of the series, one
part each. A thumbnail is a small rendering (``viewport`` :data:`THUMBNAIL_VIEWPORT` unless
asked): of the instance's first frame, of a series' middle image by Instance Number, of a
study's first series holding images.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi import Response

from radserve.dicom_io import (
    MAX_VIEWPORT,
    RENDERED_MEDIA_TYPES,
    RenderOptions,
    Window,
    WindowFunction,
    decode_frame_array,
    read_instance,
    render_frame,
)
from radserve.server.errors import MalformedRequestError, ResourceNotFoundError
from radserve.server.routes.retrieve.accept import Offer, negotiate
from radserve.server.routes.retrieve.frames import parse_frame_list
from radserve.server.routes.retrieve.pixels import image_layout, pixel_layout
from radserve.server.routes.retrieve.responses import multipart_response
from radserve.server.store.batch import StoredInstance

RENDERED_OFFERS = tuple(Offer(media_type) for media_type in RENDERED_MEDIA_TYPES)
THUMBNAIL_VIEWPORT = (128, 128)
THUMBNAIL_QUALITY = 75
DEFAULT_QUALITY = 90
_COUNT = re.compile(r"[0-9]{1,9}")  # ASCII digits only (str.isdecimal takes any script's)


def _numbers(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def parse_render_query(
    media_type: str,
    *,
    window: str | None,
    viewport: str | None,
    quality: str | None,
    thumbnail: bool = False,
) -> RenderOptions:
    """Rendering options from the query parameters.

    Raises:
        MalformedRequestError: A parameter is not as PS3.18 8.3.5.1 defines it.
    """
    chosen_window = None
    if window:
        parts = _numbers(window)
        if len(parts) not in (2, 3):
            raise MalformedRequestError("window must be center,width[,function]")
        try:
            function = WindowFunction(parts[2].lower()) if len(parts) == 3 else None
            chosen_window = Window(
                float(parts[0]), float(parts[1]), function or WindowFunction.LINEAR
            )
        except ValueError as exc:
            raise MalformedRequestError(
                f"bad window {window!r}: center,width as numbers, function one of "
                f"{', '.join(f.value for f in WindowFunction)} ({exc})"
            ) from exc
    size = THUMBNAIL_VIEWPORT if thumbnail else None
    if viewport:
        parts = _numbers(viewport)
        if len(parts) < 2 or not all(
            _COUNT.fullmatch(p) and 1 <= int(p) <= MAX_VIEWPORT for p in parts[:2]
        ):
            raise MalformedRequestError(
                f"viewport must be width,height in pixels (1 to {MAX_VIEWPORT})"
            )
        size = (int(parts[0]), int(parts[1]))
    level = THUMBNAIL_QUALITY if thumbnail else DEFAULT_QUALITY
    if quality:
        if not _COUNT.fullmatch(quality.strip()) or not 1 <= int(quality) <= 100:
            raise MalformedRequestError("quality must be a number from 1 to 100")
        level = int(quality)
    return RenderOptions(media_type=media_type, window=chosen_window, viewport=size, quality=level)


def choose_media_type(accept: str | None) -> str:
    """The rendered media type for an Accept header (JPEG by default)."""
    return negotiate(accept, RENDERED_OFFERS).media_type


def render_instance(instance: StoredInstance, index: int, options: RenderOptions) -> bytes:
    """Frame ``index`` (from 0) of an instance, rendered."""
    layout = image_layout(instance)
    header = read_instance(instance.path, stop_before_pixels=True)
    return render_frame(header, decode_frame_array(instance.path, layout, index), options)


def rendered_frames(instance: StoredInstance, frame_list: str, options: RenderOptions) -> Response:
    """The frames of ``frame_list`` rendered: one image, or a multipart of several (each
    rendered as it is sent)."""
    layout = image_layout(instance)
    indices = parse_frame_list(frame_list, layout.number_of_frames)
    if len(indices) == 1:
        return Response(
            render_instance(instance, indices[0], options), media_type=options.media_type
        )
    images = (render_instance(instance, k, options) for k in indices)
    return multipart_response(options.media_type, ((options.media_type, i) for i in images))


def rendered_series(instances: Sequence[StoredInstance], options: RenderOptions) -> Response:
    """The first frame of each image instance rendered, one part each (each rendered as it
    is sent).

    Raises:
        ResourceNotFoundError: The series holds no image instance.
    """
    shown = _images(instances)
    if not shown:
        raise ResourceNotFoundError("the series holds no image instance")
    images = (render_instance(i, 0, options) for i in shown)
    return multipart_response(options.media_type, ((options.media_type, i) for i in images))


def _images(instances: Sequence[StoredInstance]) -> list[StoredInstance]:
    return [i for i in instances if pixel_layout(i) is not None]


def thumbnail_instance(instances: Sequence[StoredInstance]) -> StoredInstance:
    """The instance a study or series thumbnail shows.

    ``instances`` in series and Instance Number order (the store's): the middle image of the
    first series that holds images.

    Raises:
        ResourceNotFoundError: No instance holds an image.
    """
    for series_uid in dict.fromkeys(i.series_instance_uid for i in instances):
        images = _images([i for i in instances if i.series_instance_uid == series_uid])
        if images:
            return images[(len(images) - 1) // 2]
    raise ResourceNotFoundError("no image instance to make a thumbnail of")
