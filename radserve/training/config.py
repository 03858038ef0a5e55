"""The training configuration: one YAML file, validated by pydantic, unknown keys forbidden.

The file is read with ``yaml.safe_load`` (no Python tags, no executable expressions). Any key
can be overridden from the command line with ``--set a.b=value``; the value is parsed as one
YAML scalar (``--set training.epochs=5``, ``--set training.amp=false``) and the whole
configuration is validated again. The preprocessing, inference and label sections use the
serving side's own models (:mod:`radserve.inference.manifest`), so what training runs with is
what the manifest says.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from radserve.inference import (
    InferenceSpec,
    InputSelection,
    LabelSpec,
    PreprocessingSpec,
)
from radserve.training.errors import ConfigError

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Triple = tuple[PositiveInt, PositiveInt, PositiveInt]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Strict):
    """How cases are divided into training and validation.

    Attributes:
        validation_fraction: Share of cases held out (when ``validation`` is empty and
            ``folds`` is unset); cases are shuffled with ``seed``.
        seed: Seed of the shuffle.
        validation: Explicit validation case names; when given, every other case trains.
        force_validation: Cases always put in the validation set (they count towards the
            held-out fraction).
        folds: Number of folds for k-fold cross-validation (``None``: no k-fold).
        fold: Index of the validation fold, 0..folds-1.
    """

    validation_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    seed: int = 0
    validation: tuple[str, ...] = ()
    force_validation: tuple[str, ...] = ()
    folds: Annotated[int, Field(ge=2)] | None = None
    fold: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _fold_in_range(self) -> SplitConfig:
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"fold must be in 0..{self.folds - 1}, got {self.fold}")
        if self.folds is not None and self.validation:
            raise ValueError("give either explicit validation cases or folds, not both")
        return self


class DataConfig(_Strict):
    """Where the cases are and how they are read.

    Attributes:
        datalist: JSON (MSD-style ``{"training": [{"image", "label"}]}``) or CSV
            (``image,label`` columns) file; a relative path is relative to the config file.
        split: Training / validation split.
        skip_bad_cases: Skip cases that cannot be used (missing file, mismatched geometry,
            empty label) instead of failing; either way they are reported by name.
        roi_names: RTSTRUCT ROI names to read as labels 1, 2, ... (``None``: all ROIs).
        cache_rate: Share of preprocessed cases kept in memory (MONAI ``CacheDataset``).
    """

    datalist: Path
    split: SplitConfig = SplitConfig()
    skip_bad_cases: bool = False
    roi_names: tuple[str, ...] | None = None
    cache_rate: Fraction = 1.0


class SegResNetConfig(_Strict):
    """MONAI ``SegResNet``."""

    name: Literal["SegResNet"]
    init_filters: PositiveInt = 8
    blocks_down: tuple[PositiveInt, ...] = (1, 2, 2, 4)
    blocks_up: tuple[PositiveInt, ...] = (1, 1, 1)
    dropout_prob: Fraction | None = None


class UNetConfig(_Strict):
    """MONAI ``UNet`` (residual units)."""

    name: Literal["UNet"]
    channels: Annotated[tuple[PositiveInt, ...], Field(min_length=2)] = (16, 32, 64, 128)
    strides: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (2, 2, 2)
    num_res_units: Annotated[int, Field(ge=0)] = 2
    dropout: Fraction = 0.0

    @model_validator(mode="after")
    def _lengths(self) -> UNetConfig:
        if len(self.strides) != len(self.channels) - 1:
            raise ValueError("UNet needs len(strides) == len(channels) - 1")
        return self


class DynUNetConfig(_Strict):
    """MONAI ``DynUNet`` (nnU-Net style); one kernel size and stride per level."""

    name: Literal["DynUNet"]
    kernel_size: Annotated[tuple[Triple, ...], Field(min_length=2)] = (
        (3, 3, 1),
        (3, 3, 3),
        (3, 3, 3),
        (3, 3, 3),
    )
    strides: Annotated[tuple[Triple, ...], Field(min_length=2)] = (
        (1, 1, 1),
        (2, 2, 1),
        (2, 2, 2),
        (2, 2, 2),
    )
    filters: tuple[PositiveInt, ...] | None = (16, 32, 64, 128)
    norm_name: Literal["instance", "batch"] = "instance"

    @model_validator(mode="after")
    def _lengths(self) -> DynUNetConfig:
        if len(self.kernel_size) != len(self.strides):
            raise ValueError("DynUNet needs one kernel size per stride")
        if self.filters is not None and len(self.filters) != len(self.strides):
            raise ValueError("DynUNet needs one filter count per stride")
        return self


NetworkConfig = Annotated[SegResNetConfig | UNetConfig | DynUNetConfig, Field(discriminator="name")]


class AffineAugmentation(_Strict):
    """Random rotation and scaling (``RandAffined``)."""

    prob: Fraction = 0.2
    rotate_deg: Annotated[float, Field(ge=0.0, le=45.0)] = 10.0
    scale: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.1


class AugmentationConfig(_Strict):
    """Random transforms applied to the cached, preprocessed training cases.

    Attributes:
        samples_per_case: Patches cropped from each case per epoch.
        positive_fraction: Share of patches centred on a foreground voxel (the rest on
            background), ``RandCropByPosNegLabeld``.
        flip_prob: Probability of a flip along each spatial axis.
        intensity_shift: Largest random offset added to the normalised intensities.
        intensity_scale: Largest random relative scaling of the normalised intensities.
        intensity_prob: Probability of each intensity change.
        affine: Optional random rotation and scaling.
    """

    samples_per_case: PositiveInt = 2
    positive_fraction: Fraction = 0.67
    flip_prob: Fraction = 0.5
    intensity_shift: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    intensity_scale: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    intensity_prob: Fraction = 0.5
    affine: AffineAugmentation | None = None


class OptimConfig(_Strict):
    """Loop, optimiser and schedule.

    Attributes:
        epochs: Epochs at most (the cosine schedule spans them all).
        batch_size: Cases per step (each gives ``samples_per_case`` patches).
        learning_rate: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_epochs: Linear warm-up from 0 to the peak, then cosine decay to 0.
        validate_every: Validate every N epochs (and after the last).
        checkpoint_every: Save ``last.pt`` every N epochs.
        patience: Stop after this many epochs without a better validation Dice.
        max_minutes: Stop after this much wall time (checked after each epoch).
        num_threads: Torch CPU threads.
        amp: Mixed precision; used only on a GPU.
        device: ``auto`` (GPU when available), ``cpu`` or ``cuda``.
    """

    epochs: PositiveInt = 100
    batch_size: PositiveInt = 2
    learning_rate: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-5
    warmup_epochs: Annotated[int, Field(ge=0)] = 5
    validate_every: PositiveInt = 5
    checkpoint_every: PositiveInt = 5
    patience: PositiveInt = 50
    max_minutes: PositiveFloat | None = None
    num_threads: PositiveInt = 2
    amp: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"


class PackageConfig(_Strict):
    """What the exported model package says about itself (manifest and model card)."""

    input: InputSelection
    labels: Annotated[tuple[LabelSpec, ...], Field(min_length=1)]
    radiomics_parameter_set: str | None = "default"
    dataset: Annotated[str, Field(min_length=1)]
    dataset_licence: Annotated[str, Field(min_length=1)]
    intended_use: Annotated[str, Field(min_length=1)] = "research use; not for diagnostic use"
    description: str = ""


class TrainingConfig(_Strict):
    """The whole training configuration file.

    Attributes:
        name: Model name (the package folder ``models/<name>/<version>/``).
        version: Model version (semantic version).
        seed: Seed of everything random (``monai.utils.set_determinism``).
        output_dir: Checkpoints and metrics; relative paths are relative to the config file.
        data: Cases and split.
        preprocessing: The manifest's preprocessing (training builds its transforms from it).
        inference: The manifest's sliding-window settings; ``patch_size`` is also the
            training patch size, and validation uses the same window.
        network: Architecture (allow-list: SegResNet, UNet, DynUNet) and hyperparameters.
        augmentation: Random transforms.
        optim: Loop, optimiser and schedule.
        package: Manifest and model card contents.
        export: Export the best checkpoint to ``export_dir`` right after training.
        export_dir: Package folder for ``export: true`` (relative to the config file).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")]
    seed: int = 0
    output_dir: Path
    data: DataConfig
    preprocessing: PreprocessingSpec
    inference: InferenceSpec
    network: NetworkConfig
    augmentation: AugmentationConfig = AugmentationConfig()
    optim: OptimConfig = OptimConfig()
    package: PackageConfig
    export: bool = False
    export_dir: Path | None = None

    @model_validator(mode="after")
    def _export_dir_given(self) -> TrainingConfig:
        if self.export and self.export_dir is None:
            raise ValueError("export: true needs export_dir")
        return self


class LoadedConfig(BaseModel):
    """A validated configuration with where it came from.

    Attributes:
        config: The validated configuration.
        text: The YAML text after overrides (what the checkpoint and package keep).
        base_dir: Folder relative paths in the configuration are resolved against.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    config: TrainingConfig
    text: str
    base_dir: Path

    @property
    def sha256(self) -> str:
        """sha256 of :attr:`text`."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def resolve(self, path: Path) -> Path:
        """``path`` made absolute against :attr:`base_dir`."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    """Read, override and validate a training configuration file.

    Raises:
        ConfigError: Unreadable file, invalid YAML, a bad override, or an invalid
            configuration (every problem named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read training config {path}: {exc}") from exc
    return parse_config(text, overrides=overrides, base_dir=path.resolve().parent, source=path.name)


def parse_config(
    text: str,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    base_dir: Path,
    source: str = "config",
) -> LoadedConfig:
    """Validate configuration YAML text after applying ``--set`` overrides.

    Raises:
        ConfigError: As :func:`load_config`.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a YAML mapping, got {type(data).__name__}")
    if overrides:
        data = apply_overrides(data, overrides)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    try:
        config = TrainingConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise ConfigError(f"{source} is invalid: {problems}") from exc
    return LoadedConfig(config=config, text=text, base_dir=base_dir)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``data`` with each ``a.b.c=value`` set (value parsed as a YAML scalar).

    Raises:
        ConfigError: An override without ``=``, with an empty key, a value that is not a
            scalar, or a path through a non-mapping.
    """
    result = copy.deepcopy(data)
    for override in overrides:
        key, sep, raw = override.partition("=")
        parts = key.strip().split(".")
        if not sep or any(not part for part in parts):
            raise ConfigError(f"--set needs key=value with a dotted key, got {override!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value is not valid YAML: {exc}") from exc
        if isinstance(value, dict):
            raise ConfigError(f"--set {key}: value must be a scalar or a list, got a mapping")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return result


def _describe(error: ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {location!r}"
    if error["type"] == "missing":
        return f"missing field {location!r}"
    if error["type"] == "union_tag_invalid":
        return f"{location}: network name must be one of SegResNet, UNet, DynUNet"
    message = error["msg"].removeprefix("Value error, ")
    return f"{location or 'config'}: {message}"
