"""Training-time MONAI preprocessing equals the server's ``preprocess`` on a real case.

Measured on STS_002 (161 x 143 x 48 voxels, 0.98 x 0.98 x 3.27 mm): the grids (shape and
affine) are identical and intensities differ by at most ~2e-5 of the [0, 1] window (1e-4 in
the z-scored variant) -- MONAI's ``grid_sample`` and SimpleITK's linear interpolator round
differently. The test allows 1e-4 and 1e-3.

Every voxel is compared, including the network samples beyond the source's last voxel
centre (the last row along an axis where the grid rule rounds up): both sides clamp per axis
there (MONAI's "border" padding; the server replicates the edge voxels before resampling).
The LPS and the up-sampling cases have such rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radserve.inference import PreprocessingSpec, preprocess
from radserve.training import (
    CaseRef,
    case_to_dict,
    load_config,
    preprocessing_transforms,
    read_case,
)
from tests.conftest import REPO_ROOT

DEMO_SPEC = load_config(REPO_ROOT / "configs" / "train" / "sts_ct_gtv.yaml").config.preprocessing


def _ras_affine(image: sitk.Image) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


@pytest.mark.parametrize(
    ("spec", "atol"),
    [
        (DEMO_SPEC, 1e-4),
        (
            PreprocessingSpec.model_validate(
                {
                    "orientation": "LPS",
                    "target_spacing_mm": [1.5, 1.7, 3.0],
                    "intensity": {
                        "window_hu": [-1000, 1000],
                        "normalisation": {"method": "zscore", "mean": 40.0, "std": 150.0},
                    },
                }
            ),
            1e-3,
        ),
        (
            PreprocessingSpec.model_validate(
                {
                    "orientation": "RAS",
                    "target_spacing_mm": [2.5, 0.7, 7.0],
                    "intensity": {
                        "window_hu": [-1000, 1000],
                        "normalisation": {"method": "scale_to_unit"},
                    },
                }
            ),
            1e-4,
        ),
    ],
    ids=["demo-RAS-scale", "LPS-zscore", "RAS-upsample-y"],
)
def test_training_preprocessing_matches_serving(
    shared_data: Path, spec: PreprocessingSpec, atol: float
) -> None:
    folder = shared_data / "sts_ct" / "nifti" / "STS_002"
    case = read_case(CaseRef("STS_002", folder / "image.nii.gz", folder / "mask.nii.gz"))
    served = preprocess(case.image, spec)
    trained = preprocessing_transforms(spec)(case_to_dict(case))
    image = trained["image"]
    assert tuple(image.shape) == served.array.shape
    np.testing.assert_allclose(image.affine.numpy(), _ras_affine(served.reference), atol=1e-5)
    difference = np.abs(image.numpy() - served.array)
    assert difference.max() <= atol, difference.max()
    # The label follows the same grid and stays binary.
    assert tuple(trained["label"].shape) == served.array.shape
    assert set(np.unique(trained["label"].numpy())) == {0.0, 1.0}
