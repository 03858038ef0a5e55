"""Which Segmentation Type a result SEG is written as: BINARY, FRACTIONAL, LABELMAP, or
chosen per grid.

BINARY (1 bit per pixel, one frame per segment and slice) is the type every SEG reader
knows. Its frames are packed back to back, so when Rows x Columns is not a multiple of 8 a
frame starts mid-byte, which the standard allows and OHIF 3.13's whole-instance SEG loader
(its default, ``loadMultiframeAsPart10``) misreads as diagonal stripes. FRACTIONAL frames
(same SOP Class, a byte a pixel; written as OCCUPANCY, 255 inside and 0 outside, so they
say exactly what the BINARY ones would) and LABELMAP (Label Map Segmentation Storage, 2024,
one frame per slice, a SOP Class older PACS and validators do not know) have no such frames.
``auto`` writes BINARY wherever each frame starts on a byte boundary and FRACTIONAL
elsewhere (measured in OHIF: ``docs/viewer.md``).
"""

from __future__ import annotations

from typing import Literal

SegmentationType = Literal["BINARY", "FRACTIONAL", "LABELMAP"]
SegmentationTypeChoice = Literal["auto", "binary", "fractional", "labelmap"]


def choose_segmentation_type(
    choice: SegmentationTypeChoice, rows: int, columns: int
) -> SegmentationType:
    """The Segmentation Type to write on a ``rows`` x ``columns`` grid for ``choice``."""
    if choice == "binary":
        return "BINARY"
    if choice == "fractional":
        return "FRACTIONAL"
    if choice == "labelmap":
        return "LABELMAP"
    if choice == "auto":
        return "BINARY" if (rows * columns) % 8 == 0 else "FRACTIONAL"
    raise ValueError(f"unknown segmentation type choice {choice!r}")
