"""One frame of an instance as a consumer image (JPEG or PNG), as WADO-RS rendered
resources and thumbnails send it (PS3.18 8.3.5, 10.4.1.1.4, 10.4.1.1.5).

Grey-scale frames go through the Modality LUT (Rescale Slope / Intercept), then the VOI
window, which is, in this order: the ``window`` asked for, the instance's first Window
Center / Width (:func:`radserve.dicom_io.sc.window_from_headers`), or the frame's minimum
to maximum. The windowing functions are PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID).
MONOCHROME1 is inverted so that the image looks as a viewer shows it. Colour frames (RGB,
and YBR as decoded to RGB) pass through, 16-bit colour scaled to 8 bits. ``viewport`` scales
the image to fit ``(width, height)`` keeping its aspect ratio.
"""

from __future__ import annotations

import enum
import io
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset

from radserve.dicom_io.sc.render import window_from_headers

JPEG = "image/jpeg"
PNG = "image/png"
RENDERED_MEDIA_TYPES = (JPEG, PNG)
# The largest viewport side: a rendering is one image in memory (4096 x 4096 RGB: 48 MiB).
MAX_VIEWPORT = 4096


class WindowFunction(enum.Enum):
    """VOI LUT Function (0028,1056), as the ``window`` query parameter spells it."""

    LINEAR = "linear"
    LINEAR_EXACT = "linear-exact"
    SIGMOID = "sigmoid"


@dataclass(frozen=True)
class Window:
    """A VOI window.

    Raises:
        ValueError: Width not positive (or below 1 for LINEAR, PS3.3 C.11.2.1.2.1).
    """

    center: float
    width: float
    function: WindowFunction = WindowFunction.LINEAR

    def __post_init__(self) -> None:
        minimum = 1.0 if self.function is WindowFunction.LINEAR else 0.0
        if not (math.isfinite(self.center) and math.isfinite(self.width)):
            raise ValueError("window center and width must be finite numbers")
        if self.width < minimum or self.width <= 0:
            raise ValueError(f"window width must be at least {minimum or 'above 0'}")


@dataclass(frozen=True)
class RenderOptions:
    """How to render.

    Attributes:
        media_type: ``image/jpeg`` or ``image/png``.
        window: The VOI window; ``None``: the instance's, else the frame's range.
        viewport: ``(width, height)`` to fit the image in; ``None``: the frame's size.
        quality: JPEG quality, 1 to 100.
    """

    media_type: str = JPEG
    window: Window | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90

    def __post_init__(self) -> None:
        if self.media_type not in RENDERED_MEDIA_TYPES:
            raise ValueError(f"cannot render as {self.media_type}")
        if not 1 <= self.quality <= 100:
            raise ValueError("quality must be 1 to 100")
        if self.viewport is not None and not all(1 <= n <= MAX_VIEWPORT for n in self.viewport):
            raise ValueError(f"viewport width and height must be 1 to {MAX_VIEWPORT}")


def stored_window(header: Dataset) -> Window | None:
    """The instance's first Window Center / Width with its VOI LUT Function, if any."""
    window = window_from_headers([header])
    if window is None:
        return None
    name = str(header.get("VOILUTFunction", "") or "LINEAR").upper().replace("_", "-")
    try:
        function = WindowFunction(name.lower())
    except ValueError:
        function = WindowFunction.LINEAR
    try:
        return Window(window[0], window[1], function)
    except ValueError:
        return None


def apply_window(values: npt.NDArray[np.floating], window: Window) -> npt.NDArray[np.uint8]:
    """Map modality values to 0..255 with a PS3.3 C.11.2.1.2 windowing function."""
    c, w = window.center, window.width
    if window.function is WindowFunction.SIGMOID:
        out = 255.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    elif window.function is WindowFunction.LINEAR_EXACT:
        out = ((values - c) / w + 0.5) * 255.0
    else:
        out = ((values - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
    grey: npt.NDArray[np.uint8] = np.round(np.clip(out, 0.0, 255.0)).astype(np.uint8)
    return grey


def modality_values(header: Dataset, frame: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    """A grey-scale frame through Rescale Slope / Intercept (identity when absent)."""
    slope = float(header.get("RescaleSlope", 1) or 1)
    intercept = float(header.get("RescaleIntercept", 0) or 0)
    return np.asarray(frame, dtype=np.float64) * slope + intercept


def _full_range(values: npt.NDArray[np.float64]) -> Window:
    low, high = float(values.min()), float(values.max())
    return Window((low + high) / 2, max(high - low, 1.0), WindowFunction.LINEAR_EXACT)


def render_pixels(
    header: Dataset, frame: npt.NDArray[np.generic], options: RenderOptions
) -> npt.NDArray[np.uint8]:
    """A decoded frame as 8-bit grey ``(rows, columns)`` or RGB ``(rows, columns, 3)``."""
    if frame.ndim == 3:  # colour: passed through
        rgb = np.asarray(frame)
        if rgb.dtype != np.uint8:
            bits = int(header.get("BitsStored", 8) or 8)
            rgb = np.clip(rgb.astype(np.float64) * (255.0 / (2**bits - 1)), 0, 255)
        return np.asarray(rgb, dtype=np.uint8)
    values = modality_values(header, frame)
    window = options.window or stored_window(header) or _full_range(values)
    grey = apply_window(values, window)
    if str(header.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        grey = 255 - grey
    return grey


def fit_viewport(size: tuple[int, int], viewport: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of an image of ``size`` scaled to fit ``viewport``, aspect kept."""
    width, height = size
    scale = min(viewport[0] / width, viewport[1] / height)
    return (max(1, round(width * scale)), max(1, round(height * scale)))


def encode_image(pixels: npt.NDArray[np.uint8], options: RenderOptions) -> bytes:
    """8-bit grey or RGB pixels as JPEG or PNG, scaled to the viewport."""
    image = Image.fromarray(pixels)
    if options.viewport is not None:
        target = fit_viewport(image.size, options.viewport)
        if target != image.size:
            image = image.resize(target, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if options.media_type == PNG:
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=options.quality)
    return out.getvalue()


def render_frame(header: Dataset, frame: npt.NDArray[np.generic], options: RenderOptions) -> bytes:
    """Render one decoded frame of the instance ``header`` describes.

    Args:
        header: The instance's attributes (Rescale, Window, Photometric Interpretation).
        frame: The decoded frame, ``(rows, columns)`` or ``(rows, columns, 3)``.
        options: Media type, window, viewport and quality.

    Returns:
        The encoded image.
    """
    return encode_image(render_pixels(header, frame, options), options)
