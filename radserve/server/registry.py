"""The model registry: every package under ``models_dir`` loaded once, with one predictor each.

``models_dir`` holds ``<name>/<version>/`` folders (hidden entries and plain files are
ignored). Every package is loaded and verified at start (manifest, sha256, tensors) and gets
one :class:`~radserve.inference.predictor.Predictor`, i.e. one ONNX Runtime session, shared by
all jobs. A bad package stops the start with :class:`ModelRegistryError` naming the folder
and the problem, so that a server never runs with a model half-installed.

A session already uses every core (or the GPU) for one volume, so concurrent jobs take turns:
one semaphore over all models admits ``inference_concurrency`` predictions at a time.
Preprocessing runs inside the turn (it is CPU-heavy too); building the DICOM results does not.

A model whose manifest names a ``radiomics_parameter_set`` also gets a
:class:`~radserve.radiomics.runner.RadiomicsRunner` (unless radiomics is switched
off): the set is loaded here, so an unknown or invalid set stops the start too. Radiomics
runs outside the inference turns, on one process pool shared by every model
(``RadiomicsOptions.workers``), which :meth:`ModelRegistry.close` stops.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from radserve.dicom_io import Volume
from radserve.inference import (
    InferenceError,
    InvalidModelPackageError,
    ModelNotFoundError,
    ModelPackage,
    Prediction,
    Predictor,
    RuntimeSettings,
    load_model_package,
)
from radserve.radiomics import (
    ParameterSetError,
    RadiomicsOptions,
    RadiomicsPool,
    RadiomicsRunner,
    resolve_parameter_set,
)
from radserve.server.settings import SettingsError

logger = logging.getLogger(__name__)

_VERSION_PART = re.compile(r"\d+")


class ModelRegistryError(SettingsError):
    """A model package under ``models_dir`` cannot be loaded; the server does not start."""


class GatedPredictor(Predictor):
    """A predictor whose :meth:`predict` waits for a turn of a shared semaphore.

    Args:
        package: The loaded package.
        runtime: Providers and thread counts.
        gate: The semaphore shared by every model of the registry.
        memory_budget_bytes: The memory one prediction may use (see :class:`Predictor`).
    """

    def __init__(
        self,
        package: ModelPackage,
        *,
        runtime: RuntimeSettings,
        gate: threading.Semaphore,
        memory_budget_bytes: int | None = None,
    ) -> None:
        super().__init__(package, runtime=runtime, memory_budget_bytes=memory_budget_bytes)
        self._gate = gate

    def predict(self, volume: Volume, *, deadline: float | None = None) -> Prediction:
        """Segment ``volume`` once a turn is free (see :meth:`Predictor.predict`)."""
        with self._gate:
            return super().predict(volume, deadline=deadline)


@dataclass(frozen=True)
class RegisteredModel:
    """A loaded model: its package, its shared predictor and its radiomics (if any)."""

    package: ModelPackage
    predictor: Predictor
    radiomics: RadiomicsRunner | None = None

    @property
    def name(self) -> str:
        """The manifest's name."""
        return self.package.manifest.name

    @property
    def version(self) -> str:
        """The manifest's version."""
        return self.package.manifest.version

    @property
    def key(self) -> str:
        """``name/version``."""
        return f"{self.name}/{self.version}"


class ModelRegistry:
    """The loaded model packages.

    Args:
        models_dir: The folder of ``<name>/<version>/`` packages.
        runtime: Providers and thread counts of every session.
        inference_concurrency: Predictions running at once, over all models.
        require_models: Refuse an empty ``models_dir``.
        radiomics: Whether and where radiomics runs (default: on, in the job's thread).
        inference_memory_bytes: The memory one prediction may use (see :class:`Predictor`).

    Raises:
        ModelRegistryError: A package is invalid (its radiomics parameter set included), or
            none is found (with ``require_models``).
    """

    def __init__(
        self,
        models_dir: str | Path,
        *,
        runtime: RuntimeSettings | None = None,
        inference_concurrency: int = 1,
        require_models: bool = True,
        radiomics: RadiomicsOptions | None = None,
        inference_memory_bytes: int | None = None,
    ) -> None:
        if inference_concurrency < 1:
            raise ValueError("inference_concurrency must be at least 1")
        self.models_dir = Path(models_dir)
        self._gate = threading.BoundedSemaphore(inference_concurrency)
        runtime = runtime or RuntimeSettings()
        options = radiomics or RadiomicsOptions()
        self._pool = RadiomicsPool(options.workers) if options.workers > 0 else None
        models: list[RegisteredModel] = []
        for directory in package_directories(self.models_dir):
            try:
                package = load_model_package(directory)
                runner = self._radiomics_runner(package, options)
                predictor = GatedPredictor(
                    package,
                    runtime=runtime,
                    gate=self._gate,
                    memory_budget_bytes=inference_memory_bytes,
                )
            except InferenceError as exc:
                raise ModelRegistryError(
                    f"model package {directory} cannot be loaded: {exc}"
                ) from exc
            models.append(RegisteredModel(package=package, predictor=predictor, radiomics=runner))
            logger.info(
                "model %s %s ready on %s%s",
                package.manifest.name,
                package.manifest.version,
                predictor.provider,
                f", radiomics {runner.parameter_set.identifier}" if runner else "",
            )
        if require_models and not models:
            raise ModelRegistryError(
                f"no model package under {self.models_dir} (expected "
                "<name>/<version>/ folders holding model.onnx and manifest.yaml)"
            )
        models.sort(key=lambda m: (m.name, version_key(m.version)))
        self._models = tuple(models)

    def _radiomics_runner(
        self, package: ModelPackage, options: RadiomicsOptions
    ) -> RadiomicsRunner | None:
        reference = package.manifest.radiomics_parameter_set
        if reference is None or not options.enabled:
            return None
        try:
            parameter_set = resolve_parameter_set(package.directory, reference)
        except ParameterSetError as exc:
            raise InvalidModelPackageError(f"radiomics_parameter_set {reference!r}: {exc}") from exc
        return RadiomicsRunner(parameter_set, pool=self._pool, timeout_s=options.timeout_s)

    def close(self) -> None:
        """Stop the radiomics worker processes (the server is stopping)."""
        if self._pool is not None:
            self._pool.shutdown()

    @property
    def models(self) -> tuple[RegisteredModel, ...]:
        """Every model, by name then version (oldest first)."""
        return self._models

    def latest(self) -> tuple[RegisteredModel, ...]:
        """The newest version of each model name."""
        newest: dict[str, RegisteredModel] = {}
        for model in self._models:  # sorted: the last of a name is its newest
            newest[model.name] = model
        return tuple(newest.values())

    def get(self, name: str, version: str | None = None) -> RegisteredModel:
        """A model by name and version (``None``: its newest version).

        Raises:
            ModelNotFoundError: No such model or version.
        """
        candidates = [m for m in self._models if m.name == name]
        if version is not None:
            candidates = [m for m in candidates if m.version == version]
        if not candidates:
            known = ", ".join(m.key for m in self._models) or "none"
            wanted = f"{name}/{version}" if version else name
            raise ModelNotFoundError(f"no model {wanted!r} is loaded (loaded: {known})")
        return candidates[-1]

    def resolve(self, reference: str) -> RegisteredModel:
        """A model from ``name`` or ``name/version``.

        Raises:
            ModelNotFoundError: No such model or version.
        """
        name, _, version = reference.partition("/")
        return self.get(name, version or None)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold one of the inference turns (for work other than ``predict``)."""
        with self._gate:
            yield

    def check_ready(self) -> None:
        """Raise :class:`ModelNotFoundError` when no model is loaded."""
        if not self._models:
            raise ModelNotFoundError("no model is loaded")


def package_directories(models_dir: Path) -> list[Path]:
    """The ``<name>/<version>/`` folders under ``models_dir``, sorted.

    Raises:
        ModelRegistryError: ``models_dir`` is not a folder, or a model folder holds no
            version folder.
    """
    if not models_dir.is_dir():
        raise ModelRegistryError(f"models_dir {models_dir} is not a folder")
    found: list[Path] = []
    for name_dir in sorted(models_dir.iterdir()):
        if name_dir.name.startswith(".") or not name_dir.is_dir():
            continue
        versions = [
            d for d in sorted(name_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")
        ]
        if not versions:
            raise ModelRegistryError(
                f"model folder {name_dir} holds no <version>/ folder (expected "
                f"{name_dir}/<version>/model.onnx and manifest.yaml)"
            )
        found.extend(versions)
    return found


def version_key(version: str) -> tuple[int, ...]:
    """A sort key ordering semantic versions numerically (``1.10.0`` after ``1.9.0``)."""
    core = version.split("+", 1)[0].split("-", 1)[0]
    return tuple(int(part) for part in _VERSION_PART.findall(core))
