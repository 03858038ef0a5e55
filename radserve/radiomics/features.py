"""The result of an extraction: features per segment, with codes, units and skip reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

from radserve.dicom_io import Code
from radserve.radiomics.codes import FeatureName, feature_code, feature_unit, ibsi_concept


@dataclass
class RawExtraction:
    """What the engine computed for a segment (or some of its parts), with PyRadiomics' names.

    Attributes:
        values: Feature values by PyRadiomics name, in PyRadiomics' order.
        skipped: ``(name, reason)`` for each feature that has no value; ``name`` ends in
            ``*`` when a whole class or filtered image was skipped.
        diagnostics: PyRadiomics' ``diagnostics_*`` entries (only when asked for).
    """

    values: dict[str, float] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    diagnostics: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Feature:
    """One feature value.

    Attributes:
        name: PyRadiomics name, ``<image type>_<class>_<feature>``.
        value: The value (finite).
        ibsi_code: The IBSI code of the feature when IBSI defines it on the original image.
        unit: UCUM unit of ``value``.
        code: The concept written to DICOM (IBSI or ``99RADSERVE``, see
            :mod:`radserve.radiomics.codes`).
    """

    name: str
    value: float
    ibsi_code: str | None
    unit: Code
    code: Code

    @classmethod
    def build(cls, name: str, value: float, *, modality: str | None) -> Feature:
        """A feature with its code and unit looked up from its PyRadiomics name."""
        parts = FeatureName.parse(name)
        concept = ibsi_concept(parts.feature_class, parts.feature)
        return cls(
            name=name,
            value=float(value),
            ibsi_code=concept.code
            if concept is not None and parts.image_type == "original"
            else None,
            unit=feature_unit(name, modality=modality),
            code=feature_code(name),
        )


@dataclass(frozen=True)
class SkippedFeature:
    """A feature (or, with a trailing ``*``, a class or filtered image) without a value.

    Attributes:
        name: PyRadiomics name, or a pattern such as ``original_ngtdm_*`` or ``LoG*``.
        reason: Why, in PyRadiomics' words where it gave one.
    """

    name: str
    reason: str


@dataclass(frozen=True)
class SegmentFeatures:
    """The radiomic features of one segment.

    Attributes:
        label: The segment's value in the label map.
        segment_name: The segment's name (Segment Label).
        parameter_set: Identifier of the parameter set (name and hash).
        features: The values, in PyRadiomics' order.
        skipped: Features without a value, with the reason.
        diagnostics: PyRadiomics' ``diagnostics_*`` entries, when asked for.
    """

    label: int
    segment_name: str
    parameter_set: str
    features: tuple[Feature, ...]
    skipped: tuple[SkippedFeature, ...] = ()
    diagnostics: tuple[tuple[str, str], ...] = ()

    def values(self) -> dict[str, float]:
        """Feature values by PyRadiomics name."""
        return {f.name: f.value for f in self.features}

    def diagnostics_dict(self) -> dict[str, str]:
        """The diagnostics as a dictionary."""
        return dict(self.diagnostics)

    @classmethod
    def from_raw(
        cls,
        raw: RawExtraction,
        *,
        label: int,
        segment_name: str,
        parameter_set: str,
        modality: str | None,
    ) -> SegmentFeatures:
        """Attach codes and units to what the engine computed."""
        return cls(
            label=label,
            segment_name=segment_name,
            parameter_set=parameter_set,
            features=tuple(
                Feature.build(name, value, modality=modality) for name, value in raw.values.items()
            ),
            skipped=tuple(SkippedFeature(name, reason) for name, reason in raw.skipped),
            diagnostics=tuple(raw.diagnostics.items()),
        )

    @classmethod
    def failed(
        cls, *, label: int, segment_name: str, parameter_set: str, reason: str
    ) -> SegmentFeatures:
        """A segment PyRadiomics rejected as a whole (kept when errors are skipped)."""
        return cls(
            label=label,
            segment_name=segment_name,
            parameter_set=parameter_set,
            features=(),
            skipped=(SkippedFeature("*", reason),),
        )
