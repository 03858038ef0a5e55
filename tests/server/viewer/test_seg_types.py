"""Which SEG OHIF draws correctly, in radserve's viewer and in an OHIF with its defaults.

radserve's viewer reads multi-frame objects frame by frame (``/frames``, 1-bit frames
re-packed from bit 0). A site's own OHIF keeps its default, ``loadMultiframeAsPart10`` on:
it fetches a SEG whole and unpacks the frames itself, and OHIF 3.13 misreads 1-bit frames
that start mid-byte (143x161 here) as diagonal stripes. So on this grid the job writes a
FRACTIONAL SEG (``seg_type: auto``; a byte a pixel), which both draw correctly; a BINARY
copy of the same mask is drawn correctly frame by frame and striped whole. The last case
pins OHIF's bug: when it fails, OHIF has fixed it and ``auto`` can keep BINARY everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from radserve.dicom_io import AlgorithmIdentity, read_image_series, write_seg
from radserve.server import PacsClient, ViewerOptions, app_config_js

from .conftest import READER_TOKEN, SUBMIT_TOKEN, ProcessedStudy, viewer_page
from .overlay import overlay_dice, stored_labelmap

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
WHOLE = app_config_js(ViewerOptions(load_multiframe_as_part10=True))  # OHIF's default


@pytest.fixture(scope="module")
def binary_copy(processed: ProcessedStudy, demo_study: Path) -> str:
    """The job's mask again, as a BINARY SEG in a series of its own; its Series UID."""
    series = read_image_series(demo_study / "image")
    labelmap = stored_labelmap(processed, processed.result("SEG")["series_instance_uid"], series)
    algorithm = AlgorithmIdentity(name="binary-copy", version="1", model_sha256="0" * 64)
    copy = write_seg(series, labelmap, algorithm=algorithm, series_description="BINARY copy")
    copy.SeriesInstanceUID = generate_uid()
    submit = PacsClient(
        f"{processed.server.url}/dicomweb", headers={"Authorization": f"Bearer {SUBMIT_TOKEN}"}
    )
    submit.store([copy])
    return str(copy.SeriesInstanceUID)


@pytest.fixture
def open_viewer(processed: ProcessedStudy, chromium: Any, binary_copy: str) -> Iterator[Any]:
    """Opens the study in a new browser with the given ``app-config.js`` (None: the server's)."""
    with ExitStack() as stack:
        yield lambda app_config: stack.enter_context(
            viewer_page(processed, chromium, app_config=app_config)
        )


def test_the_job_writes_fractional_where_binary_frames_start_mid_byte(
    processed: ProcessedStudy,
) -> None:
    seg = processed.result("SEG")
    reader = PacsClient(
        f"{processed.server.url}/dicomweb", headers={"Authorization": f"Bearer {READER_TOKEN}"}
    )
    (ds,) = reader.retrieve_series(processed.study_instance_uid, seg["series_instance_uid"])
    assert (ds.Rows * ds.Columns) % 8 != 0
    assert ds.SOPClassUID == SEGMENTATION_STORAGE
    assert (ds.SegmentationType, ds.SegmentationFractionalType) == ("FRACTIONAL", "OCCUPANCY")


def test_ohif_with_its_defaults_draws_the_job_seg(
    open_viewer: Any, processed: ProcessedStudy, demo_study: Path
) -> None:
    page = open_viewer(WHOLE)
    seg_series = processed.result("SEG")["series_instance_uid"]
    dice = overlay_dice(page, processed, demo_study, seg_series, "AI SEG")
    assert dice > 0.9, (
        f"OHIF (whole-instance loading) drew the FRACTIONAL SEG wrong: Dice {dice:.2f}"
    )


def test_radserve_viewer_draws_a_binary_seg_frame_by_frame(
    open_viewer: Any, processed: ProcessedStudy, demo_study: Path, binary_copy: str
) -> None:
    page = open_viewer(None)
    dice = overlay_dice(page, processed, demo_study, binary_copy, "BINARY copy")
    assert dice > 0.9, f"the BINARY SEG drawn frame by frame differs from the mask: {dice:.2f}"


def test_ohif_with_its_defaults_still_stripes_a_binary_seg(
    open_viewer: Any, processed: ProcessedStudy, demo_study: Path, binary_copy: str
) -> None:
    page = open_viewer(WHOLE)
    dice = overlay_dice(page, processed, demo_study, binary_copy, "BINARY copy")
    assert dice < 0.9, (
        f"OHIF now draws mid-byte BINARY frames correctly (Dice {dice:.2f}): "
        "seg_type auto could write BINARY on every grid"
    )
