"""The inference pipeline for one series: selection check, prediction, DICOM results."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from radserve.dicom_io.algorithm import AlgorithmIdentity
from radserve.dicom_io.results import ResultSet, build_results
from radserve.dicom_io.series import ImageSeries
from radserve.inference.errors import SeriesNotAcceptedError
from radserve.inference.package import ModelPackage
from radserve.inference.predictor import Prediction, Predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineResult:
    """A prediction and the DICOM results built from it."""

    prediction: Prediction
    results: ResultSet


def algorithm_identity(package: ModelPackage) -> AlgorithmIdentity:
    """The identity written into every result of ``package``."""
    manifest = package.manifest
    return AlgorithmIdentity(
        name=manifest.name, version=manifest.version, model_sha256=package.model_sha256
    )


def check_selection(series: ImageSeries, package: ModelPackage) -> None:
    """Raise :class:`SeriesNotAcceptedError` when the model does not accept the series."""
    header = series.headers[0]
    reason = package.manifest.input.mismatch(
        modality=series.volume.modality or str(header.get("Modality", "")),
        body_part_examined=str(header.get("BodyPartExamined", "")) or None,
        series_description=str(header.get("SeriesDescription", "")) or None,
        number_of_slices=series.volume.shape[0],
    )
    if reason is not None:
        raise SeriesNotAcceptedError(f"model {package.manifest.name} does not accept: {reason}")


def run_pipeline(series: ImageSeries, predictor: Predictor) -> PipelineResult:
    """Check, predict and build the SEG, SR and overlay for one series."""
    check_selection(series, predictor.package)
    prediction = predictor.predict(series.volume)
    logger.info(
        "prediction on %s in %.2f s (%d windows)",
        prediction.provider,
        prediction.timings.total_s,
        prediction.windows,
    )
    results = build_results(
        series, prediction.label_map, algorithm=algorithm_identity(predictor.package)
    )
    return PipelineResult(prediction=prediction, results=results)
