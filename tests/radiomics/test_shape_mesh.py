"""The fast shape coefficients equal PyRadiomics' C function (surface, volume, 4 diameters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk
from radiomics import cShape
from radiomics.featureextractor import RadiomicsFeatureExtractor

from radserve.radiomics import fast_shape, mesh_coefficients

RTOL = 1e-9  # both sum the same terms, in another order


def _assert_equal_to_c(mask: npt.NDArray[Any], spacing: npt.ArrayLike) -> None:
    surface, volume, diameters = cShape.calculate_coefficients(mask, np.asarray(spacing))
    ours = mesh_coefficients(mask, spacing)
    np.testing.assert_allclose(ours[0], surface, rtol=RTOL)
    np.testing.assert_allclose(ours[1], volume, rtol=RTOL)
    np.testing.assert_allclose(ours[2], diameters, rtol=RTOL)


def _padded_crop(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    kji = np.argwhere(mask)
    low, high = kji.min(axis=0), kji.max(axis=0) + 1
    return np.pad(mask[tuple(slice(a, b) for a, b in zip(low, high, strict=True))], 1)


def _cube_patterns(inside: npt.NDArray[np.bool_]) -> npt.NDArray[np.intp]:
    """Which of the 256 inside/outside configurations each 2x2x2 cube of voxels has."""
    nz, ny, nx = inside.shape
    pattern = np.zeros((nz - 1, ny - 1, nx - 1), dtype=np.intp)
    corners = [(dz, dy, dx) for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
    for bit, (dz, dy, dx) in enumerate(corners):
        corner = inside[dz : dz + nz - 1, dy : dy + ny - 1, dx : dx + nx - 1]
        pattern |= corner.astype(np.intp) << bit
    return pattern


def test_random_masks_cover_every_cube_pattern() -> None:
    rng = np.random.default_rng(7)
    seen: set[int] = set()
    for _ in range(150):
        mask = np.pad(rng.random(rng.integers(2, 10, 3)) < rng.uniform(0.15, 0.85), 1)
        spacing = rng.uniform(0.3, 5.0, 3)
        _assert_equal_to_c(mask, spacing)
        seen.update(np.unique(_cube_patterns(mask)).tolist())
    assert seen == set(range(256))


@pytest.mark.parametrize(
    "mask",
    [
        np.pad(np.ones((1, 1, 1), dtype=bool), 1),  # one voxel
        np.pad(np.ones((1, 1, 9), dtype=bool), 1),  # a line
        np.pad(np.ones((1, 7, 5), dtype=bool), 1),  # a single-slice plate
        np.pad(np.eye(6, dtype=bool)[None], 1),  # a diagonal of voxels touching by edges
        np.zeros((4, 4, 4), dtype=bool),  # nothing
    ],
    ids=["voxel", "line", "plate", "diagonal", "empty"],
)
def test_degenerate_masks(mask: npt.NDArray[np.bool_]) -> None:
    _assert_equal_to_c(mask, (3.27, 0.98, 0.75))


@pytest.mark.parametrize("case", ["STS_001", "STS_002", "STS_035"])
def test_real_tumour_masks(shared_data: Path, case: str) -> None:
    image = sitk.ReadImage(str(shared_data / "sts_ct" / "nifti" / case / "mask.nii.gz"))
    mask = _padded_crop(sitk.GetArrayFromImage(image) > 0)
    _assert_equal_to_c(mask, image.GetSpacing()[::-1])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="3D mask and three spacings"):
        mesh_coefficients(np.ones((3, 3), dtype=bool), (1.0, 1.0))


def test_only_the_fast_block_uses_the_fast_path(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = mesh_coefficients

    def counted(mask: Any, spacing: Any) -> Any:
        calls.append(1)
        return real(mask, spacing)

    monkeypatch.setattr("radserve.radiomics.shape_mesh.mesh_coefficients", counted)
    folder = shared_data / "sts_ct" / "nifti" / "STS_002"
    extractor = RadiomicsFeatureExtractor()
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("shape")

    def volume() -> float:
        values = extractor.execute(str(folder / "image.nii.gz"), str(folder / "mask.nii.gz"))
        return float(values["original_shape_MeshVolume"])

    with fast_shape():
        fast = volume()
    assert len(calls) == 1
    stock = volume()  # outside the block: PyRadiomics' C function
    assert len(calls) == 1
    assert fast == pytest.approx(stock, rel=RTOL)
