"""``manifest.yaml``: what serving knows about a model, written by training.

The manifest is the contract between training and serving (see DESIGN.md, "The model
package"). Every model is frozen and forbids unknown keys, so a typo in a manifest is an
error at load time rather than a setting silently ignored. An example::

    name: sts-ct-gtv
    version: 1.2.0
    model_sha256: 3b0c...e1          # sha256 of model.onnx, 64 lower-case hex digits
    input:
      modalities: [CT]
      body_parts: []                 # empty: any Body Part Examined
      series_description_regex: null
      min_slices: 10
    preprocessing:
      orientation: RAS               # the network's axes x, y, z point to R, A, S
      target_spacing_mm: [1.0, 1.0, 3.0]   # along x, y, z
      intensity:
        window_hu: [-200.0, 300.0]   # clip, in modality units (HU for CT)
        normalisation: {method: scale_to_unit}   # or {method: zscore, mean: .., std: ..}
    inference:
      patch_size: [96, 96, 32]       # along x, y, z
      overlap: 0.5
      batch_size: 2
      blending: gaussian
      sigma_scale: 0.125
      min_component_voxels: 50       # optional
    labels:
      - label: 1
        name: GTV
        category: {value: "49755003", scheme: SCT, meaning: Morphologically Abnormal Structure}
        type: {value: "108369006", scheme: SCT, meaning: Neoplasm}
    radiomics_parameter_set: default   # optional
    provenance:
      training_config_sha256: 9f2c...04
      dataset: TCIA Soft-tissue-Sarcoma, 39 training / 4 validation cases
      validation_metrics: {dice: 0.81}
      intended_use: Research only; results need review by a radiologist.
      created: 2025-01-31T12:00:00Z

The meaning of ``orientation``, ``target_spacing_mm`` and ``patch_size`` (and so the tensor
layout) is defined in :mod:`radserve.inference.preprocessing`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from radserve.inference.errors import InvalidModelPackageError

MAX_LABEL = 255
"""Largest label value: predictions are uint8 label maps."""

# Semantic Versioning 2.0.0, the regular expression recommended by semver.org.
_SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# The name is a directory name in models/<name>/<version>/: no separators, no leading dot.
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SHA256 = r"^[0-9a-f]{64}$"
_AXIS_PAIRS = ({"R", "L"}, {"A", "P"}, {"S", "I"})

Sha256 = Annotated[str, Field(pattern=_SHA256)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
Text = Annotated[str, Field(min_length=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# A DICOM text value of one line (SH, LO): no backslash (the value separator) and no control
# character; a label's name and codes are written verbatim into the SEG and the SR.
_ONE_VALUE = r"^[^\\\x00-\x1f\x7f]+$"
ShortText = Annotated[str, Field(min_length=1, max_length=16, pattern=_ONE_VALUE)]
LongText = Annotated[str, Field(min_length=1, max_length=64, pattern=_ONE_VALUE)]


class CodeSpec(_Frozen):
    """A coded concept: code value, coding scheme designator, code meaning (DICOM limits)."""

    value: ShortText
    scheme: ShortText
    meaning: LongText


class LabelSpec(_Frozen):
    """One output class: ``label`` is also the output channel index of its logit."""

    label: Annotated[int, Field(ge=1, le=MAX_LABEL)]
    name: LongText
    category: CodeSpec
    type: CodeSpec
    description: LongText | None = None


class InputSelection(_Frozen):
    """Which series a model accepts.

    Attributes:
        modalities: Accepted Modality values (e.g. ``CT``).
        body_parts: Accepted Body Part Examined values; empty accepts any.
        series_description_regex: ``re.search`` pattern the Series Description must match;
            ``None`` accepts any.
        min_slices: Fewest slices a series needs.
    """

    modalities: Annotated[tuple[Text, ...], Field(min_length=1)]
    body_parts: tuple[Text, ...] = ()
    series_description_regex: str | None = None
    min_slices: Annotated[int, Field(ge=1)] = 3

    @field_validator("modalities", "body_parts")
    @classmethod
    def _upper_case(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.upper() for v in values)

    @field_validator("series_description_regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern

    def mismatch(
        self,
        *,
        modality: str | None,
        body_part_examined: str | None,
        series_description: str | None,
        number_of_slices: int,
    ) -> str | None:
        """Why a series is not accepted, or ``None`` when it is."""
        if (modality or "").upper() not in self.modalities:
            return f"modality {modality!r} is not one of {list(self.modalities)}"
        if self.body_parts and (body_part_examined or "").upper() not in self.body_parts:
            return f"body part {body_part_examined!r} is not one of {list(self.body_parts)}"
        if self.series_description_regex is not None and not re.search(
            self.series_description_regex, series_description or ""
        ):
            return "series description does not match the model's selection pattern"
        if number_of_slices < self.min_slices:
            return f"{number_of_slices} slices, the model needs at least {self.min_slices}"
        return None


class ScaleToUnit(_Frozen):
    """Map the intensity window linearly onto [0, 1]."""

    method: Literal["scale_to_unit"]


class ZScore(_Frozen):
    """Subtract ``mean`` and divide by ``std`` (after clipping to the window)."""

    method: Literal["zscore"]
    mean: Finite
    std: PositiveFinite


class IntensitySpec(_Frozen):
    """Clip to ``window_hu`` (modality units, HU for CT), then normalise."""

    window_hu: tuple[Finite, Finite]
    normalisation: Annotated[ScaleToUnit | ZScore, Field(discriminator="method")]

    @field_validator("window_hu")
    @classmethod
    def _ordered(cls, window: tuple[float, float]) -> tuple[float, float]:
        if not window[0] < window[1]:
            raise ValueError(f"window low must be below window high, got {list(window)}")
        return window


class PreprocessingSpec(_Frozen):
    """How a volume becomes the network's input (see :mod:`radserve.inference.preprocessing`).

    Attributes:
        orientation: Three-letter code of the network's x, y, z axes, each letter the
            direction the axis points to (``RAS``: x to the right, y anterior, z superior;
            ``LPS``: DICOM's patient axes).
        target_spacing_mm: Voxel size along the network's x, y, z.
        intensity: Clipping and normalisation.
    """

    orientation: str
    target_spacing_mm: tuple[PositiveFinite, PositiveFinite, PositiveFinite]
    intensity: IntensitySpec

    @field_validator("orientation")
    @classmethod
    def _orientation_code(cls, code: str) -> str:
        code = code.upper()
        if len(code) != 3 or any(len({*code} & pair) != 1 for pair in _AXIS_PAIRS):
            raise ValueError(
                f"orientation must be three letters, one of R/L, A/P and S/I each (e.g. RAS, "
                f"LPS), got {code!r}"
            )
        return code


class InferenceSpec(_Frozen):
    """Sliding-window settings (MONAI ``sliding_window_inference`` semantics).

    Attributes:
        patch_size: Window size along the network's x, y, z, in voxels.
        overlap: Fraction of a window shared with its neighbour, in [0, 1).
        batch_size: Windows per model call.
        blending: ``gaussian`` (importance-weighted) or ``constant`` (plain average).
        sigma_scale: Gaussian sigma as a fraction of the patch size.
        min_component_voxels: Connected components of a label smaller than this (on the
            source grid) are removed; ``None`` keeps all.
    """

    patch_size: tuple[PositiveInt, PositiveInt, PositiveInt]
    overlap: Annotated[float, Field(ge=0.0, lt=1.0)]
    batch_size: PositiveInt
    blending: Literal["gaussian", "constant"] = "gaussian"
    sigma_scale: PositiveFinite = 0.125
    min_component_voxels: PositiveInt | None = None


class Provenance(_Frozen):
    """Where the model comes from and what it is for."""

    training_config_sha256: Sha256
    dataset: Text
    validation_metrics: dict[str, Finite]
    intended_use: Text
    created: AwareDatetime


class Manifest(_Frozen):
    """The whole ``manifest.yaml`` of one model package."""

    name: Annotated[str, Field(pattern=_NAME)]
    version: Annotated[str, Field(pattern=_SEMVER)]
    model_sha256: Sha256
    input: InputSelection
    preprocessing: PreprocessingSpec
    inference: InferenceSpec
    labels: Annotated[tuple[LabelSpec, ...], Field(min_length=1)]
    radiomics_parameter_set: Text | None = None
    provenance: Provenance

    @field_validator("model_sha256", mode="before")
    @classmethod
    def _lower_case_hash(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _labels_are_channels(self) -> Manifest:
        labels = [spec.label for spec in self.labels]
        if labels != list(range(1, len(labels) + 1)):
            raise ValueError(
                f"labels must be 1, 2, ..., n in order (label = output channel), got {labels}"
            )
        names = [spec.name for spec in self.labels]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"label names must be unique, repeated: {duplicates}")
        return self

    @property
    def output_channels(self) -> int:
        """Channels the network outputs: background plus one per label."""
        return len(self.labels) + 1


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key_node) for key_node, _ in node.value]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate key(s) {repeated}", node.start_mark
        )
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def parse_manifest(text: str, *, source: str = "manifest.yaml") -> Manifest:
    """Validate manifest YAML text.

    Raises:
        InvalidModelPackageError: Not YAML, not a mapping, or not a valid manifest; the
            message names every problem (unknown key, missing field, bad value).
    """
    try:
        # A SafeLoader subclass: no Python object tags are ever constructed.
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise InvalidModelPackageError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidModelPackageError(
            f"{source} must be a YAML mapping, got {type(data).__name__}"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise InvalidModelPackageError(f"{source} is invalid: {problems}") from exc


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a ``manifest.yaml``.

    Raises:
        InvalidModelPackageError: The file cannot be read or is not a valid manifest.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidModelPackageError(f"cannot read {path.name}: {exc}") from exc
    return parse_manifest(text, source=path.name)


def manifest_to_yaml(manifest: Manifest) -> str:
    """The manifest as YAML text that :func:`parse_manifest` reads back unchanged."""
    return yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _describe(error: ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {location!r}"
    if error["type"] == "missing":
        return f"missing field {location!r}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{location or 'manifest'}: {message}"
