"""DICOMweb round trips against a real Orthanc PACS."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from radserve.dicom_io import iter_instances, read_instance, read_series, volume_from_instances
from radserve.server import PacsClient, PacsError
from tests.conftest import OrthancServer, _free_port

pytestmark = pytest.mark.pacs


def test_study_round_trip_through_orthanc(orthanc: OrthancServer, demo_study: Path) -> None:
    instances = list(iter_instances([demo_study / "image"]))
    client = PacsClient(orthanc.dicomweb_url)
    result = client.store(instances)
    assert sorted(result.stored_sop_instance_uids) == sorted(
        str(ds.SOPInstanceUID) for ds in instances
    )
    study_uid = str(instances[0].StudyInstanceUID)
    series_uid = str(instances[0].SeriesInstanceUID)
    assert series_uid in client.series_uids(study_uid)
    fetched = client.retrieve_series(study_uid, series_uid)
    local = read_series(demo_study / "image")
    remote = volume_from_instances(fetched)
    np.testing.assert_array_equal(remote.array, local.array)
    np.testing.assert_allclose(remote.affine_lps(), local.affine_lps())
    assert remote.sop_instance_uids == local.sop_instance_uids


def test_unreachable_pacs_raises_clear_error(demo_study: Path) -> None:
    client = PacsClient(f"http://127.0.0.1:{_free_port()}/dicom-web", timeout_s=2)
    instances = list(iter_instances([demo_study / "image" / "000000.dcm"]))
    with pytest.raises(PacsError, match=r"STOW-RS .* failed"):
        client.store(instances)


def test_unknown_series_raises_clear_error(orthanc: OrthancServer) -> None:
    client = PacsClient(orthanc.dicomweb_url)
    with pytest.raises(PacsError, match=r"WADO-RS .* HTTP 404"):
        client.retrieve_series("1.2.3.4", "1.2.3.4.5")


def test_files_are_stored_byte_for_byte(orthanc: OrthancServer, demo_study: Path) -> None:
    paths = sorted((demo_study / "image").glob("*.dcm"))[:3]
    files = [path.read_bytes() for path in paths]
    result = PacsClient(orthanc.dicomweb_url).store_files(files)
    uids = [str(read_instance(path, stop_before_pixels=True).SOPInstanceUID) for path in paths]
    assert sorted(result.stored_sop_instance_uids) == sorted(uids)
    assert result.failed_sop_instance_uids == ()
    for uid, data in zip(uids, files, strict=True):
        (found,) = httpx.post(
            f"{orthanc.url}/tools/lookup", content=uid.encode(), timeout=30
        ).json()
        stored = httpx.get(f"{orthanc.url}/instances/{found['ID']}/file", timeout=30)
        assert stored.content == data


def test_refused_files_raise_clear_error(orthanc: OrthancServer) -> None:
    client = PacsClient(orthanc.dicomweb_url)
    with pytest.raises(PacsError, match=r"STOW-RS .*(failed: HTTP 4\d\d|refused)"):
        client.store_files([b"not a DICOM file at all" * 10])
    with pytest.raises(ValueError, match="nothing to store"):
        client.store_files([])
