"""The demo pipeline on the bundled real study."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image

from radserve.cli.demo import run_demo
from radserve.dicom_io import read_series


def test_demo_writes_valid_seg_sr_and_overlay(
    tmp_path: Path, demo_study: Path, dciodvfy: Callable[[Path], Any]
) -> None:
    result = run_demo(demo_study, tmp_path)

    # The RTSTRUCT tumour contour, rasterised: the same voxel count as the curated NIfTI mask.
    (measurement,) = result.measurements
    assert measurement.voxel_count == 17090
    volume = read_series(demo_study / "image")
    mask = result.labelmap.volume.array == measurement.label
    assert measurement.mean == float(np.mean(volume.array[mask]))

    assert result.seg_round_trip_equal
    assert result.validator_errors == {"SEG": 0, "SR": 0, "SC": 0}
    for paths in result.written.values():
        for path in paths:
            assert dciodvfy(path).errors == []

    (seg_path,) = result.written["SEG"]
    seg = pydicom.dcmread(seg_path)
    assert seg.Modality == "SEG"
    assert seg.SegmentSequence[0].SegmentLabel == "GTV_Mass_CT"
    (sr_path,) = result.written["SR"]
    assert pydicom.dcmread(sr_path).Modality == "SR"
    assert len(result.written["SC"]) == int(np.count_nonzero(mask.any(axis=(1, 2))))

    png = np.asarray(Image.open(result.png))
    assert png.ndim == 3 and png.shape[2] == 3
    coloured = (png[..., 0] != png[..., 1]) | (png[..., 1] != png[..., 2])
    assert coloured.any()  # the outline and legend are drawn in colour


def test_demo_is_deterministic(tmp_path: Path, demo_study: Path) -> None:
    first = run_demo(demo_study, tmp_path / "a")
    second = run_demo(demo_study, tmp_path / "b")
    assert [p.name for p in first.written["SEG"]] == [p.name for p in second.written["SEG"]]
    assert [p.name for p in first.written["SC"]] == [p.name for p in second.written["SC"]]
