"""DICOM Segmentation: writing a label map as SEG, reading a SEG onto a grid."""

from radserve.dicom_io.seg.reading import (
    read_seg,
)
from radserve.dicom_io.seg.writing import (
    write_seg,
)

__all__ = [
    "read_seg",
    "write_seg",
]
