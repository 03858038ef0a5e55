"""The bundled study processed by the real server, opened in OHIF at /viewer in Chromium.

Asserts on the pixels of screenshots: the CT renders; the SEG overlay covers the model's
mask on its key slice (largest area), compared with our own mask projected onto the
viewport through OHIF's own ``worldToCanvas``, so diagonal stripes (frames that start
mid-byte, 143x161 here) would fail it; the overlay SC series renders. Every DICOMweb request
the viewer makes is recorded and none may answer 4xx or 5xx.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from .conftest import ProcessedStudy, viewer_page
from .overlay import overlay_dice, wait_rendered

# Where to keep screenshots (the README's come from here); unset: not kept.
SCREENSHOT_DIR = os.environ.get("RADSERVE_SCREENSHOT_DIR")


@pytest.fixture(scope="module")
def page(processed: ProcessedStudy, chromium: Any) -> Iterator[Any]:
    with viewer_page(processed, chromium) as opened:
        yield opened


def test_the_ct_renders(page: Any) -> None:
    pixels = wait_rendered(page)
    grey = pixels.mean(axis=2)
    assert pixels.std() > 20, "the CT viewport is blank"
    # Soft tissue and bone: a spread of grey levels, not a flat or saturated image.
    assert np.percentile(grey, 90) - np.percentile(grey, 10) > 40


def test_the_seg_overlay_covers_the_mask_without_stripes(
    page: Any, processed: ProcessedStudy, demo_study: Any
) -> None:
    seg = processed.result("SEG")
    dice = overlay_dice(page, processed, demo_study, seg["series_instance_uid"], "AI SEG")
    if SCREENSHOT_DIR:
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, "viewer.png"))
    assert dice > 0.9, f"the drawn overlay differs from the mask (Dice {dice:.2f})"


def test_the_overlay_sc_renders(page: Any) -> None:
    page.get_by_text("AI overlay", exact=False).first.dblclick()
    time.sleep(4)
    pixels = wait_rendered(page)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    coloured = (np.abs(red - green) > 40) | (np.abs(green - blue) > 40)
    assert pixels.std() > 20
    assert coloured.sum() > 50, "the burned-in outline and banner are not visible"
    if SCREENSHOT_DIR:
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, "viewer_sc.png"))


def test_the_sr_measurements_are_drawn_on_their_key_slice(
    page: Any, processed: ProcessedStudy
) -> None:
    """OHIF shows the SR's key-slice outline with its headline values (TID 1410 groups)."""
    (segment,) = processed.job["radiomics"]["segments"]  # the tumour
    volume_mm3 = float(segment["volume_mm3"])
    page.get_by_text("AI measurements", exact=False).first.dblclick()
    label = page.locator("svg text", has_text="Volume:").first
    label.wait_for(timeout=60_000)
    text = label.text_content() or ""
    assert f"Volume: {volume_mm3:.2f} mm3" in text
    polylines = page.locator("svg path, svg polyline")
    assert polylines.count() > 0, "no outline drawn"
    if SCREENSHOT_DIR:
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, "viewer_sr.png"))


def test_no_dicomweb_request_failed(page: Any, processed: ProcessedStudy) -> None:
    assert any("/frames/" in url for _, _, url in processed.requests)
    failed = [(status, url) for status, _, url in processed.requests if status >= 400]
    assert failed == []
