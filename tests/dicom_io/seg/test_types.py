"""Choosing the Segmentation Type of a result SEG."""

from __future__ import annotations

import pytest

from radserve.dicom_io import choose_segmentation_type


@pytest.mark.parametrize(
    ("rows", "columns", "expected"),
    [
        (512, 512, "BINARY"),  # every 1-bit frame starts on a byte boundary
        (143, 161, "FRACTIONAL"),  # 23023 bits a frame: frames start mid-byte
        (3, 8, "BINARY"),
        (1, 1, "FRACTIONAL"),
    ],
)
def test_auto_writes_binary_only_where_frames_start_on_byte_boundaries(
    rows: int, columns: int, expected: str
) -> None:
    assert choose_segmentation_type("auto", rows, columns) == expected


def test_a_chosen_type_is_kept_on_every_grid() -> None:
    for rows, columns in ((512, 512), (143, 161)):
        assert choose_segmentation_type("binary", rows, columns) == "BINARY"
        assert choose_segmentation_type("fractional", rows, columns) == "FRACTIONAL"
        assert choose_segmentation_type("labelmap", rows, columns) == "LABELMAP"


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="rle"):
        choose_segmentation_type("rle", 2, 4)  # type: ignore[arg-type]
