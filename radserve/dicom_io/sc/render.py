"""Rendering one slice of an image with its segment outlines, a legend and a review banner.

Pure numpy, scipy and Pillow; used for the burned-in Secondary Capture series and for PNG
previews. Layout of a rendered slice, top to bottom:

* a banner with the caption (model name and version) and the review warning,
* the grey-scale slice, zoomed by an integer factor (nearest neighbour) when the matrix is
  small so that the text stays legible, with each segment's outline in its palette colour,
* the legend: a colour swatch and the name of each segment present in the label map.

The slice is shown as stored (row 0 at the top, column 0 at the left), the same as a DICOM
viewer shows the source image, so an axial CT has the patient's anterior at the top.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from scipy import ndimage

from radserve.dicom_io.errors import MaskError
from radserve.dicom_io.masks.labelmap import LabelMap
from radserve.dicom_io.volume import Volume

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]

#: Segment colours, by the segment's position in ``LabelMap.segments`` (repeats after 12).
#: Saturated and never grey, so an outline is never mistaken for image content.
PALETTE: tuple[RGB, ...] = (
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (0, 255, 0),
    (255, 128, 0),
    (30, 144, 255),
    (255, 0, 0),
    (255, 105, 180),
    (160, 110, 255),
    (0, 255, 140),
    (200, 255, 100),
    (255, 180, 120),
)

REVIEW_WARNING = "AI result - not for diagnosis without review"
#: CT soft-tissue window ``(center, width)`` in HU, the default for CT without a stored window.
CT_SOFT_TISSUE_WINDOW_HU = (40.0, 400.0)
#: The zoomed image is made at least this many pixels along its longer side. The zoom keeps
#: the outlines crisp once a viewer scales the image to its viewport (bilinear): on a
#: 143x161 CT shown 1024 px tall, 93 % of the outline's voxels keep a pixel of pure segment
#: colour at zoom 4, 45 % at zoom 2 with an outline as thin (half a voxel). With JPEG-LS the
#: zoom costs little: 116 kB per slice at zoom 4, 66 kB at zoom 2, 41 kB unzoomed.
MIN_RENDERED_PX = 512
MAX_SCALE = 16
#: Text is drawn with Pillow's bitmap font, zoomed by up to this factor on wide images.
MAX_TEXT_ZOOM = 3

_WARNING_RGB: RGB = (255, 200, 0)
_TEXT_RGB: RGB = (255, 255, 255)
_PAD_PX = 4
_LINE_PX = 14
_SWATCH_PX = 10
_ENTRY_GAP_PX = 14


@dataclass(frozen=True)
class _LegendEntry:
    name: str
    rgb: RGB


def _check_same_grid(image: Volume, labels: Volume) -> None:
    if image.shape != labels.shape:
        raise MaskError(
            f"label map grid {labels.shape} does not match the image grid {image.shape}"
        )
    wrong = image.grid_differences(labels)  # the shapes are equal
    if wrong:
        raise MaskError(
            "label map is not on the image grid (different " + ", ".join(wrong) + "); "
            "resample it onto the image first"
        )


def window_from_headers(headers: Sequence[Dataset]) -> tuple[float, float] | None:
    """The first stored Window Center / Window Width of a series, as ``(center, width)``.

    Returns None when no header has a usable window.
    """
    for header in headers:
        center, width = header.get("WindowCenter"), header.get("WindowWidth")
        if center is None or width is None or center == "" or width == "":
            continue
        center_value = center[0] if isinstance(center, Sequence) else center
        width_value = width[0] if isinstance(width, Sequence) else width
        try:
            c, w = float(center_value), float(width_value)
        except (TypeError, ValueError):
            continue
        if w > 0:
            return (c, w)
    return None


def _window_bounds(image: Volume, window_hu: tuple[float, float] | None) -> tuple[float, float]:
    if window_hu is None and image.modality == "CT":
        window_hu = CT_SOFT_TISSUE_WINDOW_HU
    if window_hu is not None:
        center, width = (float(v) for v in window_hu)
        if not width > 0:
            raise ValueError(f"window width must be positive, got {width}")
        return (center - width / 2, center + width / 2)
    finite = np.asarray(image.array)[np.isfinite(image.array)]
    if finite.size == 0:
        return (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    return (low, high if high > low else low + 1.0)


def _scale_for(rows: int, cols: int) -> int:
    return max(1, min(MAX_SCALE, math.ceil(MIN_RENDERED_PX / max(rows, cols))))


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


def _wrap(text: str, font: ImageFont.ImageFont, width_px: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width_px:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _zoom(rgb: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.uint8]:
    if factor == 1:
        return rgb
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def _caption_band(lines: list[tuple[str, RGB]], width_px: int, zoom: int) -> npt.NDArray[np.uint8]:
    font = _font()
    base_width = math.ceil(width_px / zoom)
    wrapped = [
        (part, rgb) for text, rgb in lines for part in _wrap(text, font, base_width - 2 * _PAD_PX)
    ]
    band = Image.new("RGB", (base_width, 2 * _PAD_PX + _LINE_PX * len(wrapped)))
    draw = ImageDraw.Draw(band)
    for n, (text, rgb) in enumerate(wrapped):
        draw.text((_PAD_PX, _PAD_PX + n * _LINE_PX), text, fill=rgb, font=font)
    return _zoom(np.asarray(band, dtype=np.uint8), zoom)[:, :width_px]


def _legend_band(entries: list[_LegendEntry], width_px: int, zoom: int) -> npt.NDArray[np.uint8]:
    font = _font()
    base_width = math.ceil(width_px / zoom)
    # Flow layout: entries left to right, wrapping to a new line when the row is full.
    placed: list[tuple[int, int, _LegendEntry]] = []
    x, line = _PAD_PX, 0
    for entry in entries:
        entry_px = _SWATCH_PX + 4 + math.ceil(font.getlength(entry.name))
        if x > _PAD_PX and x + entry_px > base_width - _PAD_PX:
            x, line = _PAD_PX, line + 1
        placed.append((x, line, entry))
        x += entry_px + _ENTRY_GAP_PX
    band = Image.new("RGB", (base_width, 2 * _PAD_PX + _LINE_PX * (line + 1)))
    draw = ImageDraw.Draw(band)
    if not entries:
        draw.text((_PAD_PX, _PAD_PX), "No segment found", fill=_TEXT_RGB, font=font)
    for x0, row, entry in placed:
        y0 = _PAD_PX + row * _LINE_PX
        draw.rectangle((x0, y0, x0 + _SWATCH_PX - 1, y0 + _SWATCH_PX - 1), fill=entry.rgb)
        draw.text((x0 + _SWATCH_PX + 4, y0), entry.name, fill=entry.rgb, font=font)
    return _zoom(np.asarray(band, dtype=np.uint8), zoom)[:, :width_px]


def _present_labels(labels: npt.NDArray[np.integer]) -> set[int]:
    if labels.size == 0:
        return set()
    if int(labels.min()) >= 0 and int(labels.max()) <= 65535:
        counts = np.bincount(labels.ravel().astype(np.int64, copy=False))
        return {int(v) for v in np.flatnonzero(counts)}
    return {int(v) for v in np.unique(labels)}


class SliceRenderer:
    """Renders the slices of one image with one label map; the layout is fixed per image.

    Everything that depends on the whole volume (window, legend, banner) is prepared once, so
    rendering every slice of a large series stays cheap.

    Attributes:
        scale: Integer zoom of the image pixels (nearest neighbour).
        image_top_px: Row of the rendered slice where the zoomed image starts.
        window_hu: The window used, ``(center, width)``.
        shape: ``(rows, columns, 3)`` of every rendered slice.
    """

    def __init__(
        self,
        image: Volume,
        labelmap: LabelMap,
        *,
        window_hu: tuple[float, float] | None = None,
        legend: bool = True,
        caption: str | None = None,
    ) -> None:
        """Prepare rendering.

        Args:
            image: The grey-scale image.
            labelmap: Segments on the same grid as ``image``.
            window_hu: ``(center, width)`` like DICOM Window Center / Width; default: the CT
                soft-tissue window for CT, else the volume's minimum to maximum.
            legend: Draw the legend band below the image.
            caption: First banner line, e.g. the model name and version.

        Raises:
            MaskError: The label map is not on the image grid.
        """
        _check_same_grid(image, labelmap.volume)
        self._image = image
        self._labels = np.asarray(labelmap.volume.array)
        self._low, self._high = _window_bounds(image, window_hu)
        self.window_hu = ((self._low + self._high) / 2, self._high - self._low)
        _, rows, cols = image.shape
        self.scale = _scale_for(rows, cols)
        width_px = cols * self.scale
        zoom = max(1, min(MAX_TEXT_ZOOM, width_px // 300))
        self._outline_px = 2 if self.scale >= 2 else 1
        present = _present_labels(self._labels)
        self._segments = [
            (segment.label, PALETTE[n % len(PALETTE)])
            for n, segment in enumerate(labelmap.segments)
            if segment.label in present
        ]
        unknown = present - {0} - {s.label for s in labelmap.segments}
        if unknown:
            logger.warning("label map holds %d label value(s) without a segment", len(unknown))
        lines: list[tuple[str, RGB]] = [(caption, _TEXT_RGB)] if caption else []
        lines.append((REVIEW_WARNING, _WARNING_RGB))
        self._top = _caption_band(lines, width_px, zoom)
        colours = {s.label: PALETTE[n % len(PALETTE)] for n, s in enumerate(labelmap.segments)}
        entries = [
            _LegendEntry(s.name, colours[s.label]) for s in labelmap.segments if s.label in present
        ]
        self._bottom = _legend_band(entries, width_px, zoom) if legend else None
        self.image_top_px = int(self._top.shape[0])
        bottom_rows = 0 if self._bottom is None else int(self._bottom.shape[0])
        self.shape = (self.image_top_px + rows * self.scale + bottom_rows, width_px, 3)

    def render(self, k: int) -> npt.NDArray[np.uint8]:
        """The RGB rendering ``(rows, columns, 3)`` of slice ``k``."""
        n_slices = self._image.shape[0]
        if not 0 <= k < n_slices:
            raise IndexError(f"slice {k} is outside 0..{n_slices - 1}")
        pixels = np.nan_to_num(np.asarray(self._image.array[k], dtype=np.float64))
        grey = np.clip((pixels - self._low) / (self._high - self._low), 0.0, 1.0)
        grey8 = np.round(grey * 255.0).astype(np.uint8)
        rows, cols = grey8.shape
        scale, top = self.scale, self.image_top_px
        out = np.empty(self.shape, dtype=np.uint8)
        out[:top] = self._top
        image = out[top : top + rows * scale]
        if self._bottom is not None:
            out[top + rows * scale :] = self._bottom
        # Nearest-neighbour zoom written in place: one broadcast, no intermediate copies.
        image.reshape(rows, scale, cols, scale, 3)[...] = grey8[:, None, :, None, None]
        labels = self._labels[k]
        for label, colour in self._segments:
            mask = labels == label
            found_rows = np.flatnonzero(mask.any(axis=1))
            if found_rows.size == 0:
                continue
            found_cols = np.flatnonzero(mask.any(axis=0))
            # Only the segment's bounding box: outside it the mask is all background, which
            # is what the erosion assumes beyond the edge (border_value=0), so the outline
            # is the same as on the whole slice.
            r0, r1 = int(found_rows[0]), int(found_rows[-1]) + 1
            c0, c1 = int(found_cols[0]), int(found_cols[-1]) + 1
            zoomed = _zoom(mask[r0:r1, c0:c1], scale)
            inner = ndimage.binary_erosion(zoomed, iterations=self._outline_px, border_value=0)
            box = image[r0 * scale : r1 * scale, c0 * scale : c1 * scale]
            box[zoomed & ~inner] = colour
        return out


def render_slice(
    image: Volume,
    labelmap: LabelMap,
    k: int,
    *,
    window_hu: tuple[float, float] | None = None,
    legend: bool = True,
    caption: str | None = None,
) -> npt.NDArray[np.uint8]:
    """Render slice ``k`` of ``image`` with segment outlines, legend and review banner.

    Args:
        image: The grey-scale image.
        labelmap: Segments on the same grid as ``image``.
        k: Slice index (``image.array[k]``).
        window_hu: ``(center, width)``; see :class:`SliceRenderer`.
        legend: Draw the legend.
        caption: First banner line (e.g. model name and version).

    Returns:
        ``(rows, columns, 3)`` uint8 RGB.

    Raises:
        MaskError: The label map is not on the image grid.
    """
    renderer = SliceRenderer(image, labelmap, window_hu=window_hu, legend=legend, caption=caption)
    return renderer.render(k)


def key_slice(labelmap: LabelMap) -> int:
    """The slice with the most segment voxels (the middle slice when there are none)."""
    labels = np.asarray(labelmap.volume.array)
    wanted = [s.label for s in labelmap.segments]
    counts = np.isin(labels, wanted).sum(axis=(1, 2))
    if not counts.any():
        return int(labels.shape[0]) // 2
    return int(np.argmax(counts))


def write_png(rgb: npt.NDArray[np.uint8], path: str | Path) -> None:
    """Write an ``(rows, columns, 3)`` uint8 RGB array as a PNG file."""
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"need a (rows, columns, 3) uint8 array, got {array.shape} {array.dtype}")
    Image.fromarray(array).save(str(path), format="PNG")
