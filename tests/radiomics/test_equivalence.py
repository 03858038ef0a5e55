"""Cropped extraction equals the stock PyRadiomics call, feature for feature (rtol 1e-6).

Real STS CT cases with ``default.yaml`` (original, LoG 1/3/5 mm, wavelet): every feature
class on every filtered image. The STS images are already cut 5 cm around the tumour, so one
case is also padded (by reflection) to a larger field of view, where the LoG and wavelet
crops are strictly smaller than the image.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from radserve.dicom_io import LabelMap, Volume
from radserve.radiomics import bounding_box, extract_features, load_parameter_set, plan_crops
from tests.radiomics.conftest import mismatches, stock_features, sts_case


def _padded(volume: Volume, labelmap: LabelMap) -> tuple[Volume, LabelMap]:
    pad = ((12, 12), (40, 40), (40, 40))
    image = np.pad(volume.array, pad, mode="reflect")
    labels = np.pad(labelmap.volume.array, pad, mode="constant")
    origin = volume.index_to_lps([-40, -40, -12])
    grown = dataclasses.replace(
        volume, array=image, origin_mm=(float(origin[0]), float(origin[1]), float(origin[2]))
    )
    return grown, LabelMap(grown.with_array(labels), labelmap.segments)


@pytest.mark.parametrize(
    ("case", "params", "count"),
    [
        ("STS_019", "default", 1130),  # 14 shape + 12 images x 93
        ("STS_008", "default", 1130),
        ("STS_019 padded", "default", 1130),
        ("STS_008", "ibsi_ct", 107),  # resampled and resegmented: no cropping, no diagnostics
    ],
)
def test_parameter_sets_equal_stock_execute(
    shared_data: Path, case: str, params: str, count: int
) -> None:
    volume, labelmap = sts_case(shared_data, case.split()[0])
    if case.endswith("padded"):
        volume, labelmap = _padded(volume, labelmap)
    parameter_set = load_parameter_set(params)
    (ours,) = extract_features(volume, labelmap, parameter_set=parameter_set)
    stock = stock_features(parameter_set, volume.to_sitk(), labelmap.volume.to_sitk())
    assert len(stock) == count
    assert ours.skipped == ()
    assert mismatches(ours.values(), stock) == []
    assert list(ours.values()) == list(stock)  # PyRadiomics' order


def test_crops_are_smaller_than_the_image_where_filters_allow(shared_data: Path) -> None:
    volume, labelmap = _padded(*sts_case(shared_data, "STS_019"))
    parameter_set = load_parameter_set("default")
    box = bounding_box(labelmap.volume.array, 1)
    assert box is not None
    k, j, i = volume.shape
    plan = plan_crops(
        parameter_set.image_types(),
        parameter_set.settings(),
        box=box,
        image_size=(i, j, k),
        spacing_mm=volume.spacing_mm,
    )
    sizes = {(g.image_type, tuple(g.custom.get("sigma", []))): g.region.size for g in plan.groups}
    assert sizes[("Original", ())] == box.size
    # LoG: 16 sigma per axis (0.977 x 0.977 x 3.27 mm voxels), clipped to the image.
    assert sizes[("LoG", (1.0,))] == tuple(
        min(s + 2 * m, n) for s, m, n in zip(box.size, (17, 17, 5), (i, j, k), strict=True)
    )
    assert sizes[("Wavelet", ())] == tuple(s + 12 for s in box.size)  # coif1: 6 per side
    assert plan.union.size[0] < i and plan.union.size[1] < j
