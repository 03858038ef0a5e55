"""The predictor: one model package on ONNX Runtime, from a :class:`Volume` to a label map.

``predict`` runs, in order: preprocessing onto the network grid
(:mod:`~radserve.inference.preprocessing`), sliding-window inference on ONNX Runtime
(:mod:`~radserve.inference.sliding_window`), argmax over the blended output channels (the
same labels as argmax of the softmax), nearest-neighbour mapping of the labels back onto the
source grid, and, when the manifest sets ``min_component_voxels``, removal of smaller
connected components (:mod:`~radserve.inference.postprocessing`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from radserve.dicom_io import LabelMap, Volume
from radserve.inference.errors import (
    IncompatibleModelError,
    InferenceTimeoutError,
    ModelRunError,
)
from radserve.inference.package import ModelPackage, check_model_io
from radserve.inference.postprocessing import labels_from_logits, remove_small_components
from radserve.inference.preprocessing import labels_to_source, max_network_voxels, preprocess
from radserve.inference.runtime import OnnxSession, RuntimeSettings
from radserve.inference.sliding_window import SlidingWindowOptions, sliding_window_inference

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageTimings:
    """Wall-clock seconds spent in each stage of one prediction."""

    preprocess_s: float
    inference_s: float
    postprocess_s: float

    @property
    def total_s(self) -> float:
        """All three stages."""
        return self.preprocess_s + self.inference_s + self.postprocess_s


@dataclass(frozen=True)
class Prediction:
    """The result of :meth:`Predictor.predict`.

    Attributes:
        label_map: uint8 labels on the source volume's grid (same geometry and UIDs), with
            one segment per manifest label.
        provider: The execution provider the session used (e.g. ``CUDAExecutionProvider``).
        timings: Seconds per stage.
        network_shape: ``(X, Y, Z)`` of the network grid.
        windows: Number of sliding windows run.
        removed_voxels: Voxels set to background by small-component removal.
    """

    label_map: LabelMap
    provider: str
    timings: StageTimings
    network_shape: tuple[int, int, int]
    windows: int
    removed_voxels: int


class Predictor:
    """Runs one model package on volumes (safe to share between threads).

    Args:
        package: A loaded, verified model package.
        runtime: Execution providers and thread counts (default: TensorRT, CUDA, CPU).
        memory_budget_bytes: The memory one prediction may use; a series whose network grid
            would need more is refused before it is resampled (``None``: only
            :data:`~radserve.inference.preprocessing.MAX_NETWORK_VOXELS` applies).

    Raises:
        ExecutionProviderError: None of the requested providers is available.
        InvalidModelPackageError: ONNX Runtime cannot load the model.
        IncompatibleModelError: The model's tensors do not fit the manifest.
    """

    def __init__(
        self,
        package: ModelPackage,
        *,
        runtime: RuntimeSettings | None = None,
        memory_budget_bytes: int | None = None,
    ) -> None:
        self.package = package
        self.max_network_voxels = max_network_voxels(
            memory_budget_bytes, package.manifest.output_channels
        )
        self._session = OnnxSession(package.model_path, settings=runtime)
        check_model_io(self._session.io, package.manifest)
        spec = package.manifest.inference
        self._options = SlidingWindowOptions(
            patch_size=spec.patch_size,
            overlap=spec.overlap,
            batch_size=spec.batch_size,
            blending=spec.blending,
            sigma_scale=spec.sigma_scale,
        )
        self._segments = package.segment_infos()

    @property
    def provider(self) -> str:
        """The execution provider the session uses."""
        return self._session.provider

    def predict(self, volume: Volume, *, deadline: float | None = None) -> Prediction:
        """Segment ``volume``; the label map is on the volume's own grid.

        Args:
            volume: The image to segment.
            deadline: A :func:`time.monotonic` time; past it, the sliding window stops
                before its next batch of windows.

        Raises:
            InferenceTimeoutError: ``deadline`` passed during the prediction.
            PreprocessingError: The volume cannot be brought onto the network grid
                (:class:`NetworkGridTooLargeError`: not within the memory budget).
            ModelRunError: ONNX Runtime failed, or the model produced non-finite values.
            IncompatibleModelError: The model's output does not have the expected shape.
        """
        manifest = self.package.manifest
        started = time.perf_counter()
        image = preprocess(volume, manifest.preprocessing, max_voxels=self.max_network_voxels)
        preprocessed = time.perf_counter()
        windows = 0

        def run_batch(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            nonlocal windows
            if deadline is not None and time.monotonic() > deadline:
                raise InferenceTimeoutError(
                    f"inference stopped after {windows} windows: the job timeout has passed"
                )
            windows += batch.shape[0]
            output = self._session.run(batch)
            if output.ndim > 1 and output.shape[1] != manifest.output_channels:
                raise IncompatibleModelError(
                    f"the model output {output.shape[1]} channels, the manifest's "
                    f"{len(manifest.labels)} labels need {manifest.output_channels}"
                )
            return output

        logits = sliding_window_inference(image.array, run_batch, self._options)
        inferred = time.perf_counter()
        if not np.isfinite(logits).all():
            raise ModelRunError("the model produced non-finite outputs (NaN or infinity)")
        network_labels = labels_from_logits(logits)
        del logits
        labels = labels_to_source(network_labels, reference=image.reference, source=volume)
        removed = 0
        if manifest.inference.min_component_voxels is not None:
            labels, removed = remove_small_components(
                labels, min_voxels=manifest.inference.min_component_voxels
            )
        label_map = LabelMap(volume=volume.with_array(labels), segments=self._segments)
        finished = time.perf_counter()
        timings = StageTimings(
            preprocess_s=preprocessed - started,
            inference_s=inferred - preprocessed,
            postprocess_s=finished - inferred,
        )
        logger.info(
            "%s %s on %s: network grid %s, %d windows, %.2f s (pre %.2f, inference %.2f, "
            "post %.2f)",
            manifest.name,
            manifest.version,
            self.provider,
            image.spatial_shape,
            windows,
            timings.total_s,
            timings.preprocess_s,
            timings.inference_s,
            timings.postprocess_s,
        )
        return Prediction(
            label_map=label_map,
            provider=self.provider,
            timings=timings,
            network_shape=image.spatial_shape,
            windows=windows,
            removed_voxels=removed,
        )
