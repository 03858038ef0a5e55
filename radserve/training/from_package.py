"""The PyTorch network of a model package, rebuilt from the package alone.

A package holds ``model.onnx`` and the ``training_config.yaml`` it was trained from. The
config names the MONAI network; the ONNX graph holds its weights, exported by
:func:`~radserve.training.export.export_onnx` under the state-dict names of the network's
parameters, except PReLU slopes, which the exporter reshapes and renames
(``onnx::PRelu_152``) but whose node keeps the module's scope
(``/model/model.1/submodule/submodule.0/conv/unit0/adn/A/PRelu``). Every parameter is
loaded by name (``strict``), so the rebuilt network holds exactly the package's weights;
a package whose graph does not name every parameter is refused.

Used where PyTorch must run the model a package ships, without its training checkpoint:
the reference pipeline of ``bench/pipeline.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from radserve.training.config import load_config
from radserve.training.errors import TrainingError
from radserve.training.networks import build_network

TRAINING_CONFIG = "training_config.yaml"
MODEL_FILE = "model.onnx"


def network_from_package(directory: Path) -> nn.Module:
    """The package's network (eval mode, CPU) with the weights of its ONNX graph.

    Raises:
        TrainingError: No training config, or the graph lacks a parameter or holds one of
            another shape.
    """
    config_path = directory / TRAINING_CONFIG
    if not config_path.is_file():
        raise TrainingError(f"{directory} has no {TRAINING_CONFIG} to rebuild its network from")
    loaded = load_config(config_path)
    network = build_network(
        loaded.config.network, out_channels=len(loaded.config.package.labels) + 1
    )
    weights = _named_weights(onnx.load(str(directory / MODEL_FILE)))
    state = network.state_dict()
    missing = [name for name in state if name not in weights]
    if missing:
        raise TrainingError(
            f"{MODEL_FILE} does not hold {len(missing)} parameters of the network "
            f"(first: {missing[0]}); was it exported by radserve from this config?"
        )
    loaded_state = {}
    for name, tensor in state.items():
        value = weights[name]
        if value.size != tensor.numel():
            raise TrainingError(
                f"{MODEL_FILE}: {name} holds {value.size} values, the network {tensor.numel()}"
            )
        loaded_state[name] = torch.from_numpy(np.array(value, copy=True)).reshape(tensor.shape)
    network.load_state_dict(loaded_state, strict=True)
    network.eval()
    return network


def _named_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The graph's initializers by state-dict name (PReLU slopes by their node's scope)."""
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    named = dict(initializers)
    for node in model.graph.node:
        if node.op_type == "PRelu" and len(node.input) > 1 and node.input[1] in initializers:
            named[_scope_name(node.name) + ".weight"] = initializers[node.input[1]]
    return named


def _scope_name(node_name: str) -> str:
    """``/model/model.1/submodule/submodule.0/conv/unit0/adn/A/PRelu`` ->
    ``model.1.submodule.0.conv.unit0.adn.A``: the exporter writes a container and then
    its child as ``name/name.k``; the state dict has ``name.k``."""
    parts = node_name.strip("/").split("/")[1:-1]  # without the root and the op
    kept = [
        part
        for part, following in zip(parts, [*parts[1:], ""], strict=True)
        if not following.startswith(part + ".")
    ]
    return ".".join(kept)
