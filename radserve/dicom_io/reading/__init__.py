"""Reading instances (files, folders, zip, bytes; every common transfer syntax; tolerated quirks)
and building one regular :class:`~radserve.dicom_io.Volume` from a series.
"""

from radserve.dicom_io.reading.enhanced import (
    text_value,
)
from radserve.dicom_io.reading.headers import (
    FileHead,
    header_and_location,
    read_pixel_data_into,
    with_pixel_data,
)
from radserve.dicom_io.reading.instances import (
    DEFAULT_MAX_INSTANCE_BYTES,
    decode_pixel_arrays,
    iter_instance_headers,
    iter_instances,
    read_instance,
)
from radserve.dicom_io.reading.quirks import (
    ToleratedQuirks,
    check_and_tolerate,
)
from radserve.dicom_io.reading.series import (
    ImageSeries,
    group_by_study,
    group_series,
    image_series_from_instances,
    read_image_series,
    read_series,
    volume_from_instances,
)
from radserve.dicom_io.reading.transfer_syntax import (
    DEFLATED_IMAGE_FRAME_COMPRESSION,
    ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN,
    check_transfer_syntax,
    is_encapsulated,
    supported_transfer_syntaxes,
    transfer_syntax_name,
)

__all__ = [
    "DEFAULT_MAX_INSTANCE_BYTES",
    "DEFLATED_IMAGE_FRAME_COMPRESSION",
    "ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN",
    "FileHead",
    "ImageSeries",
    "ToleratedQuirks",
    "check_and_tolerate",
    "check_transfer_syntax",
    "decode_pixel_arrays",
    "group_by_study",
    "group_series",
    "header_and_location",
    "image_series_from_instances",
    "is_encapsulated",
    "iter_instance_headers",
    "iter_instances",
    "read_image_series",
    "read_instance",
    "read_pixel_data_into",
    "read_series",
    "supported_transfer_syntaxes",
    "text_value",
    "transfer_syntax_name",
    "volume_from_instances",
    "with_pixel_data",
]
