"""``radserve convert`` against dcm2niix and the dicom2nifti reference volumes, in world space."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest
from typer.testing import CliRunner

from radserve.cli import app
from tests.conftest import REPO_ROOT, require

# Every series in ../shared/data that radserve accepts as one volume.
_SUPPORTED = [
    "sts_ct/dicom/STS_001/image",
    "sts_ct/dicom/STS_002/image",
    "sts_ct/dicom/STS_003/image",
    "sts_ct/dicom/STS_004/image",
    "totalseg_ct/dicom",
    "dicom2nifti/generic/anatomical/001",
    "dicom2nifti/generic/anatomical/001_implicit",
    "dicom2nifti/generic/anatomical/002_non_isotropic",
    "dicom2nifti/generic/compressed/001",
    "dicom2nifti/generic/compressed_j2k/001",
    "dicom2nifti/generic/compressed_jpeg/001",
    "dicom2nifti/generic/compressed_jpegls/001",
    "dicom2nifti/generic/compressed_rle/001",
    "dicom2nifti/ge/anatomical/001",
    "dicom2nifti/ge/anatomical/001_implicit",
    "dicom2nifti/philips_enhanced/anatomical/001",
    "dicom2nifti/philips_enhanced/anatomical/001_implicit",
    "dicom2nifti/siemens_multiframe/anatomical/001",
]

AFFINE_ATOL_MM = 1e-3


@pytest.fixture(scope="session")
def dcm2niix() -> Path:
    """The dcm2niix executable (PyPI package in the venv, or on PATH)."""
    venv = REPO_ROOT / ".venv" / "bin" / "dcm2niix"
    found = venv if venv.exists() else shutil.which("dcm2niix")
    require(found is not None, "dcm2niix not installed (PyPI package dcm2niix)")
    return Path(str(found))


def _convert(series: Path, out: Path) -> nib.Nifti1Image:
    result = CliRunner().invoke(app, ["convert", str(series), str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {out}")
    return nib.load(out)


def _canonical(image: nib.Nifti1Image) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Affine and scaled voxel values, both reoriented to the closest RAS axes."""
    if image.ndim == 4 and image.shape[3] == 1:
        image = image.slicer[..., 0]
    canonical = nib.as_closest_canonical(image)
    return canonical.affine, canonical.get_fdata()


def _assert_same_image(ours: nib.Nifti1Image, reference: nib.Nifti1Image) -> None:
    affine, values = _canonical(ours)
    ref_affine, ref_values = _canonical(reference)
    assert values.shape == ref_values.shape
    np.testing.assert_allclose(affine, ref_affine, atol=AFFINE_ATOL_MM)
    if np.issubdtype(ours.get_data_dtype(), np.integer):
        np.testing.assert_array_equal(values, ref_values)
    else:
        np.testing.assert_allclose(values, ref_values, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("relative", _SUPPORTED)
def test_convert_agrees_with_dcm2niix(
    shared_data: Path, dcm2niix: Path, tmp_path: Path, relative: str
) -> None:
    series = shared_data / relative
    ours = _convert(series, tmp_path / "ours.nii.gz")
    reference_dir = tmp_path / "dcm2niix"
    reference_dir.mkdir()
    command = [str(dcm2niix), "-z", "y", "-b", "n", "-f", "ref"]
    if "philips" in relative:
        # Philips display values (Rescale Slope / Intercept), as radserve gives; dcm2niix's
        # default is the private "precise" scaling. (Elsewhere -p n would make dcm2niix drop
        # a Rescale Slope that varies per slice.)
        command += ["-p", "n"]
    subprocess.run(
        [*command, "-o", str(reference_dir), str(series)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (reference,) = reference_dir.glob("*.nii.gz")
    _assert_same_image(ours, nib.load(reference))
    if relative.startswith(("sts_ct", "totalseg_ct")):
        assert ours.get_data_dtype() == np.int16  # CT stays int16 in Hounsfield units


@pytest.mark.parametrize(
    "relative",
    [s for s in _SUPPORTED if s.startswith("dicom2nifti/")],
)
def test_convert_agrees_with_dicom2nifti_ground_truth(
    shared_data: Path, tmp_path: Path, relative: str
) -> None:
    series = shared_data / relative
    truth = series.parent / f"{series.name}_ground_truth.nii.gz"
    assert truth.exists()
    ours = _convert(series, tmp_path / "ours.nii.gz")
    _assert_same_image(ours, nib.load(truth))


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("failing/gantrytilting/001", "tilt of about 14.0 degrees"),
        ("failing/sliceincrement/001", "slice spacing is not uniform"),
        ("philips_enhanced/fmri/001", "4 stacks of 8 slices"),
    ],
)
def test_convert_refuses_bad_series(
    shared_data: Path, tmp_path: Path, relative: str, message: str
) -> None:
    out = tmp_path / "out.nii.gz"
    result = CliRunner().invoke(
        app, ["convert", str(shared_data / "dicom2nifti" / relative), str(out)]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert message in result.output
    assert not out.exists()
