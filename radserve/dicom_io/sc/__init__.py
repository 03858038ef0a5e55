"""Secondary Capture: the burned-in overlay series and the slice renderer behind it."""

from radserve.dicom_io.sc.overlay import (
    OVERLAY_TRANSFER_SYNTAXES,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    write_overlay_sc,
)
from radserve.dicom_io.sc.render import (
    PALETTE,
    REVIEW_WARNING,
    SliceRenderer,
    key_slice,
    render_slice,
    window_from_headers,
    write_png,
)

__all__ = [
    "OVERLAY_TRANSFER_SYNTAXES",
    "PALETTE",
    "REVIEW_WARNING",
    "SECONDARY_CAPTURE_IMAGE_STORAGE",
    "SliceRenderer",
    "key_slice",
    "render_slice",
    "window_from_headers",
    "write_overlay_sc",
    "write_png",
]
