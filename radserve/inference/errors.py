"""Exceptions raised by :mod:`radserve.inference`.

Messages name the problem (a file, a manifest field, a shape) but never patient-identifying
values.
"""


class InferenceError(Exception):
    """Root of every error raised by :mod:`radserve.inference`."""


class ModelNotFoundError(InferenceError):
    """A model package directory, its ``model.onnx`` or its ``manifest.yaml`` does not exist."""


class InvalidModelPackageError(InferenceError):
    """A model package is malformed: unreadable or invalid manifest, unloadable ONNX model."""


class ModelIntegrityError(InvalidModelPackageError):
    """``model.onnx`` does not have the sha256 recorded in the manifest."""


class IncompatibleModelError(InvalidModelPackageError):
    """The ONNX model's inputs or outputs do not match the manifest (rank, channels, patch)."""


class ExecutionProviderError(InferenceError):
    """None of the requested ONNX Runtime execution providers is available or usable."""


class ModelRunError(InferenceError):
    """ONNX Runtime failed while running the model."""


class InferenceTimeoutError(InferenceError):
    """The prediction ran past its deadline (the job timeout) and was stopped."""


class PreprocessingError(InferenceError):
    """A volume cannot be brought to the network's grid (e.g. it is empty after resampling)."""


class NetworkGridTooLargeError(PreprocessingError):
    """The volume on the network grid would take more memory than inference may use (a
    series with an implausible spacing or size)."""


class SeriesNotAcceptedError(InferenceError):
    """The series does not match the model's input selection rules."""
