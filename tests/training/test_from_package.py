"""The shipped package's PyTorch network, rebuilt from the package alone (its training config
and the weights of its ONNX graph): the same logits as ONNX Runtime on the package's graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from radserve.training import TrainingError, network_from_package
from tests.conftest import REPO_ROOT
from tests.onnx_models import threshold_model

PACKAGE = REPO_ROOT / "models" / "sts-ct-gtv" / "1.1.0"


def test_the_rebuilt_network_computes_what_the_onnx_graph_computes() -> None:
    network = network_from_package(PACKAGE)
    patch = np.random.default_rng(7).standard_normal((1, 1, 96, 96, 32)).astype(np.float32)
    session = ort.InferenceSession(str(PACKAGE / "model.onnx"), providers=["CPUExecutionProvider"])
    [onnx_logits] = session.run(None, {session.get_inputs()[0].name: patch})
    with torch.no_grad():
        torch_logits = network(torch.from_numpy(patch)).numpy()
    assert torch_logits.shape == onnx_logits.shape
    assert np.abs(torch_logits - onnx_logits).max() < 1e-3
    prelu = [m for m in network.modules() if isinstance(m, torch.nn.PReLU)]
    assert prelu and all(float(m.weight) != 0.25 for m in prelu)  # trained, not initial, slopes


def test_a_package_without_its_config_or_weights_is_refused(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(PACKAGE / "model.onnx", bare / "model.onnx")
    with pytest.raises(TrainingError, match=r"no training_config\.yaml"):
        network_from_package(bare)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(PACKAGE / "training_config.yaml", other / "training_config.yaml")
    (other / "model.onnx").write_bytes(threshold_model(0.5))
    with pytest.raises(TrainingError, match="does not hold 48 parameters"):
        network_from_package(other)
