"""ONNX Runtime sessions: execution providers in priority order, thread counts, one model call.

The providers requested (e.g. TensorRT, then CUDA, then CPU) are filtered to those this
ONNX Runtime build offers, in the requested order. ONNX Runtime may still fall back to a
later one when a provider fails to initialise (missing CUDA libraries, for instance), so
:attr:`OnnxSession.provider` reports the provider the session actually uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
from onnxruntime.capi import (  # type: ignore[import-untyped,unused-ignore]
    onnxruntime_pybind11_state as ort_state,
)

from radserve.inference.errors import (
    ExecutionProviderError,
    InvalidModelPackageError,
    ModelRunError,
)

logger = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_PROVIDERS: tuple[str, ...] = (TENSORRT, CUDA, CPU)

# What ONNX Runtime raises when loading or running a model (all plain Exception subclasses).
_ORT_ERRORS: tuple[type[Exception], ...] = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NoModel,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
    ort_state.EPFail,
    ort_state.EngineError,
)

Dim = int | str | None
"""A tensor dimension: a fixed size, a symbolic name, or unknown."""


@dataclass(frozen=True)
class RuntimeSettings:
    """How sessions are created.

    Attributes:
        providers: Execution providers in priority order; unavailable ones are skipped.
        intra_op_threads: Threads inside one operator; 0 lets ONNX Runtime choose.
        inter_op_threads: Threads across operators; 0 lets ONNX Runtime choose.
        tensorrt_cache_dir: Where TensorRT keeps built engines (building one takes minutes);
            ``None`` disables the cache.
    """

    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    tensorrt_cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.providers:
            raise ValueError("at least one execution provider is needed")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must be 0 (automatic) or positive")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and element type (e.g. ``tensor(float)``) of a model input or output."""

    name: str
    shape: tuple[Dim, ...]
    element_type: str

    def fixed(self, axis: int) -> int | None:
        """The size of ``axis`` when the model fixes it, else ``None``."""
        dim = self.shape[axis]
        return dim if isinstance(dim, int) and dim > 0 else None


@dataclass(frozen=True)
class ModelIO:
    """The inputs and outputs of an ONNX model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def available_providers() -> tuple[str, ...]:
    """Execution providers this ONNX Runtime build offers."""
    return tuple(ort.get_available_providers())


def select_providers(requested: Sequence[str]) -> tuple[str, ...]:
    """The requested providers that are available, in the requested order.

    Raises:
        ExecutionProviderError: None of them is available.
    """
    available = set(available_providers())
    selected = tuple(p for p in dict.fromkeys(requested) if p in available)
    if not selected:
        raise ExecutionProviderError(
            f"none of the execution providers {list(requested)} is available; this ONNX "
            f"Runtime offers {sorted(available)}"
        )
    return selected


def read_model_io(model_path: Path) -> ModelIO:
    """Inputs and outputs of an ONNX model, read with a plain CPU session.

    Raises:
        InvalidModelPackageError: ONNX Runtime cannot load the model.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = _open(model_path, options, [CPU])
    return _model_io(session)


class OnnxSession:
    """An ONNX Runtime inference session on one model with one input and one output.

    Args:
        model_path: The ``model.onnx`` file.
        settings: Providers and thread counts.

    Raises:
        ExecutionProviderError: No requested provider is available.
        InvalidModelPackageError: ONNX Runtime cannot load the model, or it does not have
            exactly one input and one output.
    """

    def __init__(self, model_path: Path, *, settings: RuntimeSettings | None = None) -> None:
        settings = settings or RuntimeSettings()
        selected = select_providers(settings.providers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        self._session = _open(model_path, options, _with_options(selected, settings))
        self.io = _model_io(self._session)
        if len(self.io.inputs) != 1 or len(self.io.outputs) != 1:
            raise InvalidModelPackageError(
                f"{model_path.name} must have one input and one output, it has "
                f"{len(self.io.inputs)} and {len(self.io.outputs)}"
            )
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        self.provider: str = self.providers[0]
        if self.provider != selected[0]:
            logger.warning(
                "execution provider %s requested but the session uses %s",
                selected[0],
                self.provider,
            )
        logger.info("ONNX Runtime session on %s (providers %s)", self.provider, self.providers)

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run the model on one batch and return its output as float32.

        Raises:
            ModelRunError: ONNX Runtime failed (wrong shape, out of memory, provider error).
        """
        feed = {self.io.inputs[0].name: np.ascontiguousarray(batch, dtype=np.float32)}
        try:
            (output,) = self._session.run([self.io.outputs[0].name], feed)
        except _ORT_ERRORS as exc:
            raise ModelRunError(
                f"ONNX Runtime failed on a batch of shape {batch.shape}: {exc}"
            ) from exc
        return np.asarray(output, dtype=np.float32)

    @property
    def intra_op_threads(self) -> int:
        """The intra-op thread count the session was created with (0: automatic)."""
        return int(self._session.get_session_options().intra_op_num_threads)

    @property
    def inter_op_threads(self) -> int:
        """The inter-op thread count the session was created with (0: automatic)."""
        return int(self._session.get_session_options().inter_op_num_threads)


def _with_options(providers: Sequence[str], settings: RuntimeSettings) -> list[Any]:
    entries: list[Any] = []
    for name in providers:
        if name == TENSORRT and settings.tensorrt_cache_dir is not None:
            cache = {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(settings.tensorrt_cache_dir),
            }
            entries.append((name, cache))
        else:
            entries.append(name)
    return entries


def _open(model_path: Path, options: Any, providers: list[Any]) -> Any:
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except _ORT_ERRORS as exc:
        raise InvalidModelPackageError(
            f"{model_path.name} cannot be loaded by ONNX Runtime: {exc}"
        ) from exc


def _model_io(session: Any) -> ModelIO:
    def spec(arg: Any) -> TensorSpec:
        return TensorSpec(name=arg.name, shape=tuple(arg.shape), element_type=arg.type)

    return ModelIO(
        inputs=tuple(spec(a) for a in session.get_inputs()),
        outputs=tuple(spec(a) for a in session.get_outputs()),
    )
