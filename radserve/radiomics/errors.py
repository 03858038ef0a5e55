"""Exceptions raised by :mod:`radserve.radiomics`.

Messages name the problem (a label, a parameter set, a grid difference) but never
patient-identifying values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radserve.radiomics.features import SegmentFeatures


class RadiomicsError(Exception):
    """Root of every error raised by :mod:`radserve.radiomics`."""


class ParameterSetError(RadiomicsError):
    """A parameter set is missing, unreadable, or rejected by PyRadiomics' schema."""


class InputError(RadiomicsError):
    """An image or mask cannot be read (missing file, unsupported format, bad DICOM)."""


class MaskGeometryError(RadiomicsError):
    """The mask is not on the image grid (another grid, or outside the image)."""


class EmptyMaskError(RadiomicsError):
    """The mask, or the requested segment, has no voxel."""


class UnknownLabelError(RadiomicsError):
    """A requested label is not a segment of the label map."""


class SegmentTooSmallError(RadiomicsError):
    """PyRadiomics rejects the whole segment (a single voxel, too few dimensions, too small)."""


class ExtractionError(RadiomicsError):
    """PyRadiomics failed on a segment for a reason other than its size or geometry."""


class WorkerStoppedError(RadiomicsError):
    """A worker process died while it ran an extraction (out of memory, killed)."""


class RadiomicsStepError(RadiomicsError):
    """Radiomics failed for a job as a whole (not one segment PyRadiomics rejects)."""


class RadiomicsTimeoutError(RadiomicsError):
    """Extraction did not finish before its deadline.

    Attributes:
        completed: The segments that finished before the deadline, in label order.
        unfinished: The labels that did not.
    """

    def __init__(
        self, message: str, *, completed: list[SegmentFeatures], unfinished: list[int]
    ) -> None:
        super().__init__(message)
        self.completed = completed
        self.unfinished = unfinished
