"""Sliding-window inference against a per-voxel brute-force reference and simple models."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from radserve.inference import (
    IncompatibleModelError,
    OnnxSession,
    RuntimeSettings,
    SlidingWindowOptions,
    importance_map,
    sliding_window_inference,
    window_starts,
)
from tests.onnx_models import identity_model


@pytest.mark.parametrize(
    ("size", "patch", "overlap", "expected"),
    [
        # Worked by hand from MONAI's _get_scan_interval and dense_patch_slices.
        (10, 4, 0.5, [0, 2, 4, 6]),
        (11, 4, 0.25, [0, 3, 6, 7]),
        (4, 4, 0.5, [0]),
        (5, 4, 0.9, [0, 1]),
        (7, 3, 0.0, [0, 3, 4]),
        (161, 64, 0.5, [0, 32, 64, 96, 97]),
    ],
)
def test_window_starts(size: int, patch: int, overlap: float, expected: list[int]) -> None:
    assert window_starts(size, patch, overlap) == expected


def test_importance_map_is_monais_gaussian() -> None:
    patch = (5, 4, 3)
    weights = importance_map(patch, blending="gaussian", sigma_scale=0.125)
    assert weights.dtype == np.float32 and weights.shape == patch
    profiles = []
    for n in patch:
        x = np.arange(n) - (n - 1) / 2
        profiles.append(np.exp(-(x**2) / (2 * (0.125 * n) ** 2)))
    expected = np.einsum("i,j,k->ijk", *profiles)
    expected = np.maximum(expected, max(expected.min(), 1e-3))
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert weights.min() == np.float32(1e-3)  # the floor is active for sigma 0.125
    assert np.array_equal(weights, weights[::-1, ::-1, ::-1])  # symmetric
    assert np.array_equal(
        importance_map(patch, blending="constant", sigma_scale=0.125), np.ones(patch)
    )


def _position_model(seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(2, 4, 4, 3)).astype(np.float32),
        rng.normal(size=(2, 4, 4, 3)).astype(np.float32),
    )


def _brute_force(
    image: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    offset: npt.NDArray[np.float32],
    options: SlidingWindowOptions,
) -> npt.NDArray[np.float64]:
    """Per output voxel: the weighted mean over every window that covers it (float64)."""
    patch = options.patch_size
    pads = [max(p - n, 0) for n, p in zip(image.shape[1:], patch, strict=True)]
    padded = np.pad(image, [(0, 0)] + [(p // 2, p - p // 2) for p in pads])
    size = padded.shape[1:]
    starts_per_axis = []
    for n, p in zip(size, patch, strict=True):
        step = p if n == p else max(int(p * (1 - options.overlap)), 1)
        starts = []
        for idx in range(math.ceil(n / step)):
            starts.append(min(idx * step, n - p))
            if idx * step + p >= n:
                break
        starts_per_axis.append(starts)
    windows = list(itertools.product(*starts_per_axis))
    weights = importance_map(patch, blending=options.blending, sigma_scale=options.sigma_scale)
    result = np.zeros((2, *size))
    for voxel in itertools.product(*(range(n) for n in size)):
        num, den = np.zeros(2), 0.0
        for start in windows:
            local = tuple(v - s for v, s in zip(voxel, start, strict=True))
            if all(0 <= q < p for q, p in zip(local, patch, strict=True)):
                x = padded[0][voxel]
                value = np.array([x * scale[c][local] + offset[c][local] for c in range(2)])
                num += float(weights[local]) * value
                den += float(weights[local])
        result[(slice(None), *voxel)] = num / den
    crop = tuple(slice(p // 2, p // 2 + n) for p, n in zip(pads, image.shape[1:], strict=True))
    return result[(slice(None), *crop)]


@pytest.mark.parametrize(
    ("shape", "overlap", "blending"),
    [((9, 7, 6), 0.5, "gaussian"), ((3, 7, 5), 0.25, "gaussian"), ((9, 5, 3), 0.6, "constant")],
)
def test_matches_brute_force(shape: tuple[int, int, int], overlap: float, blending: str) -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(size=(1, *shape)).astype(np.float32)
    scale, offset = _position_model(5)
    options = SlidingWindowOptions(
        patch_size=(4, 4, 3),
        overlap=overlap,
        batch_size=3,
        blending=blending,  # type: ignore[arg-type]
        accumulate_dtype=np.float64,
    )

    def run_batch(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return (batch[:, :1] * scale + offset).astype(np.float32)

    result = sliding_window_inference(image, run_batch, options)
    expected = _brute_force(image, scale, offset, options)
    assert result.shape == (2, *shape)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_batches_cover_all_windows() -> None:
    image = np.zeros((1, 10, 11, 4), dtype=np.float32)
    options = SlidingWindowOptions(patch_size=(4, 4, 4), overlap=0.5, batch_size=5)
    sizes: list[tuple[int, ...]] = []

    def run_batch(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        sizes.append(batch.shape)
        return batch

    sliding_window_inference(image, run_batch, options)
    # 4 starts along x (0, 2, 4, 6), 5 along y (0, 2, 4, 6, 7), 1 along z: 20 windows
    assert sizes == [(5, 1, 4, 4, 4)] * 4


def test_constant_model_gives_constant_output() -> None:
    image = np.random.default_rng(1).normal(size=(1, 13, 9, 6)).astype(np.float32)
    values = np.array([0.1, -3.7, 12345.678], dtype=np.float32)

    def run_batch(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.broadcast_to(values[None, :, None, None, None], (len(batch), 3, 5, 4, 4)).copy()

    for dtype in (np.float64, np.float32):
        options = SlidingWindowOptions(
            patch_size=(5, 4, 4), overlap=0.5, batch_size=4, accumulate_dtype=dtype
        )
        result = sliding_window_inference(image, run_batch, options)
        assert result.shape == (3, 13, 9, 6)
        expected = np.broadcast_to(values[:, None, None, None], result.shape)
        if dtype is np.float64:
            assert np.array_equal(result, expected)
        else:  # float32 accumulation (as MONAI) rounds in the last bits
            np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_identity_model_reproduces_the_input() -> None:
    image = np.random.default_rng(2).normal(size=(2, 11, 10, 7)).astype(np.float32)
    options = SlidingWindowOptions(
        patch_size=(6, 6, 4), overlap=0.5, batch_size=2, accumulate_dtype=np.float64
    )
    result = sliding_window_inference(image, lambda batch: batch, options)
    assert np.array_equal(result, image)


def test_image_smaller_than_patch_is_padded_and_cropped() -> None:
    image = np.random.default_rng(4).normal(size=(1, 3, 8, 2)).astype(np.float32)
    options = SlidingWindowOptions(
        patch_size=(6, 4, 5), overlap=0.5, batch_size=8, accumulate_dtype=np.float64
    )
    seen: list[npt.NDArray[np.float32]] = []

    def run_batch(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        seen.append(batch)
        return batch

    result = sliding_window_inference(image, run_batch, options)
    assert np.array_equal(result, image)
    # Padding: x 3 -> 6 (1 before, 2 after), z 2 -> 5 (1 before, 2 after), zeros.
    first = seen[0][0, 0]
    assert np.array_equal(first[1:4, :, 1:3], image[0, :, :4, :])
    assert not first[0].any() and not first[4:].any() and not first[:, :, 0].any()


def test_onnx_identity_convolution_reproduces_the_input(tmp_path: Path) -> None:
    path = tmp_path / "identity.onnx"
    path.write_bytes(identity_model())
    session = OnnxSession(
        path, settings=RuntimeSettings(providers=("CPUExecutionProvider",), intra_op_threads=1)
    )
    image = np.random.default_rng(6).normal(size=(1, 20, 17, 9)).astype(np.float32)
    options = SlidingWindowOptions(
        patch_size=(8, 8, 8), overlap=0.5, batch_size=3, accumulate_dtype=np.float64
    )
    result = sliding_window_inference(image, session.run, options)
    assert np.array_equal(result, image)


def test_wrong_model_output_shape() -> None:
    image = np.zeros((1, 8, 8, 8), dtype=np.float32)
    options = SlidingWindowOptions(patch_size=(4, 4, 4), overlap=0.0, batch_size=2)
    with pytest.raises(IncompatibleModelError, match=r"returned shape \[2, 1, 2, 2, 2\]"):
        sliding_window_inference(image, lambda b: b[:, :, ::2, ::2, ::2], options)
    with pytest.raises(IncompatibleModelError, match=r"returned shape \[1, 1, 4, 4, 4\]"):
        sliding_window_inference(image, lambda b: b[:1], options)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="overlap must be in"):
        SlidingWindowOptions(patch_size=(4, 4, 4), overlap=1.0, batch_size=1)
    with pytest.raises(ValueError, match="patch size must be"):
        SlidingWindowOptions(patch_size=(4, 0, 4), overlap=0.5, batch_size=1)
    with pytest.raises(ValueError, match="batch size must be"):
        SlidingWindowOptions(patch_size=(4, 4, 4), overlap=0.5, batch_size=0)
