"""Exceptions raised by :mod:`radserve.dicom_io`.

Messages name the problem (and, where useful, a series or instance number) but never
patient-identifying values.
"""


class DicomIOError(Exception):
    """Root of every error raised by :mod:`radserve.dicom_io`."""


class InvalidDicomError(DicomIOError):
    """The input is not a readable DICOM instance (garbage, truncated, missing pixel data)."""


class InstanceTooLargeError(InvalidDicomError):
    """An instance is larger than the ``max_bytes`` limit of the read."""


class UnsupportedTransferSyntaxError(DicomIOError):
    """The pixel data is encoded in a transfer syntax radserve cannot decode."""

    def __init__(self, transfer_syntax_uid: str, name: str | None = None) -> None:
        label = f"{name} ({transfer_syntax_uid})" if name else transfer_syntax_uid
        super().__init__(f"unsupported transfer syntax: {label}")
        self.transfer_syntax_uid = transfer_syntax_uid


class InconsistentSeriesError(DicomIOError):
    """A series is not one regular 3D volume (the subclass says why)."""


class MissingSlicesError(InconsistentSeriesError):
    """Slices are missing or the slice spacing is inconsistent."""


class GantryTiltError(InconsistentSeriesError):
    """The slice stack is sheared (gantry tilt): slices are not perpendicular to their normal."""


class MixedOrientationError(InconsistentSeriesError):
    """Slices in the series have different Image Orientation (Patient)."""


class MixedMatrixSizeError(InconsistentSeriesError):
    """Slices in the series have different rows / columns or pixel spacing."""


class DuplicatePositionError(InconsistentSeriesError):
    """Two or more slices share the same Image Position (Patient)."""


class NotAVolumeError(InconsistentSeriesError):
    """The series cannot form a volume (a single-slice localizer, no geometry, ...)."""


class MultipleStacksError(InconsistentSeriesError):
    """The series holds several stacks (echoes, time points) at the same positions."""


class MaskError(DicomIOError):
    """A mask (SEG, RTSTRUCT, NIfTI/NRRD label map) cannot be read onto the requested grid."""


class MeasurementError(DicomIOError):
    """Measurements cannot be computed or reported (grid mismatch, unknown label, nothing to
    report)."""


class DeidentificationError(DicomIOError):
    """De-identification cannot run as asked (no or weak salt, conflicting options)."""
