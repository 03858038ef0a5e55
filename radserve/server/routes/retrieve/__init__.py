"""The bodies of the WADO-RS resources (the handlers are in :mod:`radserve.server.routes.wado`):
Accept negotiation, instances and metadata, frames, bulk data, renderings and thumbnails."""

from radserve.server.routes.retrieve.accept import (
    DEFAULT_TRANSFER_SYNTAX,
    EXPLICIT_VR_LITTLE_ENDIAN,
    MULTIPART,
    Offer,
    negotiate,
)
from radserve.server.routes.retrieve.bulkdata import bulkdata_response
from radserve.server.routes.retrieve.frames import frames_response, parse_frame_list
from radserve.server.routes.retrieve.instances import (
    DICOM_JSON,
    MAX_INLINE_BINARY_BYTES,
    instance_url,
    metadata_json,
    metadata_response,
    retrieve_files,
)
from radserve.server.routes.retrieve.pixels import (
    IMAGE_TYPE_BY_TRANSFER_SYNTAX,
    choose_frame_offer,
    pixel_layout,
)
from radserve.server.routes.retrieve.rendered import (
    THUMBNAIL_VIEWPORT,
    choose_media_type,
    parse_render_query,
    render_instance,
    rendered_frames,
    rendered_series,
    thumbnail_instance,
)
from radserve.server.routes.retrieve.responses import multipart_response

__all__ = [
    "DEFAULT_TRANSFER_SYNTAX",
    "DICOM_JSON",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMAGE_TYPE_BY_TRANSFER_SYNTAX",
    "MAX_INLINE_BINARY_BYTES",
    "MULTIPART",
    "THUMBNAIL_VIEWPORT",
    "Offer",
    "bulkdata_response",
    "choose_frame_offer",
    "choose_media_type",
    "frames_response",
    "instance_url",
    "metadata_json",
    "metadata_response",
    "multipart_response",
    "negotiate",
    "parse_frame_list",
    "parse_render_query",
    "pixel_layout",
    "render_instance",
    "rendered_frames",
    "rendered_series",
    "retrieve_files",
    "thumbnail_instance",
]
