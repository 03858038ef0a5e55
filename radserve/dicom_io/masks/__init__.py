"""Masks on a volume grid: label maps, NIfTI/NRRD files, RTSTRUCT contours, per-segment
measurements.
"""

from radserve.dicom_io.masks.files import (
    SUFFIXES,
    read_labelmap_file,
    write_labelmap_file,
)
from radserve.dicom_io.masks.labelmap import (
    ANATOMICAL_STRUCTURE,
    MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    NEOPLASM,
    ORGAN,
    TISSUE,
    Code,
    LabelMap,
    SegmentInfo,
)
from radserve.dicom_io.masks.measurements import (
    SegmentMeasurements,
    measure_segments,
)
from radserve.dicom_io.masks.rtstruct import (
    PLANNING_TARGET_VOLUME,
    RT_STRUCTURE_SET_STORAGE,
    RT_TARGET,
    list_rois,
    read_rtstruct,
)

__all__ = [
    "ANATOMICAL_STRUCTURE",
    "MORPHOLOGICALLY_ABNORMAL_STRUCTURE",
    "NEOPLASM",
    "ORGAN",
    "PLANNING_TARGET_VOLUME",
    "RT_STRUCTURE_SET_STORAGE",
    "RT_TARGET",
    "SUFFIXES",
    "TISSUE",
    "Code",
    "LabelMap",
    "SegmentInfo",
    "SegmentMeasurements",
    "list_rois",
    "measure_segments",
    "read_labelmap_file",
    "read_rtstruct",
    "write_labelmap_file",
]
