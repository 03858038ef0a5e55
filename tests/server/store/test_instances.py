"""The instance store: durable files + SQLite index, validation, duplicates, queries, crashes."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML

from radserve.dicom_io import InvalidDicomError, UnsupportedTransferSyntaxError, read_instance
from radserve.server import (
    DuplicateInstanceError,
    InstanceNotFoundError,
    InstanceQuery,
    InstanceRejectedError,
    InstanceStore,
    QueryError,
    QueryLevel,
    StoreError,
    StoreFullError,
    index_rows,
    read_received,
)

STUDY_UID = "1.3.6.1.4.1.14519.5.2.1.5168.1900.190311276211389538203367070477"


@pytest.fixture(scope="module")
def demo_files(demo_study: Path) -> list[Path]:
    return [*sorted((demo_study / "image").glob("*.dcm")), demo_study / "mask" / "RS.dcm"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, demo_files: list[Path]) -> Iterator[Any]:
    """A store holding the demo study (read-only use)."""
    with InstanceStore(tmp_path_factory.mktemp("filled")) as store:
        with store.batch() as batch:
            for path in demo_files:
                staged = store.staged_file()
                staged.write(path.read_bytes())
                batch.add(staged)
            outcome = batch.commit()
        assert not outcome.failed
        yield store


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def _values(result: dict[str, Any], tag: str) -> list[Any]:
    return list(result.get(tag, {}).get("Value", []))


def test_batch_stores_the_demo_study_durably(filled: InstanceStore, demo_files: list[Path]) -> None:
    studies = filled.search(InstanceQuery(QueryLevel.STUDY))
    assert len(studies) == 1
    study = studies[0]
    assert _values(study, "0020000D") == [STUDY_UID]
    assert _values(study, "00201206") == [2]  # NumberOfStudyRelatedSeries
    assert _values(study, "00201208") == [49]  # NumberOfStudyRelatedInstances
    assert _values(study, "00080061") == ["CT", "RTSTRUCT"]  # ModalitiesInStudy
    ct = pydicom.dcmread(demo_files[0], stop_before_pixels=True)
    for keyword in ("PatientName", "StudyDate", "AccessionNumber", "StudyID"):
        assert study[f"{ct[keyword].tag:08X}"] == ct[keyword].to_json_dict(1024, None)
    assert len(filled.search(InstanceQuery(QueryLevel.SERIES))) == 2
    instances = filled.get_instances(STUDY_UID)
    assert len(instances) == 49
    by_sop = {i.sop_instance_uid: i for i in instances}
    for path in demo_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        stored = by_sop[ds.SOPInstanceUID]
        assert stored.path == (
            filled.data_dir
            / "instances"
            / STUDY_UID
            / ds.SeriesInstanceUID
            / f"{ds.SOPInstanceUID}.dcm"
        )
        assert stored.path.read_bytes() == path.read_bytes()
        assert stored.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert stored.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    assert list((filled.data_dir / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("level", "match", "count"),
    [
        (QueryLevel.STUDY, {"PatientName": "sts_002"}, 1),  # names: case-insensitive
        (QueryLevel.STUDY, {"PatientName": "ST?_0*"}, 1),
        (QueryLevel.STUDY, {"PatientName": "X*"}, 0),
        (QueryLevel.STUDY, {"PatientID": "sts_002"}, 0),  # other text: case-sensitive
        (QueryLevel.STUDY, {"PatientID": ""}, 1),  # universal matching
        (QueryLevel.STUDY, {"StudyDate": "20060128"}, 1),
        (QueryLevel.STUDY, {"StudyDate": "20060101-20060131"}, 1),
        (QueryLevel.STUDY, {"StudyDate": "-20051231"}, 0),
        (QueryLevel.STUDY, {"StudyDate": "20060129-"}, 0),
        (QueryLevel.STUDY, {"StudyTime": "1400-1500"}, 1),
        (QueryLevel.STUDY, {"StudyInstanceUID": f"1.2.3,{STUDY_UID}"}, 1),
        (QueryLevel.STUDY, {"StudyInstanceUID": "1.2.3\\1.2.4"}, 0),
        (QueryLevel.STUDY, {"ModalitiesInStudy": "MR,RTSTRUCT"}, 1),
        (QueryLevel.STUDY, {"ModalitiesInStudy": "MR"}, 0),
        (QueryLevel.SERIES, {"Modality": "RT*"}, 1),
        (QueryLevel.SERIES, {"SeriesNumber": "3"}, 1),
        (QueryLevel.SERIES, {"PatientName": "STS_002", "Modality": "CT"}, 1),
        (QueryLevel.IMAGE, {"InstanceNumber": "7"}, 1),
        (QueryLevel.IMAGE, {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}, 48),
        (QueryLevel.IMAGE, {"Modality": "RTSTRUCT"}, 1),
    ],
)
def test_matching(
    filled: InstanceStore, level: QueryLevel, match: dict[str, str], count: int
) -> None:
    assert len(filled.search(InstanceQuery(level, match=match))) == count


def test_limit_offset_and_order(filled: InstanceStore) -> None:
    query = InstanceQuery(QueryLevel.IMAGE, match={"Modality": "CT"}, offset=45, limit=10)
    page = filled.search(query)
    assert [_values(r, "00200013") for r in page] == [[45], [46], [47]]
    everything = filled.search(InstanceQuery(QueryLevel.IMAGE, study_instance_uid=STUDY_UID))
    assert len(everything) == 49
    assert _values(everything[0], "00080060") == ["RTSTRUCT"]  # series 1 before series 3
    scoped = InstanceQuery(QueryLevel.SERIES, study_instance_uid="1.2.3")
    assert filled.search(scoped) == []


@pytest.mark.parametrize(
    "match",
    [{"PatientWeight": "70"}, {"StudyDate": "2006-01-28"}, {"SeriesNumber": "three"}],
)
def test_unsupported_or_malformed_queries_are_refused(
    filled: InstanceStore, match: dict[str, str]
) -> None:
    with pytest.raises(QueryError):
        filled.search(InstanceQuery(QueryLevel.SERIES, match=match))


def test_get_instances_by_level(filled: InstanceStore) -> None:
    series = filled.search(InstanceQuery(QueryLevel.SERIES, match={"Modality": "CT"}))
    series_uid = _values(series[0], "0020000E")[0]
    instances = filled.get_instances(STUDY_UID, series_uid)
    assert len(instances) == 48
    one = filled.get_instances(STUDY_UID, series_uid, instances[3].sop_instance_uid)
    assert one == [instances[3]]
    with pytest.raises(InstanceNotFoundError, match="no such series"):
        filled.get_instances(STUDY_UID, "1.2.3")
    with pytest.raises(InstanceNotFoundError, match="no such study"):
        filled.get_instances("1.2.3")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[InstanceStore]:
    with InstanceStore(tmp_path / "store") as opened:
        yield opened


def test_identical_duplicate_is_a_no_op(store: InstanceStore, demo_files: list[Path]) -> None:
    first = store.store(demo_files[0])
    again = store.store(demo_files[0].read_bytes())
    assert first.created and not again.created
    assert again.path == first.path and again.sha256 == first.sha256
    assert len(store.search(InstanceQuery(QueryLevel.IMAGE))) == 1


def test_different_duplicate_is_refused_unless_overwrite(
    tmp_path: Path, demo_files: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_files[0])
    ds.InstanceNumber = 999
    changed = _bytes(ds)
    with InstanceStore(tmp_path / "a") as store:
        original = store.store(demo_files[0])
        with pytest.raises(DuplicateInstanceError):
            store.store(changed)
        assert original.path.read_bytes() == demo_files[0].read_bytes()
    with InstanceStore(tmp_path / "a", overwrite=True) as store:
        replaced = store.store(changed)
        assert replaced.created
        assert replaced.path.read_bytes() == changed
        results = store.search(InstanceQuery(QueryLevel.IMAGE))
        assert [_values(r, "00200013") for r in results] == [[999]]


def test_duplicates_within_one_batch(store: InstanceStore, demo_files: list[Path]) -> None:
    ds = pydicom.dcmread(demo_files[1])
    ds.InstanceNumber = 998
    with store.batch() as batch:
        for data in (demo_files[1].read_bytes(), demo_files[1].read_bytes(), _bytes(ds)):
            staged = store.staged_file()
            staged.write(data)
            batch.add(staged)
        outcome = batch.commit()
    assert [s.created for s in outcome.stored] == [True, False]
    assert len(outcome.failed) == 1
    assert isinstance(outcome.failed[0].error, DuplicateInstanceError)
    assert outcome.failed[0].sop_instance_uid == ds.SOPInstanceUID


def test_garbage_and_truncated_input_is_refused(
    store: InstanceStore, demo_files: list[Path]
) -> None:
    data = demo_files[0].read_bytes()
    with pytest.raises(InvalidDicomError):
        store.store(b"not DICOM at all " * 100)
    with pytest.raises(InvalidDicomError, match="truncated"):
        store.store(data[: len(data) - 1000])
    with pytest.raises(InvalidDicomError):
        store.store(b"")
    assert store.search(InstanceQuery(QueryLevel.IMAGE)) == []
    assert list((store.data_dir / "tmp").iterdir()) == []


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_a_file_without_its_preamble_is_stored_as_a_dicom_file(
    store: InstanceStore, demo_files: list[Path], chunk: int
) -> None:
    data = demo_files[0].read_bytes()
    assert data[128:132] == b"DICM"
    staged = store.staged_file()
    for start in range(0, len(data) - 132, chunk):  # as a sender's toolkit may cut it
        staged.write(data[132:][start : start + chunk])
    with store.batch() as batch:
        batch.add(staged)
        (stored,) = batch.commit().stored
    kept = stored.path.read_bytes()
    assert kept[:132] == bytes(128) + b"DICM" and kept[132:] == data[132:]
    assert stored.size_bytes == len(kept) and stored.sha256 == hashlib.sha256(kept).hexdigest()
    assert (
        pydicom.dcmread(io.BytesIO(kept)).SOPInstanceUID
        == pydicom.dcmread(demo_files[0]).SOPInstanceUID
    )


def test_a_data_set_without_file_meta_is_refused(
    store: InstanceStore, demo_files: list[Path]
) -> None:
    ds = Dataset(pydicom.dcmread(demo_files[0]))  # the data set alone, no file meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    assert buffer.getvalue()[:2] == b"\x08\x00"
    with pytest.raises(InvalidDicomError, match="no File Meta Information before"):
        store.store(buffer.getvalue())
    assert not list((store.data_dir / "instances").rglob("*.dcm"))


def test_large_instances_are_checked_without_reading_pixel_data(
    store: InstanceStore, demo_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("radserve.server.store.files.FULL_READ_MAX_BYTES", 0)
    data = demo_files[0].read_bytes()
    with pytest.raises(InvalidDicomError, match="truncated"):
        store.store(data[: len(data) - 1000])
    assert store.store(data).created


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ds: delattr(ds, "SeriesInstanceUID"), "no SeriesInstanceUID"),
        (lambda ds: setattr(ds, "SOPInstanceUID", "../../etc/passwd"), "malformed SOP"),
        (lambda ds: setattr(ds, "StudyInstanceUID", "1.2." + "3" * 70), "malformed Study"),
    ],
)
def test_instances_without_valid_uids_are_refused(
    store: InstanceStore, demo_files: list[Path], change: Any, message: str
) -> None:
    ds = pydicom.dcmread(demo_files[0])
    change(ds)
    with pytest.raises(InstanceRejectedError, match=message):
        store.store(_bytes(ds))
    assert not list((store.data_dir / "instances").rglob("*.dcm"))


def test_unsupported_transfer_syntax_is_refused(
    store: InstanceStore, demo_files: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_files[0])
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([ds.PixelData])
    with pytest.raises(UnsupportedTransferSyntaxError, match="MPEG2"):
        store.store(_bytes(ds))


def test_study_and_series_must_be_consistent(store: InstanceStore, demo_files: list[Path]) -> None:
    with pytest.raises(InstanceRejectedError, match="not in the study of the request"):
        store.store(demo_files[0], study_instance_uid="1.2.3")
    store.store(demo_files[0], study_instance_uid=STUDY_UID)
    ds = pydicom.dcmread(demo_files[1])
    ds.StudyInstanceUID = "1.2.3.4"  # same series, other study
    with pytest.raises(InstanceRejectedError, match="another study"):
        store.store(_bytes(ds))


def test_instances_per_study_limit(tmp_path: Path, demo_files: list[Path]) -> None:
    with InstanceStore(tmp_path / "s", max_instances_per_study=3) as store:
        for path in demo_files[:3]:
            store.store(path)
        with pytest.raises(StoreFullError, match="maximum of 3"):
            store.store(demo_files[3])
        assert not store.store(demo_files[0]).created  # an identical copy is still fine


def test_reopened_store_keeps_its_index_and_is_locked_while_open(
    tmp_path: Path, demo_files: list[Path]
) -> None:
    with InstanceStore(tmp_path / "s") as store:
        for path in demo_files[:5]:
            store.store(path)
        with pytest.raises(StoreError, match="open in another"):
            InstanceStore(tmp_path / "s")
    with InstanceStore(tmp_path / "s") as store:
        assert len(store.get_instances(STUDY_UID)) == 5
        assert not store.store(demo_files[0]).created
        store.check_ready()


_CRASH = """
import importlib, os, sys
# The crash is injected into the store's commit module: the index insert it calls after the rename.
store = importlib.import_module("radserve.server.store.instances")
commit = importlib.import_module("radserve.server.store.commit")
def crash(db, rows):
    os._exit(17)  # the process dies after the rename, before the index commit
commit.insert_rows = crash
store.InstanceStore(sys.argv[1]).store(sys.argv[2])
"""


def test_crash_after_rename_is_recovered_on_open(tmp_path: Path, demo_files: list[Path]) -> None:
    data_dir = tmp_path / "s"
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, str(data_dir), str(demo_files[2])], check=False
    )
    assert proc.returncode == 17
    ds = pydicom.dcmread(demo_files[2], stop_before_pixels=True)
    path = data_dir / "instances" / STUDY_UID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert path.read_bytes() == demo_files[2].read_bytes()  # on disk, not indexed
    (data_dir / "tmp" / "leftover.part").write_bytes(b"half a file")
    with InstanceStore(data_dir) as store:
        [recovered] = store.get_instances(STUDY_UID)  # the journal's file was indexed
        assert recovered.sop_instance_uid == ds.SOPInstanceUID
        assert recovered.sha256 == hashlib.sha256(demo_files[2].read_bytes()).hexdigest()
        assert list((data_dir / "tmp").iterdir()) == []
        assert not store.store(demo_files[2]).created


def test_unjournalled_file_stays_invisible_until_stored(
    tmp_path: Path, demo_files: list[Path]
) -> None:
    data_dir = tmp_path / "s"
    with InstanceStore(data_dir) as store:
        store.store(demo_files[0])
    ds = pydicom.dcmread(demo_files[1], stop_before_pixels=True)
    orphan = data_dir / "instances" / STUDY_UID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    shutil.copyfile(demo_files[1], orphan)
    with InstanceStore(data_dir) as store:
        assert len(store.get_instances(STUDY_UID)) == 1
        with pytest.raises(InstanceNotFoundError):
            store.get_instances(STUDY_UID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert store.store(demo_files[1]).created
        assert len(store.get_instances(STUDY_UID)) == 2


def test_concurrent_stores_from_threads(store: InstanceStore, demo_files: list[Path]) -> None:
    errors: list[BaseException] = []

    def work(paths: list[Path]) -> None:
        try:
            for path in paths:
                store.store(path)
                store.search(InstanceQuery(QueryLevel.STUDY))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(demo_files[k::4],)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.get_instances(STUDY_UID)) == 49


def test_received_header_is_read_like_the_whole_instance(demo_files: list[Path]) -> None:
    path = demo_files[0]
    data = path.read_bytes()
    whole = read_instance(path)
    file_values: dict[str, str | int] = {"size_bytes": len(data)}
    file_values.update(dict.fromkeys(("transfer_syntax_uid", "path", "sha256", "stored_at"), "x"))
    for header in (
        read_received(path, size=len(data), max_bytes=len(data), data=data),
        read_received(path, size=len(data), max_bytes=len(data)),
    ):
        # Uncompressed Pixel Data that ends the file is left unread; the rest is the same.
        assert "PixelData" not in header and "PixelData" in whole
        tags = list(header.keys())
        assert tags == [tag for tag in list(whole.keys()) if tag != 0x7FE00010]
        assert all(header[tag].value == whole[tag].value for tag in tags)
        assert header.file_meta == whole.file_meta
        assert index_rows(header, file_values=file_values) == index_rows(
            whole, file_values=file_values
        )


def test_bytes_after_the_pixel_data_are_refused_unless_zero_padding(
    store: InstanceStore, demo_files: list[Path]
) -> None:
    data = demo_files[0].read_bytes()
    with pytest.raises(InvalidDicomError, match="3 bytes after the last complete element"):
        store.store(data + b"\x01\x02\x03")
    with pytest.raises(InvalidDicomError, match="truncated"):
        store.store(data + b"garbage!" * 4)  # read as an element that the file cuts short
    stored = store.store(data + b"\x00\x00")  # a few zero bytes are tolerated, as before
    assert stored.created and stored.size_bytes == len(data) + 2
