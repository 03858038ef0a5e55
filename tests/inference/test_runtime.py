"""ONNX Runtime sessions: provider selection, thread settings, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radserve.inference import (
    CPU,
    CUDA,
    DEFAULT_PROVIDERS,
    ExecutionProviderError,
    InvalidModelPackageError,
    ModelRunError,
    OnnxSession,
    RuntimeSettings,
    available_providers,
    read_model_io,
    select_providers,
)
from tests.onnx_models import threshold_model


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(threshold_model(0.25))
    return path


def test_select_providers_keeps_available_ones_in_order() -> None:
    assert CPU in available_providers()
    assert select_providers(["NoSuchExecutionProvider", CPU, CPU]) == (CPU,)
    selected = select_providers(DEFAULT_PROVIDERS)
    assert selected[-1] == CPU
    assert list(selected) == [p for p in DEFAULT_PROVIDERS if p in available_providers()]


def test_no_available_provider() -> None:
    with pytest.raises(ExecutionProviderError) as info:
        select_providers(["NoSuchExecutionProvider"])
    assert "none of the execution providers ['NoSuchExecutionProvider'] is available" in str(
        info.value
    )
    assert CPU in str(info.value)


def test_session_reports_provider_and_threads(model_path: Path) -> None:
    settings = RuntimeSettings(
        providers=("NoSuchExecutionProvider", CPU), intra_op_threads=2, inter_op_threads=1
    )
    session = OnnxSession(model_path, settings=settings)
    assert session.provider == CPU
    assert session.providers == (CPU,)
    assert session.intra_op_threads == 2
    assert session.inter_op_threads == 1
    assert session.io.inputs[0].shape == ("N", 1, "D", "H", "W")
    assert session.io.outputs[0].fixed(1) == 2
    assert session.io.outputs[0].fixed(2) is None


def test_default_session_uses_the_first_available_provider(model_path: Path) -> None:
    session = OnnxSession(model_path, settings=RuntimeSettings(intra_op_threads=1))
    assert session.provider == select_providers(DEFAULT_PROVIDERS)[0] or session.provider == CPU
    assert session.providers[-1] == CPU


def test_run_values(model_path: Path) -> None:
    session = OnnxSession(
        model_path, settings=RuntimeSettings(providers=(CPU,), intra_op_threads=1)
    )
    batch = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 1, 3, 4, 5) / 100
    output = session.run(batch)
    assert output.dtype == np.float32 and output.shape == (2, 2, 3, 4, 5)
    assert np.array_equal(output[:, 0], np.full((2, 3, 4, 5), 0.25, np.float32))
    assert np.array_equal(output[:, 1], batch[:, 0])


def test_run_error_is_wrapped(model_path: Path) -> None:
    session = OnnxSession(
        model_path, settings=RuntimeSettings(providers=(CPU,), intra_op_threads=1)
    )
    with pytest.raises(ModelRunError, match=r"ONNX Runtime failed on a batch of shape \(2, 3, 4\)"):
        session.run(np.zeros((2, 3, 4), dtype=np.float32))


def test_unloadable_model(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(threshold_model(0.25)[:50])
    with pytest.raises(
        InvalidModelPackageError, match=r"model\.onnx cannot be loaded by ONNX Runtime"
    ):
        read_model_io(path)
    with pytest.raises(
        InvalidModelPackageError, match=r"model\.onnx cannot be loaded by ONNX Runtime"
    ):
        OnnxSession(path, settings=RuntimeSettings(providers=(CPU,)))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one execution provider"):
        RuntimeSettings(providers=())
    with pytest.raises(ValueError, match="thread counts"):
        RuntimeSettings(intra_op_threads=-1)


@pytest.mark.gpu
def test_cuda_session_runs_on_cuda(model_path: Path) -> None:
    if CUDA not in available_providers():
        pytest.skip(f"{CUDA} not available (providers: {list(available_providers())})")
    session = OnnxSession(model_path, settings=RuntimeSettings(providers=(CUDA, CPU)))
    assert session.provider == CUDA
    batch = np.random.default_rng(0).normal(size=(2, 1, 8, 8, 8)).astype(np.float32)
    output = session.run(batch)
    assert np.array_equal(output[:, 1], batch[:, 0])
