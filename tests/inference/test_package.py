"""Model packages: verified loading and a clear error for every way a package can be broken."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from radserve.dicom_io import Code, SegmentInfo
from radserve.inference import (
    IncompatibleModelError,
    InvalidModelPackageError,
    ModelIntegrityError,
    ModelNotFoundError,
    load_model_package,
    to_segment_infos,
)
from tests.onnx_models import (
    conv_model,
    manifest_dict,
    threshold_model,
    write_package,
)

MODEL = threshold_model(0.5)


def test_valid_package(tmp_path: Path) -> None:
    directory = write_package(tmp_path, MODEL)
    package = load_model_package(directory)
    assert directory == tmp_path / "models" / "test-model" / "1.0.0"
    assert package.model_path == directory / "model.onnx"
    assert package.model_sha256 == hashlib.sha256(MODEL).hexdigest()
    assert package.io.inputs[0].name == "image"
    assert package.io.inputs[0].shape == ("N", 1, "D", "H", "W")
    assert package.io.outputs[0].shape == ("N", 2, "D", "H", "W")
    assert package.segment_infos() == (
        SegmentInfo(
            label=1,
            name="Bone",
            category=Code("91723000", "SCT", "Anatomical Structure"),
            type=Code("272673000", "SCT", "Bone"),
            description=None,
        ),
    )
    assert to_segment_infos(package.manifest) == package.segment_infos()


def test_fixed_shapes_matching_the_manifest_are_accepted(tmp_path: Path) -> None:
    model = threshold_model(0.5, input_shape=(1, 1, 16, 16, 8))
    manifest = manifest_dict(model, inference={"batch_size": 1})
    package = load_model_package(write_package(tmp_path, model, manifest))
    assert package.io.outputs[0].shape == (1, 2, 16, 16, 8)


def test_missing_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model package directory not found"):
        load_model_package(tmp_path / "models" / "none" / "1.0.0")
    directory = write_package(tmp_path, MODEL)
    (directory / "manifest.yaml").unlink()
    with pytest.raises(ModelNotFoundError, match=r"has no manifest\.yaml"):
        load_model_package(directory)
    directory = write_package(tmp_path, MODEL)
    (directory / "model.onnx").unlink()
    with pytest.raises(ModelNotFoundError, match=r"has no model\.onnx"):
        load_model_package(directory)


def test_wrong_sha256(tmp_path: Path) -> None:
    directory = write_package(tmp_path, MODEL, manifest_dict(MODEL, model_sha256="0" * 64))
    with pytest.raises(ModelIntegrityError) as info:
        load_model_package(directory)
    assert str(info.value) == (
        f"model.onnx of test-model 1.0.0 has sha256 {hashlib.sha256(MODEL).hexdigest()}, "
        f"the manifest says {'0' * 64}"
    )


def test_truncated_model(tmp_path: Path) -> None:
    truncated = MODEL[: len(MODEL) // 2]
    # Truncated after the manifest was written: the hash no longer matches.
    directory = write_package(tmp_path / "a", truncated, manifest_dict(MODEL))
    with pytest.raises(ModelIntegrityError, match="has sha256"):
        load_model_package(directory)
    # Exported truncated (the hash matches): ONNX Runtime refuses it.
    directory = write_package(tmp_path / "b", truncated, manifest_dict(truncated))
    with pytest.raises(
        InvalidModelPackageError, match=r"model\.onnx cannot be loaded by ONNX Runtime"
    ):
        load_model_package(directory)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    junk = b"\x00\x01garbage" * 100
    directory = write_package(tmp_path, junk, manifest_dict(junk))
    with pytest.raises(InvalidModelPackageError, match="cannot be loaded by ONNX Runtime"):
        load_model_package(directory)


def test_unknown_manifest_key(tmp_path: Path) -> None:
    directory = write_package(tmp_path, MODEL, manifest_dict(MODEL, preprocesing={}))
    with pytest.raises(InvalidModelPackageError, match="unknown key 'preprocesing'"):
        load_model_package(directory)


def test_malformed_yaml(tmp_path: Path) -> None:
    directory = write_package(tmp_path, MODEL, manifest_text="name: test-model\n  version: [\n")
    with pytest.raises(InvalidModelPackageError, match=r"manifest\.yaml is not valid YAML"):
        load_model_package(directory)


def test_hostile_yaml(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\nversion: 1.0.0\n"
    directory = write_package(tmp_path, MODEL, manifest_text=text)
    with pytest.raises(InvalidModelPackageError, match=r"not valid YAML.*python/object/apply"):
        load_model_package(directory)
    assert not marker.exists()


def test_directory_must_be_name_and_version(tmp_path: Path) -> None:
    directory = write_package(tmp_path, MODEL)
    moved = directory.rename(directory.parent / "2.0.0")
    with pytest.raises(InvalidModelPackageError, match=r"manifest says test-model 1\.0\.0 but"):
        load_model_package(moved)


def test_wrong_output_channel_count(tmp_path: Path) -> None:
    model = threshold_model(0.5, channels=3)
    directory = write_package(tmp_path, model, manifest_dict(model))
    with pytest.raises(IncompatibleModelError) as info:
        load_model_package(directory)
    assert str(info.value) == (
        "the model outputs 3 channels but the manifest has 1 labels (expected 2 channels: "
        "background + one per label)"
    )


def test_wrong_patch_size(tmp_path: Path) -> None:
    model = threshold_model(0.5, input_shape=("N", 1, 16, 16, 16))
    directory = write_package(tmp_path, model, manifest_dict(model))
    with pytest.raises(
        IncompatibleModelError, match=r"spatial shape \[16, 16, 16\], which does not fit"
    ):
        load_model_package(directory)


def test_fixed_batch_needs_batch_size_one(tmp_path: Path) -> None:
    model = threshold_model(0.5, input_shape=(1, 1, "D", "H", "W"))
    directory = write_package(tmp_path, model, manifest_dict(model))  # batch_size 2
    with pytest.raises(IncompatibleModelError, match="fixed batch size of 1"):
        load_model_package(directory)


def test_wrong_rank_and_input_channels(tmp_path: Path) -> None:
    model = threshold_model(
        0.5, input_shape=("N", 2, "D", "H", "W"), output_shape=("N", 2, "D", "H", "W")
    )
    directory = write_package(tmp_path / "a", model, manifest_dict(model))
    with pytest.raises(IncompatibleModelError, match="the model input has 2 channels, expected 1"):
        load_model_package(directory)
    weights = np.zeros((2, 1, 1, 1), dtype=np.float32)
    flat = conv_model(weights, np.zeros(2, dtype=np.float32), input_shape=("N", 1, "H", "W"))
    directory = write_package(tmp_path / "b", flat, manifest_dict(flat))
    with pytest.raises(
        IncompatibleModelError, match=r"has rank 4 .* expected 5: \[N, C, D, H, W\]"
    ):
        load_model_package(directory)
