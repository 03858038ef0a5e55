"""Tiny real ONNX models and model packages for the inference tests (built with ``onnx``)."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

Dim = int | str

DYNAMIC: tuple[Dim, ...] = ("N", 1, "D", "H", "W")
# The radiomics parameter set test manifests name: original image, shape and first order
# only, written into each package folder by write_package, so that jobs in tests stay quick.
SMALL_SET_FILE = "small.yaml"
SMALL_SET: dict[str, Any] = {
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None},
    "setting": {"binWidth": 25, "voxelArrayShift": 1000, "minimumROIDimensions": 2},
}
OPSET = 17
IR_VERSION = 9


def conv_model(
    weights: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    *,
    input_shape: tuple[Dim, ...] = DYNAMIC,
    output_shape: tuple[Dim, ...] | None = None,
    symbolic_channels: bool = False,
) -> bytes:
    """A single 3D convolution ``[K, 1, k, k, k]`` with 'same' zero padding, serialised.

    With ``symbolic_channels`` the weights are also graph inputs (overridable initializers)
    of shape ``["K", ...]``, so ONNX Runtime reports the output channel axis as ``"K"``.
    """
    kernel = weights.shape[2:]
    pads = [k // 2 for k in kernel] * 2
    if output_shape is None:
        output_shape = (input_shape[0], weights.shape[0], *input_shape[2:])
    node = helper.make_node(
        "Conv", ["image", "W", "B"], ["logits"], kernel_shape=list(kernel), pads=pads
    )
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(input_shape))]
    if symbolic_channels:
        output_shape = (output_shape[0], "K", *output_shape[2:])
        inputs += [
            helper.make_tensor_value_info("W", TensorProto.FLOAT, ["K", *weights.shape[1:]]),
            helper.make_tensor_value_info("B", TensorProto.FLOAT, ["K"]),
        ]
    graph = helper.make_graph(
        [node],
        "radserve-test",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(output_shape))],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def threshold_model(threshold: float, *, channels: int = 2, **shapes: Any) -> bytes:
    """Channel 0 (background) = ``threshold``, channel 1 = the input, others = -1000.

    Its argmax is label 1 exactly where the (normalised) input exceeds ``threshold``.
    """
    weights = np.zeros((channels, 1, 1, 1, 1), dtype=np.float32)
    weights[1] = 1.0
    bias = np.full(channels, -1000.0, dtype=np.float32)
    bias[0], bias[1] = threshold, 0.0
    return conv_model(weights, bias, **shapes)


def identity_model(*, kernel: int = 3) -> bytes:
    """A ``kernel``-cubed convolution with centre weight 1: output = input."""
    weights = np.zeros((1, 1, kernel, kernel, kernel), dtype=np.float32)
    weights[0, 0, kernel // 2, kernel // 2, kernel // 2] = 1.0
    return conv_model(weights, np.zeros(1, dtype=np.float32))


def manifest_dict(model: bytes, **sections: Any) -> dict[str, Any]:
    """A valid manifest for ``model``; keyword arguments replace or merge top-level entries."""
    manifest: dict[str, Any] = {
        "name": "test-model",
        "version": "1.0.0",
        "model_sha256": hashlib.sha256(model).hexdigest(),
        "input": {"modalities": ["CT"], "body_parts": [], "min_slices": 3},
        "preprocessing": {
            "orientation": "RAS",
            "target_spacing_mm": [1.0, 1.0, 1.0],
            "intensity": {
                "window_hu": [-1000.0, 1000.0],
                "normalisation": {"method": "scale_to_unit"},
            },
        },
        "inference": {
            "patch_size": [16, 16, 8],
            "overlap": 0.25,
            "batch_size": 2,
            "blending": "gaussian",
            "sigma_scale": 0.125,
        },
        "labels": [
            {
                "label": 1,
                "name": "Bone",
                "category": {
                    "value": "91723000",
                    "scheme": "SCT",
                    "meaning": "Anatomical Structure",
                },
                "type": {"value": "272673000", "scheme": "SCT", "meaning": "Bone"},
            }
        ],
        "radiomics_parameter_set": SMALL_SET_FILE,
        "provenance": {
            "training_config_sha256": "0" * 64,
            "dataset": "synthetic test model, no training data",
            "validation_metrics": {"dice": 1.0},
            "intended_use": "tests only",
            "created": "2025-01-31T12:00:00Z",
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(manifest.get(key), dict):
            manifest[key] = {**manifest[key], **value}
        else:
            manifest[key] = value
    return copy.deepcopy(manifest)


def write_package(
    root: Path,
    model: bytes,
    manifest: dict[str, Any] | None = None,
    *,
    manifest_text: str | None = None,
) -> Path:
    """Write ``root/models/<name>/<version>/{model.onnx, manifest.yaml}`` (and
    :data:`SMALL_SET` as ``small.yaml``); return the folder."""
    manifest = manifest if manifest is not None else manifest_dict(model)
    directory = root / "models" / str(manifest.get("name", "x")) / str(manifest.get("version", "x"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(model)
    text = manifest_text if manifest_text is not None else yaml.safe_dump(manifest, sort_keys=False)
    (directory / "manifest.yaml").write_text(text, encoding="utf-8")
    write_small_set(directory)
    return directory


def write_small_set(folder: Path, name: str = SMALL_SET_FILE) -> Path:
    """Write :data:`SMALL_SET` as ``folder/name``; return the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(SMALL_SET, sort_keys=False), encoding="utf-8")
    return path
