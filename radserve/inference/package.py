"""Model packages: ``models/<name>/<version>/`` holding ``model.onnx`` and ``manifest.yaml``.

Loading a package checks, in order, and raises on the first failure:

1. the directory, ``manifest.yaml`` and ``model.onnx`` exist (:class:`ModelNotFoundError`);
2. the manifest is valid YAML and a valid :class:`~radserve.inference.manifest.Manifest`
   (:class:`InvalidModelPackageError`), and its name and version are the directory's;
3. ``model.onnx`` has the manifest's sha256 (:class:`ModelIntegrityError`);
4. ONNX Runtime loads the model and its tensors fit the manifest
   (:class:`InvalidModelPackageError`, :class:`IncompatibleModelError`).

Tensor layout (the contract with training's ONNX export):

* one float32 input ``[N, C, D, H, W]`` with ``C = 1`` (the image) and ``D, H, W`` the
  network's x, y, z axes as :mod:`radserve.inference.preprocessing` defines them: ``D`` runs
  along the direction of the first letter of ``preprocessing.orientation`` (``R`` for
  ``RAS``), ``H`` the second, ``W`` the third, with ``preprocessing.target_spacing_mm`` and
  ``inference.patch_size`` given in the same (x, y, z) order. This is the layout MONAI gives
  after ``LoadImage`` (ITK reader), ``EnsureChannelFirst``, ``Orientation`` and ``Spacing``;
* one float32 output ``[N, K, D, H, W]`` on the same spatial grid with ``K = len(labels) + 1``
  channels of logits (or probabilities): channel 0 is background, channel ``c`` is label
  ``c``.

Dimensions may be symbolic (dynamic). A fixed batch dimension must be 1, with
``inference.batch_size`` 1; fixed spatial dimensions must equal ``inference.patch_size``; a
symbolic channel dimension is checked on the first model call instead.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from radserve.dicom_io import Code, SegmentInfo
from radserve.inference.errors import (
    IncompatibleModelError,
    InvalidModelPackageError,
    ModelIntegrityError,
    ModelNotFoundError,
)
from radserve.inference.manifest import CodeSpec, Manifest, load_manifest
from radserve.inference.runtime import ModelIO, TensorSpec, read_model_io

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.yaml"
_FLOAT = "tensor(float)"
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelPackage:
    """A verified model package.

    Attributes:
        directory: ``models/<name>/<version>/``.
        manifest: The validated manifest.
        io: The ONNX model's input and output tensors.
    """

    directory: Path
    manifest: Manifest
    io: ModelIO

    @property
    def model_path(self) -> Path:
        """The ``model.onnx`` file."""
        return self.directory / MODEL_FILE

    @property
    def model_sha256(self) -> str:
        """The verified sha256 of ``model.onnx``."""
        return self.manifest.model_sha256

    def segment_infos(self) -> tuple[SegmentInfo, ...]:
        """The manifest's labels as segments (see :func:`to_segment_infos`)."""
        return to_segment_infos(self.manifest)


def load_model_package(directory: str | Path) -> ModelPackage:
    """Load and verify the model package in ``directory`` (``models/<name>/<version>/``).

    Raises:
        ModelNotFoundError: The directory or one of its two files is missing.
        InvalidModelPackageError: Invalid manifest, or a model ONNX Runtime cannot load.
        ModelIntegrityError: ``model.onnx`` does not have the manifest's sha256.
        IncompatibleModelError: The model's tensors do not fit the manifest.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelNotFoundError(f"model package directory not found: {directory}")
    manifest_path, model_path = directory / MANIFEST_FILE, directory / MODEL_FILE
    for required in (manifest_path, model_path):
        if not required.is_file():
            raise ModelNotFoundError(f"model package {directory} has no {required.name}")
    manifest = load_manifest(manifest_path)
    if (directory.parent.name, directory.name) != (manifest.name, manifest.version):
        raise InvalidModelPackageError(
            f"manifest says {manifest.name} {manifest.version} but the package directory is "
            f"{directory.parent.name}/{directory.name} (expected models/<name>/<version>/)"
        )
    actual = sha256_of_file(model_path)
    if actual != manifest.model_sha256:
        raise ModelIntegrityError(
            f"{MODEL_FILE} of {manifest.name} {manifest.version} has sha256 {actual}, the "
            f"manifest says {manifest.model_sha256}"
        )
    io = read_model_io(model_path)
    check_model_io(io, manifest)
    logger.info("loaded model package %s %s", manifest.name, manifest.version)
    return ModelPackage(directory=directory, manifest=manifest, io=io)


def sha256_of_file(path: Path) -> str:
    """Lower-case hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def check_model_io(io: ModelIO, manifest: Manifest) -> None:
    """Check the model's tensors against the manifest (layout in the module docstring).

    Raises:
        IncompatibleModelError: Naming the first mismatch.
    """
    if len(io.inputs) != 1 or len(io.outputs) != 1:
        raise IncompatibleModelError(
            f"the model must have one input and one output, it has {len(io.inputs)} and "
            f"{len(io.outputs)}"
        )
    patch = manifest.inference.patch_size
    for role, tensor in (("input", io.inputs[0]), ("output", io.outputs[0])):
        _check_tensor(role, tensor, patch=patch, batch_size=manifest.inference.batch_size)
    channels_in = io.inputs[0].fixed(1)
    if channels_in is not None and channels_in != 1:
        raise IncompatibleModelError(f"the model input has {channels_in} channels, expected 1")
    channels_out = io.outputs[0].fixed(1)
    if channels_out is not None and channels_out != manifest.output_channels:
        raise IncompatibleModelError(
            f"the model outputs {channels_out} channels but the manifest has "
            f"{len(manifest.labels)} labels (expected {manifest.output_channels} channels: "
            f"background + one per label)"
        )


def _check_tensor(
    role: str, tensor: TensorSpec, *, patch: tuple[int, int, int], batch_size: int
) -> None:
    if len(tensor.shape) != 5:
        raise IncompatibleModelError(
            f"the model {role} {tensor.name!r} has rank {len(tensor.shape)} "
            f"(shape {list(tensor.shape)}), expected 5: [N, C, D, H, W]"
        )
    if tensor.element_type != _FLOAT:
        raise IncompatibleModelError(
            f"the model {role} {tensor.name!r} is {tensor.element_type}, expected {_FLOAT}"
        )
    batch = tensor.fixed(0)
    if batch is not None and (batch != 1 or batch_size != 1):
        raise IncompatibleModelError(
            f"the model {role} has a fixed batch size of {batch}: export it with a dynamic "
            f"batch axis, or use batch size 1 in both model and manifest (manifest: {batch_size})"
        )
    for axis, expected in zip(range(2, 5), patch, strict=True):
        size = tensor.fixed(axis)
        if size is not None and size != expected:
            raise IncompatibleModelError(
                f"the model {role} has spatial shape {list(tensor.shape[2:])}, which does not "
                f"fit the manifest's patch size {list(patch)}"
            )


def to_segment_infos(manifest: Manifest) -> tuple[SegmentInfo, ...]:
    """The manifest's labels as :class:`SegmentInfo` (for SEG and SR writers)."""
    return tuple(
        SegmentInfo(
            label=spec.label,
            name=spec.name,
            category=_code(spec.category),
            type=_code(spec.type),
            description=spec.description,
        )
        for spec in manifest.labels
    )


def _code(spec: CodeSpec) -> Code:
    return Code(value=spec.value, scheme=spec.scheme, meaning=spec.meaning)
