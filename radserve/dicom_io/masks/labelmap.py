"""Label maps: an integer mask on a volume grid plus the description of each segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radserve.dicom_io.volume import Volume


@dataclass(frozen=True)
class Code:
    """A coded concept (code value, coding scheme designator, code meaning)."""

    value: str
    scheme: str
    meaning: str


# SNOMED CT codes used for segments by default (DICOM PS3.16 CID 7150 / 7151 / 7166).
TISSUE = Code("85756007", "SCT", "Tissue")
ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")
NEOPLASM = Code("108369006", "SCT", "Neoplasm")
ORGAN = Code("113343008", "SCT", "Organ")


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a label map.

    Attributes:
        label: The integer value of the segment in the label map (1..65535).
        name: Segment Label, shown by viewers.
        category: Segmented Property Category Code.
        type: Segmented Property Type Code.
        description: Optional Segment Description.
    """

    label: int
    name: str
    category: Code = MORPHOLOGICALLY_ABNORMAL_STRUCTURE
    type: Code = NEOPLASM
    description: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.label <= 65535:
            raise ValueError(f"segment label must be in 1..65535, got {self.label}")
        if not self.name:
            raise ValueError("a segment needs a name")


@dataclass(frozen=True)
class LabelMap:
    """An integer label map on a volume grid, with one :class:`SegmentInfo` per label.

    ``volume.array`` holds 0 for background and ``segment.label`` for each segment.
    """

    volume: Volume
    segments: tuple[SegmentInfo, ...]

    def __post_init__(self) -> None:
        if not np.issubdtype(self.volume.array.dtype, np.integer):
            raise ValueError(f"a label map needs an integer array, got {self.volume.array.dtype}")
        labels = [s.label for s in self.segments]
        if len(set(labels)) != len(labels):
            raise ValueError("segment labels must be unique")

    def mask(self, label: int) -> np.ndarray:
        """Boolean mask of one segment, ``[k, j, i]``."""
        return np.asarray(self.volume.array == label)

    def present_labels(self) -> list[int]:
        """Labels of segments that have at least one voxel."""
        values = set(np.unique(self.volume.array).tolist())
        return [s.label for s in self.segments if s.label in values]
