"""The inference pipeline for one series: selection check, prediction, radiomics, DICOM results."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pydicom.uid import JPEGLSLossless

from radserve.dicom_io import (
    AlgorithmIdentity,
    ImageSeries,
    ResultSet,
    SegmentationTypeChoice,
    build_results,
)
from radserve.inference import ModelPackage, Prediction, Predictor
from radserve.radiomics import (
    CODING_SCHEMES,
    RadiomicsRunner,
    SegmentFeatures,
    extra_measurements,
    feature_table,
)
from radserve.server.jobs.selection import check_selection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineResult:
    """A prediction, its radiomic features and the DICOM results built from them.

    Attributes:
        prediction: The label map and the prediction's timings.
        results: SEG, SR (with the features as measurements) and overlay.
        features: One entry per segment with voxels; empty without radiomics or findings.
        parameter_set: Identifier (name and hash) of the radiomics parameter set; ``None``
            when the pipeline ran without radiomics.
        radiomics_s: Seconds spent extracting features.
    """

    prediction: Prediction
    results: ResultSet
    features: tuple[SegmentFeatures, ...] = ()
    parameter_set: str | None = None
    radiomics_s: float = 0.0

    def feature_table(self) -> list[dict[str, Any]]:
        """The features as JSON-ready records (:func:`~radserve.radiomics.tables.feature_table`)."""
        return feature_table(self.features)


def algorithm_identity(package: ModelPackage) -> AlgorithmIdentity:
    """The identity written into every result of ``package``."""
    manifest = package.manifest
    return AlgorithmIdentity(
        name=manifest.name, version=manifest.version, model_sha256=package.model_sha256
    )


def run_pipeline(
    series: ImageSeries,
    predictor: Predictor,
    *,
    radiomics: RadiomicsRunner | None = None,
    deadline: float | None = None,
    overlay_transfer_syntax_uid: str = JPEGLSLossless,
    segmentation_type: SegmentationTypeChoice = "auto",
) -> PipelineResult:
    """Check, predict, extract radiomic features and build the SEG, SR and overlay.

    Args:
        series: The series to segment.
        predictor: The model's predictor.
        radiomics: The model's radiomics runner; ``None`` for no features. A series
            without findings gets no features (and an SR saying each segment is absent).
        deadline: A :func:`time.monotonic` time past which the prediction stops (see
            :meth:`Predictor.predict`).
        overlay_transfer_syntax_uid: Transfer syntax of the overlay Secondary Capture
            instances (see :func:`~radserve.dicom_io.sc.overlay.write_overlay_sc`).
        segmentation_type: The SEG's type (see :func:`~radserve.dicom_io.build_results`).

    Raises:
        SeriesNotAcceptedError: The model's selection rules refuse the series.
        InferenceTimeoutError: ``deadline`` passed during the prediction.
        RadiomicsStepError: Feature extraction failed as a whole.
    """
    check_selection(series, predictor.package)
    prediction = predictor.predict(series.volume, deadline=deadline)
    logger.info(
        "prediction on %s in %.2f s (%d windows)",
        prediction.provider,
        prediction.timings.total_s,
        prediction.windows,
    )
    features: tuple[SegmentFeatures, ...] = ()
    radiomics_s = 0.0
    if radiomics is not None:
        begin = time.perf_counter()
        features = tuple(radiomics.run(series.volume, prediction.label_map, deadline=deadline))
        radiomics_s = time.perf_counter() - begin
        logger.info(
            "radiomics (%s): %d features of %d segments in %.2f s",
            radiomics.parameter_set.identifier,
            sum(len(s.features) for s in features),
            len(features),
            radiomics_s,
        )
    results = build_results(
        series,
        prediction.label_map,
        algorithm=algorithm_identity(predictor.package),
        extra_measurements=extra_measurements(features),
        coding_schemes=CODING_SCHEMES,
        overlay_transfer_syntax_uid=overlay_transfer_syntax_uid,
        segmentation_type=segmentation_type,
    )
    return PipelineResult(
        prediction=prediction,
        results=results,
        features=features,
        parameter_set=radiomics.parameter_set.identifier if radiomics is not None else None,
        radiomics_s=radiomics_s,
    )
