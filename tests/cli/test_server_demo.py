"""The main job end to end: a real server process, STOW-RS in, job, WADO-RS out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radserve.cli.server_demo import ServerDemoOptions, run_server_demo
from radserve.dicom_io import read_series
from tests.onnx_models import manifest_dict, threshold_model, write_package

THRESHOLD_HU = 300.5


@pytest.mark.slow
def test_server_demo_round_trip(tmp_path: Path, demo_study: Path) -> None:
    volume = read_series(demo_study / "image")
    model = threshold_model((THRESHOLD_HU + 1000.0) / 2000.0)
    manifest = manifest_dict(
        model,
        preprocessing={
            "orientation": "RAS",
            "target_spacing_mm": list(volume.spacing_mm),
            "intensity": {
                "window_hu": [-1000.0, 1000.0],
                "normalisation": {"method": "scale_to_unit"},
            },
        },
        inference={"patch_size": [64, 64, 32], "overlap": 0.25, "batch_size": 2},
    )
    write_package(tmp_path, model, manifest)
    messages: list[str] = []
    result = run_server_demo(
        demo_study,
        tmp_path / "out",
        ServerDemoOptions(models_dir=tmp_path / "models"),
        progress=messages.append,
    )
    assert result.job["state"] == "done"
    assert {r["kind"] for r in result.job["results"]} >= {"SEG", "SR"}
    expected = volume.array > THRESHOLD_HU
    np.testing.assert_array_equal(result.labelmap.volume.array == 1, expected)
    voxel_mm3 = float(np.prod(volume.spacing_mm))
    assert result.sr_measurements["Bone"]["Volume"] == pytest.approx(expected.sum() * voxel_mm3)
    # The bone threshold and the tumour contour do not overlap: the comparison is computed.
    assert result.dice_vs_reference is not None
    assert result.dice_vs_reference < 0.1
    assert result.png.exists()
    # The store is kept for serving the results again (radserve demo --serve).
    assert (result.data_dir / "instances").is_dir() or any(result.data_dir.iterdir())
    assert any("server ready" in m for m in messages)
    # The package names the small parameter set: its features come back in the job's table.
    [segment] = result.features
    values = {f["name"]: f["value"] for f in segment["features"]}
    assert segment["segment"] == "Bone"
    assert values["original_shape_VoxelVolume"] == pytest.approx(expected.sum() * voxel_mm3)
    assert result.features_csv is not None
    header = result.features_csv.read_text().splitlines()[0].split(",")
    assert "original_shape_VoxelVolume" in header
