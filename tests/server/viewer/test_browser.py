"""The bundled study processed by the real server, opened in OHIF at /viewer in Chromium.

Asserts on the pixels of screenshots: the CT renders; the SEG overlay covers the model's
mask on its key slice (largest area), compared with our own mask projected onto the
viewport through OHIF's own ``worldToCanvas``, so diagonal stripes (frames that start
mid-byte, 143x161 here) would fail it; the overlay SC series renders. Every DICOMweb request
the viewer makes is recorded and none may answer 4xx or 5xx.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright import sync_api as playwright_api

from radserve.dicom_io import key_slice, read_image_series, read_seg
from radserve.server import PacsClient

from .conftest import CHROMIUM_ARGS, READER_TOKEN, ProcessedStudy

# Where to keep screenshots (the README's come from here); unset: not kept.
SCREENSHOT_DIR = os.environ.get("RADSERVE_SCREENSHOT_DIR")


@pytest.fixture(scope="module")
def page(processed: ProcessedStudy, chromium: Any) -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()

        def record(response: Any) -> None:
            if "/dicomweb/" in response.url or response.status >= 400:
                processed.requests.append((response.status, response.request.method, response.url))

        page.on("response", record)
        page.goto(
            f"{processed.server.url}/viewer/viewer?StudyInstanceUIDs={processed.study_instance_uid}"
        )
        assert "/login" in page.url  # no session yet: the viewer asks for a login
        page.fill("#token", READER_TOKEN)
        page.click("button[type=submit]")
        skip = page.get_by_text("Skip all")
        skip.wait_for(timeout=60_000)
        skip.click()
        yield page
        browser.close()


def _viewport_pixels(page: Any) -> tuple[np.ndarray[Any, Any], dict[str, float]]:
    """A screenshot of the first viewport's canvas (RGB) and the canvas' page box."""
    canvas = page.locator("canvas.cornerstone-canvas").first
    box = canvas.bounding_box()
    assert box is not None
    image = Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")
    return np.asarray(image).astype(int), box


def _wait_rendered(page: Any, timeout_s: float = 30) -> np.ndarray[Any, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        pixels, _ = _viewport_pixels(page)
        if pixels.std() > 20 or time.monotonic() > deadline:
            return pixels
        time.sleep(0.5)


def test_the_ct_renders(page: Any) -> None:
    pixels = _wait_rendered(page)
    grey = pixels.mean(axis=2)
    assert pixels.std() > 20, "the CT viewport is blank"
    # Soft tissue and bone: a spread of grey levels, not a flat or saturated image.
    assert np.percentile(grey, 90) - np.percentile(grey, 10) > 40


def test_the_seg_overlay_covers_the_mask_without_stripes(
    page: Any, processed: ProcessedStudy, demo_study: Any
) -> None:
    series = read_image_series(demo_study / "image")
    seg_ref = processed.result("SEG")
    page.get_by_text("AI SEG", exact=False).first.dblclick()
    yes = page.get_by_role("button", name="Yes")
    yes.wait_for(timeout=60_000)
    yes.click()
    # The SEG as the server stores it, read by us: the mask OHIF must draw.
    client = PacsClient(
        f"{processed.server.url}/dicomweb",
        headers={"Authorization": f"Bearer {READER_TOKEN}"},
    )
    (seg,) = [
        ds
        for ds in client.retrieve_series(
            processed.study_instance_uid, seg_ref["series_instance_uid"]
        )
        if str(ds.SOPInstanceUID) == seg_ref["sop_instance_uid"]
    ]
    labelmap = read_seg(seg, reference=series.volume)
    k = key_slice(labelmap)
    sop_uid = str(series.headers[k].SOPInstanceUID)
    page.evaluate(
        """(uid) => {
          const viewport = window.cornerstone.getRenderingEngines()[0].getViewports()[0];
          const index = viewport.getImageIds().findIndex((id) => id.includes(uid));
          return viewport.setImageIdIndex(index);
        }""",
        sop_uid,
    )
    time.sleep(3)
    mask = labelmap.volume.array[k] > 0
    rows, cols = np.nonzero(mask)
    world = series.volume.index_to_lps(np.stack([cols, rows, np.full_like(rows, k)], axis=1))
    points = page.evaluate(
        """(points) => {
          const viewport = window.cornerstone.getRenderingEngines()[0].getViewports()[0];
          return points.map((p) => viewport.worldToCanvas(p));
        }""",
        world.tolist(),
    )
    pixels, _ = _viewport_pixels(page)
    height, width = pixels.shape[:2]
    scale = (
        pixels.shape[1] / page.locator("canvas.cornerstone-canvas").first.bounding_box()["width"]
    )
    expected = np.zeros((height, width), bool)
    # Each voxel covers a square of the projected voxel size around its centre.
    canvas_xy = np.asarray(points) * scale
    step = np.linalg.norm(canvas_xy[1:] - canvas_xy[:-1], axis=1)
    half = max(1, int(np.ceil(np.median(step[step > 0]) / 2))) if len(step) else 1
    for x, y in canvas_xy.round().astype(int):
        expected[max(0, y - half) : y + half + 1, max(0, x - half) : x + half + 1] = True
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    drawn = (red - np.maximum(green, blue)) > 25
    overlap = np.logical_and(drawn, expected).sum()
    dice = 2 * overlap / (drawn.sum() + expected.sum())
    if SCREENSHOT_DIR:
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, "viewer.png"))
    assert expected.sum() > 500, "the key slice's mask projects onto too few pixels"
    assert dice > 0.8, f"the drawn overlay differs from the mask (Dice {dice:.2f})"


def test_the_overlay_sc_renders(page: Any) -> None:
    page.get_by_text("AI overlay", exact=False).first.dblclick()
    time.sleep(4)
    pixels = _wait_rendered(page)
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
