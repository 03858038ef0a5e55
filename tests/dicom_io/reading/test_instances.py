"""Reading instances (files, folders, zip, bytes; quirks; bad input) and decoding pixel data."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import gdcm
import nibabel as nib
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom import config as pydicom_config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    JPEG2000,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from radserve.dicom_io import (
    DEFLATED_IMAGE_FRAME_COMPRESSION,
    ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN,
    InstanceTooLargeError,
    InvalidDicomError,
    UnsupportedTransferSyntaxError,
    check_transfer_syntax,
    decode_pixel_arrays,
    iter_instance_headers,
    iter_instances,
    read_instance,
    read_pixel_data_into,
    supported_transfer_syntaxes,
    with_pixel_data,
)
from tests.conftest import require
from tests.hostile_inputs import deflated_bomb

READING_LOGGER = "radserve.dicom_io.reading.instances"


# --- helpers -------------------------------------------------------------------------------


def _totalseg_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "totalseg_ct" / "dicom").iterdir())


def _sts_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "sts_ct" / "dicom" / "STS_001" / "image").iterdir())


def _stored(ds: Dataset) -> npt.NDArray[np.generic]:
    return decode_pixel_arrays([ds], workers=1)[0]


def _hu(ds: Dataset, stored: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    return stored * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


@pytest.fixture(scope="module")
def native_ct(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 512x512 CT slice (12 bits stored), decompressed to Explicit VR Little Endian."""
    ds = pydicom.dcmread(_totalseg_files(shared_data)[0])
    ds.decompress()
    ds.SOPClassUID = CTImageStorage
    path = tmp_path_factory.mktemp("native") / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _with_dataset_only(raw: bytes) -> bytes:
    """The data set of a Part 10 file, without preamble, prefix and file meta information."""
    meta_length = int.from_bytes(raw[140:144], "little")
    return raw[144 + meta_length :]


def _gdcm_convert(source: Path, target: Path, syntax: int) -> Path:
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(target))
    assert writer.Write()
    return target


# --- reading: real data and quirks ---------------------------------------------------------


def test_blank_sop_uids_are_repaired_from_file_meta(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _totalseg_files(shared_data)[0]
    caplog.set_level(logging.INFO, logger=READING_LOGGER)
    ds = read_instance(path)
    assert ds.SOPClassUID == CTImageStorage
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.SOPInstanceUID == path.name.removeprefix("CT.")
    assert ds.PatientID == ""  # blank Patient ID read as is
    message = caplog.records[-1].getMessage()
    assert "blank SOPClassUID" in message
    assert "blank SOPInstanceUID" in message


def test_over_long_study_id_is_kept_and_never_raises(
    shared_data: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real STS CT has an 18-character Study ID (SH allows 16). Even an application that
    # made pydicom's reading validation strict must be able to read it; the private attribute
    # is patched so the original (unset) state is restored exactly.
    monkeypatch.setattr(pydicom_config.settings, "_reading_validation_mode", pydicom_config.RAISE)
    caplog.set_level(logging.INFO, logger=READING_LOGGER)
    path = _sts_files(shared_data)[0]
    ds = read_instance(path)
    raw_value = pydicom.dcmread(path, stop_before_pixels=True).get_item(0x00200010).value
    assert ds.StudyID == raw_value.decode().strip()
    assert len(ds.StudyID) > 16
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "StudyID (SH) longer than 16 characters" in messages
    assert ds.StudyID not in messages  # the value itself is never logged


def test_reading_leaves_pydicom_configuration_alone(shared_data: Path) -> None:
    before = (
        pydicom_config.settings._reading_validation_mode,
        pydicom_config.settings._writing_validation_mode,
    )
    read_instance(_sts_files(shared_data)[0])
    read_instance(_totalseg_files(shared_data)[0])
    after = (
        pydicom_config.settings._reading_validation_mode,
        pydicom_config.settings._writing_validation_mode,
    )
    assert after == before


@pytest.mark.parametrize("cut", ["preamble", "meta"])
def test_no_preamble_or_no_file_meta_is_read(
    native_ct: Path, cut: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = native_ct.read_bytes()
    data = raw[132:] if cut == "preamble" else _with_dataset_only(raw)
    caplog.set_level(logging.INFO, logger=READING_LOGGER)
    ds = read_instance(data)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(_stored(ds), _stored(read_instance(native_ct)))
    message = caplog.records[-1].getMessage()
    assert "no 128-byte preamble" in message
    assert ("no file meta information" in message) == (cut == "meta")


def test_implicit_vr_without_file_meta_is_inferred(shared_data: Path, tmp_path: Path) -> None:
    source = _sts_files(shared_data)[0]
    path = tmp_path / "bare.dcm"
    path.write_bytes(_with_dataset_only(source.read_bytes()))
    ds = read_instance(path)
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert np.array_equal(_stored(ds), pydicom.dcmread(source).pixel_array)


def test_folders_are_read_recursively_and_non_dicom_skipped(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _sts_files(shared_data)[:4]
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(files[0], tmp_path / files[0].name)
    shutil.copy(files[1], tmp_path / "a" / files[1].name)
    shutil.copy(files[2], tmp_path / "a" / "b" / files[2].name)
    (tmp_path / "a" / "notes.txt").write_text("not DICOM\n")
    caplog.set_level(logging.INFO, logger=READING_LOGGER)
    uids = {str(ds.SOPInstanceUID) for ds in iter_instances([tmp_path, files[3]])}
    expected = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert uids == expected
    assert any("notes.txt" in r.getMessage() for r in caplog.records)


def test_zip_archives_are_read_and_garbage_members_skipped(
    shared_data: Path, tmp_path: Path
) -> None:
    files = _totalseg_files(shared_data)[:3]
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            zf.write(path, f"series/{path.name}")
        zf.writestr("series/readme.txt", "hello")
        zf.writestr("series/garbage.dcm", np.random.default_rng(1).bytes(4096))
    instances = list(iter_instances([archive]))
    assert [str(ds.SOPInstanceUID) for ds in instances] == [
        p.name.removeprefix("CT.") for p in files
    ]
    arrays = decode_pixel_arrays(instances, workers=1)
    assert np.array_equal(arrays[0], pydicom.dcmread(files[0]).pixel_array)


def test_zip_of_one_instance_reads_as_one(shared_data: Path) -> None:
    path = _sts_files(shared_data)[0]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.write(path, path.name)
    ds = read_instance(buffer.getvalue())
    assert ds.SOPInstanceUID == pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


# --- reading: bad input --------------------------------------------------------------------


def test_random_bytes_are_not_dicom() -> None:
    with pytest.raises(InvalidDicomError, match="not a DICOM instance"):
        read_instance(np.random.default_rng(0).bytes(10_000))


def test_empty_file_is_not_dicom(tmp_path: Path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(InvalidDicomError, match="empty file"):
        read_instance(path)


def test_text_file_is_not_dicom(tmp_path: Path) -> None:
    path = tmp_path / "report.txt"
    path.write_text("Patient was scanned.\n" * 50)
    with pytest.raises(InvalidDicomError, match="not a DICOM instance"):
        read_instance(path)
    assert list(iter_instances([path])) == []


def test_folder_is_not_an_instance(tmp_path: Path) -> None:
    with pytest.raises(InvalidDicomError, match="folder"):
        read_instance(tmp_path)


@pytest.mark.parametrize("fraction", [0.002, 0.01, 0.5, 0.9, 0.9999])
@pytest.mark.parametrize("which", ["native", "jpeg2000"])
def test_truncated_real_files_are_rejected(
    shared_data: Path, native_ct: Path, which: str, fraction: float
) -> None:
    raw = (native_ct if which == "native" else _totalseg_files(shared_data)[0]).read_bytes()
    cut = raw[: int(len(raw) * fraction)]
    with pytest.raises(InvalidDicomError, match=r"truncated|not a DICOM instance|no data elem"):
        read_instance(cut)


def test_trailing_zero_padding_is_tolerated_but_trailing_bytes_are_not(native_ct: Path) -> None:
    raw = native_ct.read_bytes()
    assert read_instance(raw + b"\x00\x00\x00").SOPInstanceUID == read_instance(raw).SOPInstanceUID
    with pytest.raises(InvalidDicomError, match="3 bytes after the last complete element"):
        read_instance(raw + b"\x10\x00\x20")


def test_truncated_file_is_skipped_in_a_folder(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _totalseg_files(shared_data)[:2]
    (tmp_path / "ok.dcm").write_bytes(files[0].read_bytes())
    (tmp_path / "cut.dcm").write_bytes(files[1].read_bytes()[:-100])
    caplog.set_level(logging.INFO, logger=READING_LOGGER)
    assert len(list(iter_instances([tmp_path]))) == 1
    assert any(
        "cut.dcm" in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records
    )


def test_zip_holding_only_garbage(tmp_path: Path) -> None:
    archive = tmp_path / "garbage.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", np.random.default_rng(2).bytes(2048))
    assert list(iter_instances([archive])) == []
    with pytest.raises(InvalidDicomError, match="not a DICOM instance"):
        read_instance(archive)


def test_corrupt_zip_is_an_error(shared_data: Path, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(_sts_files(shared_data)[0], "a.dcm")
    archive = tmp_path / "cut.zip"
    archive.write_bytes(buffer.getvalue()[:-30])  # no central directory
    with pytest.raises(InvalidDicomError, match="corrupt zip"):
        list(iter_instances([archive]))


def test_zip_bomb_member_is_refused_before_reading_it_all(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.dcm", bytes(64 * 1024 * 1024))
    assert archive.stat().st_size < 200_000
    with pytest.raises(InstanceTooLargeError, match="larger than the limit of 1048576 bytes"):
        list(iter_instances([archive], max_bytes=1024 * 1024))
    with pytest.raises(InstanceTooLargeError):
        read_instance(archive, max_bytes=1024 * 1024)


def test_deflated_data_set_bomb_is_refused(native_ct: Path) -> None:
    ds = pydicom.dcmread(native_ct)
    ds.PixelData = bytes(len(ds.PixelData))  # zeros deflate to almost nothing
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    assert len(data) < 100_000
    with pytest.raises(InstanceTooLargeError, match="inflates beyond"):
        read_instance(data, max_bytes=200_000)
    assert read_instance(data).Rows == 512


def test_a_deflate_bomb_is_counted_not_inflated_in_memory() -> None:
    bomb = deflated_bomb(512 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(InstanceTooLargeError, match="inflates beyond"):
            read_instance(bomb, max_bytes=256 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"{peak / 1024**2:.0f} MiB held to refuse the bomb"


def test_an_unreadable_element_is_an_invalid_dicom_error(demo_study: Path) -> None:
    """Found by the fuzzer: an instance without SOP Instance UID whose file meta copy of it
    has an unknown VR (``U\\0``): repairing the UID from the meta made pydicom raise
    its unknown-VR exception out of read_instance."""
    data = sorted((demo_study / "image").glob("*.dcm"))[0].read_bytes()
    meta_instance = b"\x02\x00\x03\x00UI"
    sop_instance = b"\x08\x00\x18\x00@\x00\x00\x00"  # implicit VR, 64 bytes
    assert data.count(meta_instance) == 1 and data.count(sop_instance) == 1
    hostile = data.replace(meta_instance, meta_instance[:5] + b"\x00").replace(
        sop_instance,
        b"\x08\x00\x17\x00" + sop_instance[4:],  # now an Acquisition UID
    )
    with pytest.raises(InvalidDicomError, match="cannot be read"):
        read_instance(hostile)


def test_file_over_the_limit_is_refused(native_ct: Path) -> None:
    with pytest.raises(InstanceTooLargeError, match="larger than the limit"):
        read_instance(native_ct, max_bytes=10_000)


# --- decoding: every syntax ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "transfer_syntax_uid"),
    [
        ("compressed", "1.2.840.10008.1.2.4.90"),
        ("compressed_jpeg", "1.2.840.10008.1.2.4.70"),
        ("compressed_jpegls", "1.2.840.10008.1.2.4.80"),
        ("compressed_rle", "1.2.840.10008.1.2.5"),
    ],
)
def test_real_compressed_series_match_the_reference_volume(
    shared_data: Path, folder: str, transfer_syntax_uid: str
) -> None:
    base = shared_data / "dicom2nifti" / "generic" / folder
    instances = sorted(iter_instances([base / "001"]), key=lambda ds: int(ds.InstanceNumber))
    assert {ds.file_meta.TransferSyntaxUID for ds in instances} == {transfer_syntax_uid}
    volume = np.stack(decode_pixel_arrays(instances))
    reference = np.asarray(nib.load(base / "001_ground_truth.nii.gz").dataobj)
    assert np.array_equal(volume, reference.transpose(2, 1, 0))


@pytest.mark.parametrize(
    "name",
    [
        "liver_expb",
        "liver_deflate",
        "liver_rle",
        "liver_j2k",
        "liver_nonbyte_aligned_deflate",
        "liver_nonbyte_aligned_rle",
        "liver_nonbyte_aligned_j2k",
    ],
)
def test_liver_seg_in_every_encoding_matches_explicit_little_endian(
    shared_data: Path, name: str
) -> None:
    folder = shared_data / "seg_sr" / "pydicom_data"
    reference_name = "liver_nonbyte_aligned" if "nonbyte" in name else "liver"
    reference = _stored(read_instance(folder / f"{reference_name}.dcm"))
    decoded = _stored(read_instance(folder / f"{name}.dcm"))
    assert decoded.shape == reference.shape == (3, *reference.shape[1:])
    assert np.array_equal(decoded, reference)
    assert int(decoded.sum()) > 0


def test_totalseg_jpeg2000_matches_pydicom_in_parallel_and_in_order(shared_data: Path) -> None:
    files = _totalseg_files(shared_data)
    instances = [read_instance(path) for path in reversed(files)]
    parallel = decode_pixel_arrays(instances, workers=2)
    serial = decode_pixel_arrays(instances, workers=1)
    for path, a, b in zip(reversed(files), parallel, serial, strict=True):
        reference = pydicom.dcmread(path).pixel_array
        assert np.array_equal(a, reference)
        assert np.array_equal(b, reference)


def _compressed_with_pydicom(native_ct: Path, uid: str, **kwargs: object) -> Dataset:
    ds = pydicom.dcmread(native_ct)
    ds.compress(uid, **kwargs)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return read_instance(buffer.getvalue())


@pytest.mark.parametrize("uid", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_lossless_encodings_made_from_real_data_decode_exactly(native_ct: Path, uid: str) -> None:
    original = _stored(read_instance(native_ct))
    ds = _compressed_with_pydicom(native_ct, uid)
    assert ds.file_meta.TransferSyntaxUID == uid
    assert np.array_equal(_stored(ds), original)


@pytest.mark.parametrize(
    ("uid", "options", "max_error"),
    [(JPEGLSNearLossless, {"jls_error": 3}, 3), (JPEG2000, {"j2k_cr": [8]}, 200)],
)
def test_lossy_encodings_made_from_real_data_decode_closely(
    native_ct: Path, uid: str, options: dict[str, object], max_error: int
) -> None:
    original = _stored(read_instance(native_ct)).astype(np.int32)
    ds = _compressed_with_pydicom(native_ct, uid, **options)
    assert ds.file_meta.TransferSyntaxUID == uid
    error = np.abs(_stored(ds).astype(np.int32) - original)
    assert 0 < error.max() <= max_error
    assert error.mean() < 10


@pytest.mark.parametrize(
    ("syntax", "uid"),
    [
        (gdcm.TransferSyntax.JPEGLosslessProcess14, "1.2.840.10008.1.2.4.57"),
        (gdcm.TransferSyntax.JPEGLosslessProcess14_1, "1.2.840.10008.1.2.4.70"),
        (gdcm.TransferSyntax.ExplicitVRBigEndian, "1.2.840.10008.1.2.2"),
    ],
)
def test_gdcm_encodings_made_from_real_data_decode_exactly(
    native_ct: Path, tmp_path: Path, syntax: int, uid: str
) -> None:
    ds = read_instance(_gdcm_convert(native_ct, tmp_path / "out.dcm", syntax))
    assert ds.file_meta.TransferSyntaxUID == uid
    decoded = _stored(ds)
    assert decoded.dtype.isnative
    assert np.array_equal(decoded, _stored(read_instance(native_ct)))


def test_deflated_explicit_little_endian_decodes_exactly(native_ct: Path) -> None:
    ds = pydicom.dcmread(native_ct)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert len(buffer.getvalue()) < native_ct.stat().st_size
    decoded = read_instance(buffer.getvalue())
    assert decoded.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert np.array_equal(_stored(decoded), _stored(read_instance(native_ct)))


@pytest.mark.parametrize(
    ("option", "uid", "max_hu_error"),
    [("+eb", "1.2.840.10008.1.2.4.50", 60.0), ("+ee", "1.2.840.10008.1.2.4.51", 12.0)],
)
def test_lossy_jpeg_made_by_dcmtk_decodes_closely(
    native_ct: Path, tmp_path: Path, option: str, uid: str, max_hu_error: float
) -> None:
    exe = shutil.which("dcmcjpeg")
    require(exe is not None, "dcmcjpeg not installed (Debian package dcmtk)")
    target = tmp_path / "jpeg.dcm"
    subprocess.run([str(exe), option, str(native_ct), str(target)], check=True)
    ds = read_instance(target)
    assert ds.file_meta.TransferSyntaxUID == uid
    original = read_instance(native_ct)
    error = np.abs(_hu(ds, _stored(ds)) - _hu(original, _stored(original)))
    assert error.mean() < max_hu_error / 4
    assert np.percentile(error, 99) < max_hu_error


def test_htj2k_made_by_openjph_decodes_exactly(native_ct: Path, tmp_path: Path) -> None:
    exe = shutil.which("ojph_compress")
    require(exe is not None, "ojph_compress not installed (Debian package openjph-tools)")
    ds = read_instance(native_ct)
    original = _stored(ds)
    pgm = tmp_path / "slice.pgm"
    pgm.write_bytes(b"P5\n512 512\n4095\n" + original.astype(">u2").tobytes())
    codestream = tmp_path / "slice.j2c"
    subprocess.run(
        [str(exe), "-i", str(pgm), "-o", str(codestream), "-reversible", "true"],
        check=True,
        capture_output=True,
    )
    ds.PixelData = encapsulate([codestream.read_bytes()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
    assert np.array_equal(_stored(ds), original)


@pytest.mark.parametrize(
    "uid", [DEFLATED_IMAGE_FRAME_COMPRESSION, ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN]
)
def test_supplement_244_syntaxes_decode_exactly(native_ct: Path, uid: str) -> None:
    ds = read_instance(native_ct)
    original = _stored(ds).copy()
    frame = ds.PixelData
    if uid == DEFLATED_IMAGE_FRAME_COMPRESSION:
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        frame = deflater.compress(frame) + deflater.flush()
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid
    assert np.array_equal(_stored(ds), original)


def test_multi_frame_jpeg2000_is_decoded_frame_by_frame_in_parallel(shared_data: Path) -> None:
    files = _totalseg_files(shared_data)[:3]
    sources = [pydicom.dcmread(path) for path in files]
    ds = read_instance(files[0])
    ds.PixelData = encapsulate(
        [next(generate_frames(s.PixelData, number_of_frames=1)) for s in sources]
    )
    ds.NumberOfFrames = 3
    decoded = decode_pixel_arrays([ds], workers=2)[0]
    assert decoded.shape == (3, 512, 512)
    for k, source in enumerate(sources):
        assert np.array_equal(decoded[k], source.pixel_array)


# --- decoding: fast path, bad pixel data, unsupported syntaxes -----------------------------


def test_uncompressed_pixels_are_a_read_only_view(native_ct: Path) -> None:
    ds = read_instance(native_ct)
    array = _stored(ds)
    assert not array.flags.owndata
    assert not array.flags.writeable
    assert np.shares_memory(array, np.frombuffer(ds.PixelData, dtype=np.uint8))
    assert np.array_equal(array, pydicom.dcmread(native_ct).pixel_array)


def test_garbage_in_unused_high_bits_is_masked(native_ct: Path) -> None:
    ds = read_instance(native_ct)
    clean = _stored(ds).copy()
    assert ds.BitsStored == 12
    ds.PixelData = (clean | np.uint16(0xF000)).tobytes()
    decoded = _stored(ds)
    assert np.array_equal(decoded, clean)


def test_signed_pixels_decode_like_pydicom(shared_data: Path) -> None:
    files = _sts_files(shared_data)[:3]
    arrays = decode_pixel_arrays([read_instance(path) for path in files])
    for path, array in zip(files, arrays, strict=True):
        reference = pydicom.dcmread(path).pixel_array
        assert array.dtype == np.int16
        assert np.array_equal(array, reference)
        assert int(array.min()) < 0


def test_corrupt_jpeg2000_names_the_syntax(shared_data: Path) -> None:
    files = _totalseg_files(shared_data)[:2]
    instances = [read_instance(path) for path in files]
    frame = next(generate_frames(instances[1].PixelData, number_of_frames=1))
    instances[1].PixelData = encapsulate([frame[:200] + bytes(len(frame) - 200)])
    for workers in (1, 2):
        with pytest.raises(InvalidDicomError, match=r"instance 1: .*JPEG 2000"):
            decode_pixel_arrays(instances, workers=workers)


def test_missing_pixel_data_is_an_error(shared_data: Path) -> None:
    ds = read_instance(_totalseg_files(shared_data)[0], stop_before_pixels=True)
    with pytest.raises(InvalidDicomError, match="instance 0: no pixel data"):
        decode_pixel_arrays([ds])


@pytest.mark.parametrize(
    ("uid", "name"),
    [
        ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"),
        ("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1"),
        ("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1"),
        ("1.2.840.10008.1.2.4.94", "JPIP Referenced"),
        ("1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Image Compression"),
        ("1.2.826.0.1.3680043.99.1", "unknown (private or retired) transfer syntax"),
    ],
)
def test_unsupported_syntax_is_named_before_any_decode(
    shared_data: Path, uid: str, name: str
) -> None:
    # Instance 0 holds corrupt JPEG 2000 data: decoding it first would raise InvalidDicomError.
    corrupt = read_instance(_totalseg_files(shared_data)[0])
    corrupt.PixelData = encapsulate([bytes(1000)])
    video = read_instance(_totalseg_files(shared_data)[1])
    video.file_meta.TransferSyntaxUID = uid
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        decode_pixel_arrays([corrupt, video])
    assert uid in str(caught.value)
    assert name in str(caught.value)
    assert caught.value.transfer_syntax_uid == uid


def test_supported_syntaxes_include_every_common_one() -> None:
    expected = {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }
    assert expected <= supported_transfer_syntaxes()
    check_transfer_syntax("1.2.840.10008.1.2.4.90")
    with pytest.raises(UnsupportedTransferSyntaxError, match="MPEG2"):
        check_transfer_syntax("1.2.840.10008.1.2.4.100")


# --- headers with the location of their pixel data; log summaries --------------------------


def test_headers_locate_uncompressed_pixel_data(native_ct: Path, shared_data: Path) -> None:
    compressed = _totalseg_files(shared_data)[0]
    (header, location), (whole, none) = iter_instance_headers([native_ct, compressed])
    assert none is None and "PixelData" in whole  # compressed: read whole
    assert location is not None and "PixelData" not in header
    assert (location.path, location.vr, location.little_endian) == (native_ct, "OW", True)
    reference = pydicom.dcmread(native_ct)
    assert location.length == len(reference.PixelData)
    assert header.to_json_dict() == read_instance(native_ct, stop_before_pixels=True).to_json_dict()
    stored = np.empty((512, 512), dtype=np.uint16)
    read_pixel_data_into(location, stored)
    assert np.array_equal(stored, reference.pixel_array)
    row = np.empty(512, dtype=np.uint16)
    read_pixel_data_into(location, row, start=511 * 1024)
    assert np.array_equal(row, reference.pixel_array[511])
    with pytest.raises(InvalidDicomError, match="fewer than"):
        read_pixel_data_into(location, row, start=511 * 1024 + 2)
    full = with_pixel_data(header, location)
    assert np.array_equal(_stored(full), reference.pixel_array)
    assert "PixelData" not in header


def test_headers_read_alone_equal_pydicom_headers(shared_data: Path) -> None:
    # One file of every real series: implicit and explicit VR, several vendors, sequences of
    # defined and undefined length, private elements.
    folders = {path.parent for path in shared_data.rglob("*.dcm")}
    files = [min(folder.glob("*.dcm")) for folder in sorted(folders)]
    located = 0
    for path, (header, location) in zip(files, iter_instance_headers(files), strict=True):
        if location is None:
            continue
        located += 1
        reference = read_instance(path, stop_before_pixels=True)
        assert list(header.keys()) == list(reference.keys()), path
        for tag, ours in header.items():
            theirs = reference.get_item(tag, keep_deferred=True)
            if isinstance(ours, RawDataElement) or isinstance(theirs, RawDataElement):
                assert tuple(ours) == tuple(theirs), (path, tag)
        assert header.to_json_dict() == reference.to_json_dict(), path
        assert header.file_meta == reference.file_meta
        assert header.preamble == reference.preamble
        assert header.original_encoding == reference.original_encoding
        assert header.original_character_set == reference.original_character_set
        assert header.filename == str(path)
        value = path.read_bytes()[location.offset :]
        assert value == read_instance(path).PixelData
    assert located >= 20


def test_file_cut_after_its_header_was_read(native_ct: Path, tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    path.write_bytes(native_ct.read_bytes())
    ((_, location),) = iter_instance_headers([path])
    assert location is not None
    path.write_bytes(native_ct.read_bytes()[:-1000])
    with pytest.raises(InvalidDicomError, match=r"ct\.dcm: file ends inside the Pixel Data"):
        read_pixel_data_into(location, np.empty((512, 512), dtype=np.uint16))


def test_truncated_file_is_skipped_when_reading_headers(
    native_ct: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ok.dcm").write_bytes(native_ct.read_bytes())
    (tmp_path / "cut.dcm").write_bytes(native_ct.read_bytes()[:-100])
    caplog.set_level(logging.INFO, logger=READING_LOGGER)
    found = list(iter_instance_headers([tmp_path]))
    assert len(found) == 1 and found[0][1] is not None
    assert any(
        "cut.dcm" in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records
    )


def test_quirks_are_summarised_once_per_call(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _totalseg_files(shared_data)[:2] + _sts_files(shared_data)[:3]
    caplog.set_level(logging.DEBUG, logger=READING_LOGGER)
    assert len(list(iter_instances(files))) == 5
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info == [
        "tolerated in 5 instances: StudyID (SH) longer than 16 characters in 3; "
        "blank SOPInstanceUID (set from the file meta MediaStorageSOPInstanceUID) in 2; "
        "blank SOPClassUID (set from the file meta MediaStorageSOPClassUID) in 2"
    ]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum(": tolerated: " in message for message in debug) == 5
    assert any(message.startswith(f"{files[0].name}: tolerated: blank") for message in debug)


def test_instances_without_sop_class_are_summarised(
    native_ct: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = pydicom.dcmread(native_ct)
    del ds.SOPClassUID
    del ds.file_meta.MediaStorageSOPClassUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    caplog.set_level(logging.INFO, logger=READING_LOGGER)
    for _ in range(2):
        assert "SOPClassUID" not in read_instance(buffer.getvalue())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        warnings
        == [
            "1 instance without a SOP Class UID; writers cannot reference them",
        ]
        * 2
    )
