"""Small-component removal per label."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radserve.inference import labels_from_logits, remove_small_components


def test_removes_small_components_per_label() -> None:
    labels = np.zeros((6, 8, 9), dtype=np.uint8)
    labels[0:3, 0:3, 0:3] = 1  # 27 voxels: kept
    labels[5, 7, 8] = 1  # 1 voxel: removed
    labels[4, 0:2, 0] = 2  # 2 voxels of label 2: removed
    labels[0:2, 5:8, 5:8] = 2  # 18 voxels: kept
    labels[3, 3, 3] = 3  # label 3 has only a single voxel: removed
    labels[2, 2, 3] = 1  # touches the big label-1 cube by a face: part of it
    labels[3, 4, 4] = 1  # touches the cube only by a corner (not face-connected): removed
    result, removed = remove_small_components(labels, min_voxels=5)
    expected = labels.copy()
    expected[5, 7, 8] = expected[4, 0:2, 0] = expected[3, 3, 3] = expected[3, 4, 4] = 0
    assert np.array_equal(result, expected)
    assert removed == 5
    assert labels[5, 7, 8] == 1  # the input is not modified


def test_nothing_to_remove_and_bad_argument() -> None:
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 4
    result, removed = remove_small_components(labels, min_voxels=8)
    assert np.array_equal(result, labels) and removed == 0
    assert remove_small_components(np.zeros((2, 2, 2), np.uint8), min_voxels=1)[1] == 0
    with pytest.raises(ValueError, match="min_voxels must be positive"):
        remove_small_components(labels, min_voxels=0)


def _reference_removal(labels: np.ndarray, min_voxels: int) -> np.ndarray:
    """The plain definition: label every value's components over the whole array."""
    result = labels.copy()
    for value in np.unique(labels[labels > 0]):
        components, _ = ndimage.label(labels == value)
        sizes = np.bincount(components.ravel())
        result[(components > 0) & (sizes[components] < min_voxels)] = 0
    return result


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_label_maps_match_the_plain_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal((30, 40, 50)), 1.5)
    labels = np.digitize(noise, [0.05, 0.12, 0.2]).astype(np.uint8)
    for min_voxels in (2, 10, 60):
        result, removed = remove_small_components(labels, min_voxels=min_voxels)
        expected = _reference_removal(labels, min_voxels)
        assert np.array_equal(result, expected)
        assert removed == int((labels != expected).sum()) > 0


def test_labels_from_logits_is_the_argmax_with_ties_to_the_lower_channel() -> None:
    rng = np.random.default_rng(0)
    for channels in (2, 3):
        logits = rng.integers(0, 3, size=(channels, 5, 6, 7)).astype(np.float32)  # many ties
        labels = labels_from_logits(logits)
        assert labels.dtype == np.uint8
        assert np.array_equal(labels, np.argmax(logits, axis=0))
