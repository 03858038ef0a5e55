"""docs/conformance_statement.md against the code: every table marked *checked* lists what
the server does, no more and no less (the resources of the API description, the transfer
syntaxes decoded on STOW-RS and written on WADO-RS, the SOP classes of the objects made)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import Comprehensive3DSRStorage

from radserve.dicom_io import (
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    TRANSCODE_TARGETS,
    AlgorithmIdentity,
    LabelMap,
    SegmentInfo,
    build_results,
    read_image_series,
    supported_transfer_syntaxes,
)
from radserve.server import create_app
from tests.conftest import REPO_ROOT
from tests.server.routes.conftest import make_settings

STATEMENT = REPO_ROOT / "docs" / "conformance_statement.md"
UID = re.compile(r"\b1\.2\.840\.10008(?:\.\d+)+\b")
SEG_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}


def _section(heading: str) -> str:
    text = STATEMENT.read_text(encoding="utf-8")
    start = text.index(heading)
    following = re.search(r"^#{2,3} ", text[start + len(heading) :], flags=re.MULTILINE)
    end = start + len(heading) + following.start() if following else len(text)
    return text[start:end]


def _uids(heading: str) -> set[str]:
    return set(UID.findall(_section(heading)))


def test_the_resources_are_those_of_the_api(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    try:
        document = app.openapi()
    finally:
        app.state.radserve.store.close()
    served = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/dicomweb")
        for method in operations
    }
    listed = set(re.findall(r"^\| (GET|POST) \| `([^`]+)` \|", _section("### 3.1"), re.MULTILINE))
    assert listed == served


def test_the_transfer_syntaxes_are_those_the_code_reads_and_writes() -> None:
    assert _uids("### 3.3") == set(supported_transfer_syntaxes())
    assert _uids("### 3.4") == set(TRANSCODE_TARGETS)


@pytest.mark.parametrize("seg_type", ["auto", "labelmap"])
def test_the_objects_made_are_of_the_sop_classes_listed(demo_study: Path, seg_type: str) -> None:
    listed = _uids("## 4. Objects created")
    assert listed == {*SEG_CLASSES, str(Comprehensive3DSRStorage), SECONDARY_CAPTURE_IMAGE_STORAGE}
    series = read_image_series(demo_study / "image")
    mask = (series.volume.array > 300).astype(np.uint8)
    results = build_results(
        series,
        LabelMap(series.volume.with_array(mask), (SegmentInfo(1, "Bone"),)),
        algorithm=AlgorithmIdentity(name="statement", version="1.0.0", model_sha256="ef" * 32),
        segmentation_type=seg_type,  # type: ignore[arg-type]
    )
    assert {str(ds.SOPClassUID) for ds in results.datasets()} <= listed
