"""The predictor end to end on the real demo CT with a real (tiny) ONNX threshold model.

The model's label 1 is "normalised intensity above t". With t halfway between two possible
normalised values, the expected mask is a plain numpy threshold on the source HU values.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from radserve.dicom_io import Volume, read_series
from radserve.inference import (
    CPU,
    CUDA,
    MAX_NETWORK_VOXELS,
    ExecutionProviderError,
    IncompatibleModelError,
    InferenceTimeoutError,
    ModelPackage,
    NetworkGridTooLargeError,
    Predictor,
    RuntimeSettings,
    available_providers,
    load_model_package,
)
from tests.onnx_models import manifest_dict, threshold_model, write_package

WINDOW_HU = (-1000.0, 1000.0)
THRESHOLD_HU = 100.5  # CT values are integers: the mask is HU >= 101, never a tie
CPU_ONLY = RuntimeSettings(providers=(CPU,), intra_op_threads=2, inter_op_threads=1)


@pytest.fixture(scope="module")
def ct(demo_study: Path) -> Volume:
    return read_series(demo_study / "image")


def _threshold(hu: float) -> float:
    return (hu - WINDOW_HU[0]) / (WINDOW_HU[1] - WINDOW_HU[0])


def _package(
    root: Path, ct: Volume, *, threshold_hu: float = THRESHOLD_HU, **changes: Any
) -> ModelPackage:
    model = threshold_model(_threshold(threshold_hu))
    preprocessing = {
        "orientation": "RAS",
        "target_spacing_mm": list(ct.spacing_mm),
        "intensity": {"window_hu": list(WINDOW_HU), "normalisation": {"method": "scale_to_unit"}},
    }
    inference = {"patch_size": [64, 64, 32], "overlap": 0.5, "batch_size": 4}
    manifest = manifest_dict(model, preprocessing=preprocessing, inference=inference)
    for section, values in changes.items():
        manifest[section] = {**manifest[section], **values}
    return load_model_package(write_package(root, model, manifest))


def test_exact_on_the_source_grid(tmp_path: Path, ct: Volume) -> None:
    package = _package(tmp_path, ct)
    prediction = Predictor(package, runtime=CPU_ONLY).predict(ct)
    label_map = prediction.label_map
    expected = (ct.array > THRESHOLD_HU).astype(np.uint8)
    assert 1000 < expected.sum() < expected.size // 2
    assert label_map.volume.array.dtype == np.uint8
    assert np.array_equal(label_map.volume.array, expected)
    # Same grid and identity as the source, segments from the manifest.
    assert label_map.volume.shape == ct.shape
    assert label_map.volume.spacing_mm == ct.spacing_mm
    assert label_map.volume.origin_mm == ct.origin_mm
    assert np.array_equal(label_map.volume.direction, ct.direction)
    assert label_map.volume.series_instance_uid == ct.series_instance_uid
    assert label_map.volume.sop_instance_uids == ct.sop_instance_uids
    assert label_map.segments == package.segment_infos()
    assert prediction.provider == CPU
    # RAS flips x and y only: the network grid is the source grid, 161 x 143 x 48
    assert prediction.network_shape == (161, 143, 48)
    assert prediction.windows == 5 * 4 * 2  # starts x 0,32,64,96,97; y 0,32,64,79; z 0,16
    assert prediction.removed_voxels == 0
    timings = prediction.timings
    assert timings.total_s == pytest.approx(
        timings.preprocess_s + timings.inference_s + timings.postprocess_s
    )


def test_with_resampling_agrees_with_the_source_threshold(tmp_path: Path, ct: Volume) -> None:
    # The body outline (air below -500 HU): a smooth boundary, where resampling twice (linear
    # there, nearest back) can only move the mask by partial-volume voxels.
    body_hu = -500.5
    package = _package(
        tmp_path,
        ct,
        threshold_hu=body_hu,
        preprocessing={"orientation": "RAI", "target_spacing_mm": [0.8, 0.8, 2.5]},
        inference={"patch_size": [48, 48, 24], "overlap": 0.25, "batch_size": 3},
    )
    prediction = Predictor(package, runtime=CPU_ONLY).predict(ct)
    assert prediction.network_shape == (196, 174, 62)
    expected = ct.array > body_hu
    predicted = prediction.label_map.mask(1)
    agreement = float(np.mean(predicted == expected))
    dice = 2 * np.sum(predicted & expected) / (predicted.sum() + expected.sum())
    assert agreement >= 0.99, agreement
    assert dice >= 0.99, dice
    k, j, i = np.indices(ct.shape)
    world = ct.index_to_lps(np.stack([i, j, k], axis=-1))
    shift_mm = np.linalg.norm(world[predicted].mean(axis=0) - world[expected].mean(axis=0))
    assert shift_mm < 0.5, shift_mm


def test_small_components_are_removed(tmp_path: Path, ct: Volume) -> None:
    package = _package(tmp_path, ct, inference={"min_component_voxels": 30})
    prediction = Predictor(package, runtime=CPU_ONLY).predict(ct)
    raw = ct.array > THRESHOLD_HU
    components, count = ndimage.label(raw)
    sizes = np.bincount(components.ravel())
    kept = np.isin(components, np.flatnonzero(sizes >= 30)) & raw
    assert count > 1 and np.sum(raw & ~kept) > 0
    assert np.array_equal(prediction.label_map.mask(1), kept)
    assert prediction.removed_voxels == int(np.sum(raw & ~kept))


def test_output_channels_are_checked_at_run_time(tmp_path: Path, ct: Volume) -> None:
    # A symbolic channel axis cannot be checked when loading; the first batch is.
    model = threshold_model(0.5, channels=3, symbolic_channels=True)
    package = load_model_package(write_package(tmp_path, model, manifest_dict(model)))
    assert package.io.outputs[0].shape[1] == "K"
    with pytest.raises(IncompatibleModelError, match="the model output 3 channels"):
        Predictor(package, runtime=CPU_ONLY).predict(ct)


def test_a_resample_bomb_is_refused_before_resampling(tmp_path: Path, ct: Volume) -> None:
    """10 slices of 16x16 with a 400 mm Pixel Spacing: about 6500 x 6500 x 10 voxels on the
    model's spacing, under MAX_NETWORK_VOXELS but tens of gigabytes to predict; the memory
    budget refuses it before anything is built."""
    tiny = Volume(
        array=np.zeros((10, 16, 16), dtype=np.int16),
        spacing_mm=(400.0, 400.0, ct.spacing_mm[2]),
        origin_mm=(0.0, 0.0, 0.0),
        direction=np.eye(3),
    )
    predictor = Predictor(
        _package(tmp_path, ct), runtime=CPU_ONLY, memory_budget_bytes=512 * 1024**2
    )
    assert predictor.max_network_voxels < 30_000_000 < 6500 * 6500 * 10 < MAX_NETWORK_VOXELS
    with pytest.raises(NetworkGridTooLargeError, match="inference memory budget allows"):
        predictor.predict(tiny)
    # The real CT fits the same budget.
    assert predictor.predict(ct).label_map.mask(1).any()


def test_a_passed_deadline_stops_the_sliding_window(tmp_path: Path, ct: Volume) -> None:
    predictor = Predictor(_package(tmp_path, ct), runtime=CPU_ONLY)
    with pytest.raises(InferenceTimeoutError, match="after 0 windows: the job timeout"):
        predictor.predict(ct, deadline=time.monotonic() - 1.0)
    later = predictor.predict(ct, deadline=time.monotonic() + 600.0)
    assert later.windows > 0 and later.label_map.mask(1).any()


def test_no_usable_provider(tmp_path: Path, ct: Volume) -> None:
    package = _package(tmp_path, ct)
    with pytest.raises(ExecutionProviderError):
        Predictor(package, runtime=RuntimeSettings(providers=("NoSuchExecutionProvider",)))


@pytest.mark.gpu
def test_cuda_matches_cpu(tmp_path: Path, ct: Volume) -> None:
    if CUDA not in available_providers():
        pytest.skip(f"{CUDA} not available (providers: {list(available_providers())})")
    package = _package(tmp_path, ct)
    predictor = Predictor(package, runtime=RuntimeSettings(providers=(CUDA, CPU)))
    prediction = predictor.predict(ct)
    assert prediction.provider == CUDA
    assert np.array_equal(
        prediction.label_map.volume.array, (ct.array > THRESHOLD_HU).astype(np.uint8)
    )
