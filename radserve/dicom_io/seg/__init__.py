"""DICOM Segmentation: writing a label map as SEG, reading a SEG onto a grid."""

from radserve.dicom_io.seg.reading import (
    read_seg,
)
from radserve.dicom_io.seg.types import (
    SegmentationType,
    SegmentationTypeChoice,
    choose_segmentation_type,
)
from radserve.dicom_io.seg.writing import (
    write_seg,
)

__all__ = [
    "SegmentationType",
    "SegmentationTypeChoice",
    "choose_segmentation_type",
    "read_seg",
    "write_seg",
]
