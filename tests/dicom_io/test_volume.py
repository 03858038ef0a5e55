"""Volume geometry conversions."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from radserve.dicom_io import Volume, read_image_file


def _oblique_volume() -> Volume:
    angle = np.deg2rad(20)
    rot = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    return Volume(array=array, spacing_mm=(0.5, 0.7, 2.0), origin_mm=(10, -20, 30), direction=rot)


def test_affine_maps_index_to_lps() -> None:
    vol = _oblique_volume()
    point = vol.index_to_lps([1, 2, 3])
    expected = np.asarray(vol.origin_mm) + vol.direction @ (np.array([1, 2, 3]) * vol.spacing_mm)
    np.testing.assert_allclose(point, expected)


def test_nifti_round_trip_keeps_geometry(tmp_path: Path) -> None:
    vol = _oblique_volume()
    path = tmp_path / "v.nii.gz"
    vol.write_nifti(path)
    back = read_image_file(path)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine_lps(), vol.affine_lps(), atol=1e-5)
    # nibabel reads the same file independently, in RAS and (i, j, k) array order.
    img = nib.load(path)
    np.testing.assert_allclose(img.affine, vol.affine_ras(), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), vol.array)
