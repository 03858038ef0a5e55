"""What OHIF draws, read from screenshots: the first viewport's pixels, and how well a SEG
overlay it draws matches our own reading of that SEG.

The mask is projected onto the viewport through OHIF's own ``worldToCanvas`` (Cornerstone's
viewport API), so the comparison holds whatever zoom and layout the viewer chose; drawn
overlay pixels are the reddish ones (OHIF's first segment colour).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from radserve.dicom_io import ImageSeries, LabelMap, key_slice, read_image_series, read_seg
from radserve.server import PacsClient

from .conftest import READER_TOKEN, ProcessedStudy

FIRST_VIEWPORT = "window.cornerstone.getRenderingEngines()[0].getViewports()[0]"


def stored_labelmap(
    processed: ProcessedStudy, seg_series_uid: str, series: ImageSeries
) -> LabelMap:
    """The SEG of ``seg_series_uid`` as the server stores it, read by us onto ``series``."""
    client = PacsClient(
        f"{processed.server.url}/dicomweb",
        headers={"Authorization": f"Bearer {READER_TOKEN}"},
    )
    (seg,) = client.retrieve_series(processed.study_instance_uid, seg_series_uid)
    return read_seg(seg, reference=series.volume)


def viewport_pixels(page: Any) -> np.ndarray[Any, Any]:
    """A screenshot of the first viewport's canvas, RGB."""
    canvas = page.locator("canvas.cornerstone-canvas").first
    image = Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")
    return np.asarray(image).astype(int)


def wait_rendered(page: Any, timeout_s: float = 30) -> np.ndarray[Any, Any]:
    """The first viewport's pixels once it shows an image (or when the wait ends)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pixels = viewport_pixels(page)
        if pixels.std() > 20 or time.monotonic() > deadline:
            return pixels
        time.sleep(0.5)


def overlay_dice(
    page: Any, processed: ProcessedStudy, demo_study: Path, seg_series_uid: str, label: str
) -> float:
    """Load the SEG series shown as ``label`` and compare its overlay on the key slice.

    Returns the Dice coefficient between the overlay pixels drawn on the key slice (largest
    area) and the SEG's mask as the server stores it, read by us and projected onto the
    viewport.
    """
    series = read_image_series(demo_study / "image")
    page.get_by_text(label, exact=False).first.dblclick()
    yes = page.get_by_role("button", name="Yes")
    yes.wait_for(timeout=60_000)
    yes.click()
    labelmap = stored_labelmap(processed, seg_series_uid, series)
    k = key_slice(labelmap)
    page.evaluate(
        f"""(uid) => {{
          const viewport = {FIRST_VIEWPORT};
          const index = viewport.getImageIds().findIndex((id) => id.includes(uid));
          return viewport.setImageIdIndex(index);
        }}""",
        str(series.headers[k].SOPInstanceUID),
    )
    time.sleep(3)
    rows, cols = np.nonzero(labelmap.volume.array[k] > 0)
    world = series.volume.index_to_lps(np.stack([cols, rows, np.full_like(rows, k)], axis=1))
    points = page.evaluate(
        f"""(points) => {{
          const viewport = {FIRST_VIEWPORT};
          return points.map((p) => viewport.worldToCanvas(p));
        }}""",
        world.tolist(),
    )
    pixels = viewport_pixels(page)
    height, width = pixels.shape[:2]
    box = page.locator("canvas.cornerstone-canvas").first.bounding_box()
    canvas_xy = np.asarray(points) * (width / box["width"])
    # Each voxel covers a square of the projected voxel size around its centre.
    expected = np.zeros((height, width), bool)
    step = np.linalg.norm(canvas_xy[1:] - canvas_xy[:-1], axis=1)
    half = max(1, int(np.ceil(np.median(step[step > 0]) / 2))) if len(step) else 1
    for x, y in canvas_xy.round().astype(int):
        expected[max(0, y - half) : y + half + 1, max(0, x - half) : x + half + 1] = True
    assert expected.sum() > 500, "the key slice's mask projects onto too few pixels"
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    drawn = (red - np.maximum(green, blue)) > 25
    return float(2 * np.logical_and(drawn, expected).sum() / (drawn.sum() + expected.sum()))
