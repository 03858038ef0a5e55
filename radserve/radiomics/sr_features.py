"""Radiomic features as numeric measurements of a TID 1500 measurement report.

Each feature becomes one :class:`~radserve.dicom_io.sr.writing.NumericMeasurement` of its segment's
measurement group: the concept name is the feature's IBSI code (original image, IBSI
defines it) or its ``99RADSERVE`` code (see :mod:`radserve.radiomics.codes`), the unit is
UCUM, and the description, written by :func:`~radserve.dicom_io.sr.writing.write_sr` as the
measurement's Algorithm Parameters, holds the PyRadiomics feature name and the parameter
set's name and hash: ``original_glcm_Contrast; parameter set default sha256:0123...``.

``99RADSERVE`` is a private scheme, so the SR identifies it in its Coding Scheme
Identification Sequence (0008,0110): pass :data:`CODING_SCHEMES` to ``write_sr`` (it writes
the item only when a ``99RADSERVE`` code is used). ``IBSI`` is listed in PS3.16 Table 8-1
(and so known to validators such as dciodvfy) and needs no item.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from radserve.dicom_io import CodingSchemeIdentification, NumericMeasurement
from radserve.radiomics.codes import (
    PRIVATE_SCHEME,
    PRIVATE_SCHEME_NAME,
    PRIVATE_SCHEME_ORGANIZATION,
    PRIVATE_SCHEME_VERSION,
    FeatureName,
)
from radserve.radiomics.features import SegmentFeatures

DESCRIPTION_SEPARATOR = "; parameter set "
PRIVATE_SCHEME_IDENTIFICATION = CodingSchemeIdentification(
    designator=PRIVATE_SCHEME,
    name=PRIVATE_SCHEME_NAME,
    version=PRIVATE_SCHEME_VERSION,
    responsible_organization=PRIVATE_SCHEME_ORGANIZATION,
)
CODING_SCHEMES: tuple[CodingSchemeIdentification, ...] = (PRIVATE_SCHEME_IDENTIFICATION,)
"""The non-standard coding schemes of feature codes, for ``write_sr(coding_schemes=...)``."""


def sr_measurements(
    segment: SegmentFeatures, *, image_types: Collection[str] | None = None
) -> list[NumericMeasurement]:
    """The features of one segment as SR numeric measurements.

    Args:
        segment: The extracted features.
        image_types: PyRadiomics image type names to include (``original``,
            ``log-sigma-1-0-mm-3D``, ``wavelet-LLH``, ...); all by default.
    """
    return [
        NumericMeasurement(
            name=feature.code,
            value=feature.value,
            unit=feature.unit,
            description=f"{feature.name}{DESCRIPTION_SEPARATOR}{segment.parameter_set}",
        )
        for feature in segment.features
        if image_types is None or FeatureName.parse(feature.name).image_type in image_types
    ]


def extra_measurements(
    segments: Sequence[SegmentFeatures], *, image_types: Collection[str] | None = None
) -> dict[int, list[NumericMeasurement]]:
    """``write_sr``'s ``extra_measurements``: each segment's features by label (segments
    without features are left out)."""
    result: dict[int, list[NumericMeasurement]] = {}
    for segment in segments:
        measurements = sr_measurements(segment, image_types=image_types)
        if measurements:
            result[segment.label] = measurements
    return result


def parse_description(description: str) -> tuple[str, str]:
    """Split a measurement description into (PyRadiomics name, parameter set identifier)."""
    name, _, parameter_set = description.partition(DESCRIPTION_SEPARATOR)
    return name, parameter_set
