"""A "no findings" result (SR saying each structure is absent, one key image) in OHIF."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radserve.dicom_io import (
    AlgorithmIdentity,
    LabelMap,
    build_results,
    read_image_series,
)
from radserve.server import PacsClient

from .conftest import SUBMIT_TOKEN, ProcessedStudy, viewer_page
from .overlay import stored_labelmap, wait_rendered

ALGORITHM = AlgorithmIdentity(name="finds-nothing", version="1", model_sha256="0" * 64)


@pytest.fixture(scope="module")
def no_findings(processed: ProcessedStudy, demo_study: Path) -> str:
    """A no-findings result set for the CT, stored in the study; its SR's description."""
    series = read_image_series(demo_study / "image")
    seg_series = processed.result("SEG")["series_instance_uid"]
    segments = stored_labelmap(processed, seg_series, series).segments
    empty = LabelMap(series.volume.with_array(np.zeros(series.volume.shape, np.uint8)), segments)
    results = build_results(series, empty, algorithm=ALGORITHM)
    assert results.no_findings
    submit = PacsClient(
        f"{processed.server.url}/dicomweb", headers={"Authorization": f"Bearer {SUBMIT_TOKEN}"}
    )
    submit.store(results.datasets())
    return str(results.sr.SeriesDescription)


@pytest.fixture(scope="module")
def page(processed: ProcessedStudy, chromium: Any, no_findings: str) -> Iterator[Any]:
    with viewer_page(processed, chromium) as opened:
        yield opened


def test_the_no_findings_key_image_renders(page: Any) -> None:
    page.get_by_text(f"AI overlay ({ALGORITHM.name}", exact=False).first.dblclick()
    pixels = wait_rendered(page, timeout_s=60)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    coloured = (np.abs(red - green) > 40) | (np.abs(green - blue) > 40)
    assert pixels.std() > 20, "the no-findings key image is blank"
    assert coloured.sum() > 50, "the banner and legend are not visible"


def test_opening_the_no_findings_sr_leaves_the_viewer_working(page: Any, no_findings: str) -> None:
    """OHIF shows an SR through its image measurements, and this one has none: its viewport
    stays empty, but the viewer must go on showing the other series."""
    page.get_by_text(no_findings[:30], exact=False).first.dblclick()
    time.sleep(3)
    page.get_by_text("IBSI_1_STS_002_CT", exact=False).last.dblclick()
    pixels = wait_rendered(page, timeout_s=60)
    assert pixels.std() > 20, "the CT no longer renders after the no-findings SR was opened"
