"""Burned-in overlay: rendering and the Secondary Capture series, on the real STS_002 CT."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from scipy import ndimage

from radserve.dicom_io import (
    OVERLAY_TRANSFER_SYNTAXES,
    PALETTE,
    REVIEW_WARNING,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    AlgorithmIdentity,
    ImageSeries,
    LabelMap,
    MaskError,
    SegmentInfo,
    SliceRenderer,
    derive_uid,
    key_slice,
    read_image_series,
    render_slice,
    window_from_headers,
    write_overlay_sc,
    write_png,
)
from tests.conftest import OrthancServer

pytestmark = [pytest.mark.shared_data]

ALGORITHM = AlgorithmIdentity(name="sts-ct-gtv", version="1.0.0", model_sha256="0f" * 32)
GTV_RGB = PALETTE[0]


@pytest.fixture(scope="module")
def source(demo_study: Path) -> ImageSeries:
    return read_image_series(demo_study / "image")


@pytest.fixture(scope="module")
def labelmap(source: ImageSeries, shared_data: Path) -> LabelMap:
    """The curated GTV mask, put onto the DICOM grid through world coordinates."""
    mask = sitk.ReadImage(str(shared_data / "sts_ct" / "nifti" / "STS_002" / "mask.nii.gz"))
    on_grid = sitk.Resample(
        mask, source.volume.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0.0
    )
    array = sitk.GetArrayFromImage(on_grid).astype(np.uint8)
    return LabelMap(source.volume.with_array(array), (SegmentInfo(label=1, name="GTV"),))


@pytest.fixture(scope="module")
def instances(source: ImageSeries, labelmap: LabelMap) -> list[Dataset]:
    return write_overlay_sc(source, labelmap, algorithm=ALGORITHM)


@pytest.fixture(scope="module")
def renderer(source: ImageSeries, labelmap: LabelMap) -> SliceRenderer:
    return SliceRenderer(source.volume, labelmap, caption="Model: sts-ct-gtv 1.0.0")


def _read_back(ds: Dataset, path: Path) -> tuple[Dataset, np.ndarray[Any, Any]]:
    ds.save_as(path, enforce_file_format=True)
    back = pydicom.dcmread(path)
    return back, np.asarray(back.pixel_array)


def test_mask_lands_on_the_grid(labelmap: LabelMap, shared_data: Path) -> None:
    mask = sitk.ReadImage(str(shared_data / "sts_ct" / "nifti" / "STS_002" / "mask.nii.gz"))
    # Same grid in world coordinates: resampling keeps every voxel.
    assert int(labelmap.volume.array.sum()) == int(sitk.GetArrayFromImage(mask).sum()) == 17090


def test_key_slice_has_most_voxels(labelmap: LabelMap) -> None:
    counts = labelmap.volume.array.sum(axis=(1, 2))
    assert key_slice(labelmap) == int(np.argmax(counts)) == 23


def test_overlay_passes_dciodvfy(
    instances: list[Dataset],
    labelmap: LabelMap,
    tmp_path: Path,
    dciodvfy: Callable[[Path], Any],
) -> None:
    empty = int(np.flatnonzero(labelmap.volume.array.sum(axis=(1, 2)) == 0)[0])
    for k in (key_slice(labelmap), empty):
        path = tmp_path / f"sc_{k}.dcm"
        instances[k].save_as(path, enforce_file_format=True)
        report = dciodvfy(path)
        assert report.errors == [], report.output
        assert "SCImage" in report.output


def test_one_instance_per_slice_referencing_its_source(
    instances: list[Dataset], source: ImageSeries
) -> None:
    assert len(instances) == source.volume.shape[0] == 48
    assert [int(ds.InstanceNumber) for ds in instances] == list(range(1, 49))
    for k, ds in enumerate(instances):
        (ref,) = ds.SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == source.headers[k].SOPInstanceUID
        assert ref.ReferencedSOPInstanceUID == source.volume.sop_instance_uids[k]
        assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert len({ds.SeriesInstanceUID for ds in instances}) == 1
    assert len({ds.SOPInstanceUID for ds in instances}) == 48


def test_header_describes_an_ai_secondary_capture(
    instances: list[Dataset], source: ImageSeries, renderer: SliceRenderer, tmp_path: Path
) -> None:
    back, _ = _read_back(instances[0], tmp_path / "sc.dcm")
    header = source.headers[0]
    assert back.SOPClassUID == SECONDARY_CAPTURE_IMAGE_STORAGE
    assert back.file_meta.MediaStorageSOPClassUID == SECONDARY_CAPTURE_IMAGE_STORAGE
    assert back.StudyInstanceUID == header.StudyInstanceUID
    assert back.SeriesInstanceUID != header.SeriesInstanceUID
    assert (back.PatientID, back.PatientName, back.PatientSex) == (
        header.PatientID,
        header.PatientName,
        header.PatientSex,
    )
    assert back.AccessionNumber == header.AccessionNumber
    assert back.StudyDescription == header.StudyDescription
    # The source's 17-character Study ID is cut to the 16 characters SH allows.
    assert back.StudyID == header.StudyID[:16]
    assert back.SeriesNumber == 903
    assert back.SeriesDescription == "AI overlay (sts-ct-gtv 1.0.0) - requires review"
    assert list(back.ImageType) == ["DERIVED", "SECONDARY"]
    assert back.ConversionType == "WSD"
    assert back.BurnedInAnnotation == "YES"
    assert back.Manufacturer == "radserve"
    assert "sts-ct-gtv 1.0.0" in back.DerivationDescription
    assert "window center 40 / width 400" in back.DerivationDescription
    assert (back.PhotometricInterpretation, back.SamplesPerPixel) == ("RGB", 3)
    assert (back.PlanarConfiguration, back.BitsAllocated) == (0, 8)
    (equipment,) = back.ContributingEquipmentSequence
    assert equipment.Manufacturer == "radserve"
    assert equipment.ManufacturerModelName == "sts-ct-gtv 1.0.0"
    # Plain SC: no Image Plane module; orientation letters and the zoomed pixel spacing only.
    assert "ImagePositionPatient" not in back
    assert "ImageOrientationPatient" not in back
    assert list(back.PatientOrientation) == ["L", "P"]
    assert renderer.scale == 4
    row_mm, col_mm = source.volume.spacing_mm[1], source.volume.spacing_mm[0]
    np.testing.assert_allclose(
        [float(v) for v in back.PixelSpacing], [row_mm / 4, col_mm / 4], rtol=1e-6
    )


def test_the_series_is_dated_once_for_all_its_instances(instances: list[Dataset]) -> None:
    dates = {(str(ds.SeriesDate), str(ds.SeriesTime)) for ds in instances}
    assert len(dates) == 1
    ((date, time),) = dates
    assert len(date) == 8 and date.isdigit() and len(time) >= 6


def test_uids_are_deterministic(
    instances: list[Dataset], source: ImageSeries, labelmap: LabelMap
) -> None:
    again = write_overlay_sc(source, labelmap, algorithm=ALGORITHM)
    assert [ds.SOPInstanceUID for ds in again] == [ds.SOPInstanceUID for ds in instances]
    series_uid = str(source.volume.series_instance_uid)
    assert instances[0].SeriesInstanceUID == derive_uid(series_uid, "sts-ct-gtv", "1.0.0", "SC")
    assert instances[5].SOPInstanceUID == derive_uid(series_uid, "sts-ct-gtv", "1.0.0", "SC", "5")
    other = write_overlay_sc(
        source,
        labelmap,
        algorithm=replace(ALGORITHM, version="1.0.1"),
        only_segmented_slices=True,
    )
    assert not {ds.SOPInstanceUID for ds in other} & {ds.SOPInstanceUID for ds in instances}


def test_outline_pixels_have_the_segment_colour(
    instances: list[Dataset], labelmap: LabelMap, renderer: SliceRenderer, tmp_path: Path
) -> None:
    k = key_slice(labelmap)
    _, rgb = _read_back(instances[k], tmp_path / "key.dcm")
    scale, top = renderer.scale, renderer.image_top_px
    mask = labelmap.volume.array[k].astype(bool)
    rows, cols = mask.shape
    image = rgb[top : top + rows * scale, : cols * scale]
    # One (scale x scale) block per source pixel.
    blocks = image.reshape(rows, scale, cols, scale, 3).transpose(0, 2, 1, 3, 4)
    is_gtv = np.all(blocks == GTV_RGB, axis=-1)
    # 8-connected boundary: the 2-px outline also turns the corners of diagonal neighbours.
    boundary = mask & ~ndimage.binary_erosion(mask, np.ones((3, 3)), border_value=0)
    assert boundary.sum() > 50
    # Every boundary pixel of the mask carries the outline ...
    assert np.all(is_gtv[boundary].any(axis=(1, 2)))
    # ... and only boundary pixels do: an outline, not a filled mask.
    assert not is_gtv[~boundary].any()
    assert is_gtv[boundary].mean() < 0.8


def test_image_away_from_segments_is_windowed_grey_in_source_orientation(
    instances: list[Dataset],
    labelmap: LabelMap,
    source: ImageSeries,
    renderer: SliceRenderer,
    tmp_path: Path,
) -> None:
    k = key_slice(labelmap)
    _, rgb = _read_back(instances[k], tmp_path / "key.dcm")
    scale, top = renderer.scale, renderer.image_top_px
    mask = labelmap.volume.array[k].astype(bool)
    rows, cols = mask.shape
    far = ndimage.distance_transform_edt(~mask) > 3
    assert far.sum() > 0.5 * far.size
    image = rgb[top : top + rows * scale : scale, : cols * scale : scale]  # one pixel per voxel
    assert np.array_equal(image[far][:, 0], image[far][:, 1])
    assert np.array_equal(image[far][:, 1], image[far][:, 2])
    # No stored window: CT soft tissue 40/400, rows and columns as stored (anterior at top).
    hu = source.volume.array[k]
    expected = np.round(np.clip((hu + 160.0) / 400.0, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(image[far][:, 0], expected[far])


def test_banner_and_legend_are_coloured(
    instances: list[Dataset], labelmap: LabelMap, renderer: SliceRenderer, tmp_path: Path
) -> None:
    _, rgb = _read_back(instances[0], tmp_path / "first.dcm")  # a slice without tumour
    rows = labelmap.volume.shape[1] * renderer.scale
    banner = rgb[: renderer.image_top_px]
    legend = rgb[renderer.image_top_px + rows :]
    assert renderer.image_top_px > 0 and legend.shape[0] > 0
    assert rgb.shape == renderer.shape
    # Legend: the GTV swatch and name in the segment colour, even on a slice without tumour.
    assert np.all(legend == GTV_RGB, axis=-1).sum() > 100
    # Banner: the review warning in amber; the model line in white.
    assert (banner[..., 0] != banner[..., 2]).sum() > 100
    assert np.all(banner == 255, axis=-1).sum() > 100
    assert REVIEW_WARNING == "AI result - not for diagnosis without review"


def test_only_segmented_slices(
    instances: list[Dataset], source: ImageSeries, labelmap: LabelMap
) -> None:
    subset = write_overlay_sc(source, labelmap, algorithm=ALGORITHM, only_segmented_slices=True)
    slices = [int(k) for k in np.flatnonzero(labelmap.volume.array.sum(axis=(1, 2)))]
    assert 0 < len(subset) == len(slices) < 48
    assert [int(ds.InstanceNumber) for ds in subset] == [k + 1 for k in slices]
    assert [ds.SOPInstanceUID for ds in subset] == [instances[k].SOPInstanceUID for k in slices]


def test_stored_window_is_used(source: ImageSeries, labelmap: LabelMap) -> None:
    header = Dataset()
    header.WindowCenter = [300, 40]
    header.WindowWidth = [1500, 400]
    assert window_from_headers([Dataset(), header]) == (300.0, 1500.0)
    assert window_from_headers(source.headers) is None
    k = key_slice(labelmap)
    bone = render_slice(source.volume, labelmap, k, window_hu=(300.0, 1500.0), legend=False)
    renderer = SliceRenderer(source.volume, labelmap, legend=False)
    assert renderer.window_hu == (40.0, 400.0)
    top, scale = renderer.image_top_px, renderer.scale
    hu = source.volume.array[k]
    expected = np.round(np.clip((hu + 450.0) / 1500.0, 0, 1) * 255).astype(np.uint8)
    grey = bone[top::scale, ::scale, 0][: hu.shape[0]]
    far = ndimage.distance_transform_edt(labelmap.volume.array[k] == 0) > 3
    assert np.array_equal(grey[far], expected[far])
    assert bone.shape[0] == renderer.shape[0]


def test_png_round_trip(source: ImageSeries, labelmap: LabelMap, tmp_path: Path) -> None:
    rgb = render_slice(
        source.volume, labelmap, key_slice(labelmap), caption="Model: sts-ct-gtv 1.0.0"
    )
    path = tmp_path / "key_slice.png"
    write_png(rgb, path)
    with Image.open(path) as png:
        assert png.mode == "RGB"
        assert np.array_equal(np.asarray(png), rgb)
    with pytest.raises(ValueError, match="uint8"):
        write_png(rgb.astype(np.float32), tmp_path / "bad.png")


def test_label_map_on_another_grid_is_rejected(source: ImageSeries, labelmap: LabelMap) -> None:
    shifted = LabelMap(replace(labelmap.volume, origin_mm=(0.0, 0.0, 0.0)), labelmap.segments)
    with pytest.raises(MaskError, match="not on the image grid"):
        write_overlay_sc(source, shifted, algorithm=ALGORITHM)
    cropped_volume = replace(
        labelmap.volume, array=labelmap.volume.array[:, :100], sop_instance_uids=()
    )
    with pytest.raises(MaskError, match="does not match the image grid"):
        render_slice(source.volume, LabelMap(cropped_volume, labelmap.segments), 0)


@pytest.fixture(scope="module")
def encoded(source: ImageSeries, labelmap: LabelMap) -> dict[str, list[Dataset]]:
    """The segmented slices in every overlay transfer syntax."""
    return {
        uid: write_overlay_sc(
            source,
            labelmap,
            algorithm=ALGORITHM,
            only_segmented_slices=True,
            transfer_syntax_uid=uid,
        )
        for uid in OVERLAY_TRANSFER_SYNTAXES
    }


def test_default_encoding_is_jpeg_ls_lossless(
    instances: list[Dataset], labelmap: LabelMap, renderer: SliceRenderer, tmp_path: Path
) -> None:
    k = key_slice(labelmap)
    path = tmp_path / "key.dcm"
    instances[k].save_as(path, enforce_file_format=True)
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == JPEGLSLossless
    assert back["PixelData"].is_undefined_length  # encapsulated
    assert (back.PhotometricInterpretation, back.SamplesPerPixel) == ("RGB", 3)
    # The rendered slice compresses well: well under a fifth of its uncompressed size.
    assert path.stat().st_size < int(np.prod(renderer.shape)) / 5
    # Lossless: pydicom and highdicom both decode exactly the rendered pixels.
    rendered = renderer.render(k)
    assert np.array_equal(back.pixel_array, rendered)
    assert np.array_equal(hd.imread(str(path)).get_frame(1), rendered)


@pytest.mark.parametrize("uid", OVERLAY_TRANSFER_SYNTAXES)
def test_every_encoding_decodes_to_the_rendered_pixels(
    encoded: dict[str, list[Dataset]],
    labelmap: LabelMap,
    renderer: SliceRenderer,
    uid: str,
    tmp_path: Path,
) -> None:
    slices = _segmented_slices(labelmap)
    step = max(1, len(slices) // 3)
    for k, ds in list(zip(slices, encoded[uid], strict=True))[::step]:
        assert int(ds.InstanceNumber) == k + 1
        back, pixels = _read_back(ds, tmp_path / f"{k}.dcm")
        assert back.file_meta.TransferSyntaxUID == uid
        assert np.array_equal(pixels, renderer.render(k))


def test_encodings_shrink_the_overlay(encoded: dict[str, list[Dataset]]) -> None:
    sizes = {uid: sum(len(_encode(ds)) for ds in datasets) for uid, datasets in encoded.items()}
    assert sizes[JPEGLSLossless] < sizes[RLELossless] < sizes[ExplicitVRLittleEndian] / 3
    assert sizes[JPEGLSLossless] < sizes[ExplicitVRLittleEndian] / 8


def test_rle_overlay_passes_dciodvfy(
    encoded: dict[str, list[Dataset]], tmp_path: Path, dciodvfy: Callable[[Path], Any]
) -> None:
    path = tmp_path / "rle.dcm"
    encoded[RLELossless][0].save_as(path, enforce_file_format=True)
    report = dciodvfy(path)
    assert report.errors == [], report.output
    assert "SCImage" in report.output


def test_lossy_or_unknown_encodings_are_refused(source: ImageSeries, labelmap: LabelMap) -> None:
    for uid in (JPEGBaseline8Bit, "1.2.3"):
        with pytest.raises(ValueError, match="written in one of"):
            write_overlay_sc(source, labelmap, algorithm=ALGORITHM, transfer_syntax_uid=uid)


@pytest.mark.pacs
@pytest.mark.parametrize("uid", [JPEGLSLossless, RLELossless])
def test_orthanc_stores_and_renders_the_compressed_overlay(
    orthanc: OrthancServer,
    encoded: dict[str, list[Dataset]],
    labelmap: LabelMap,
    renderer: SliceRenderer,
    uid: str,
    tmp_path: Path,
) -> None:
    k = key_slice(labelmap)
    ds = pydicom.dcmread(io.BytesIO(_encode(encoded[uid][_segmented_slices(labelmap).index(k)])))
    # UIDs of its own: Orthanc keeps the first copy of an instance, and the session's Orthanc
    # also receives the results of other tests (the same model's overlay of the same study).
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    stored = httpx.post(f"{orthanc.url}/instances", content=_encode(ds), timeout=30)
    assert stored.status_code == 200, stored.text
    orthanc_id = stored.json()["ID"]
    syntax = httpx.get(f"{orthanc.url}/instances/{orthanc_id}/metadata/TransferSyntax", timeout=30)
    assert syntax.text == uid  # stored as sent, not transcoded
    preview = httpx.get(f"{orthanc.url}/instances/{orthanc_id}/preview", timeout=30)
    assert preview.status_code == 200
    assert preview.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(preview.content)) as png:
        assert np.array_equal(np.asarray(png.convert("RGB")), renderer.render(k))


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _segmented_slices(labelmap: LabelMap) -> list[int]:
    return [int(k) for k in np.flatnonzero(labelmap.volume.array.sum(axis=(1, 2)))]


def test_outline_of_segments_at_the_image_edge(source: ImageSeries, labelmap: LabelMap) -> None:
    array = np.zeros_like(labelmap.volume.array)
    array[5, :10, :20] = 1  # in the top left corner
    array[5, 50:60, 150:] = 1  # at the right edge, apart from the first
    edge = LabelMap(labelmap.volume.with_array(array), labelmap.segments)
    renderer = SliceRenderer(source.volume, edge, legend=False)
    scale, top = renderer.scale, renderer.image_top_px
    rows = array.shape[1]
    image = renderer.render(5)[top : top + rows * scale]
    is_gtv = np.all(image == GTV_RGB, axis=-1)
    # The outline is drawn at the zoomed resolution, inside the segment, 2 pixels wide, and
    # along the image edge too; nothing outside the segments is coloured.
    zoomed = np.repeat(np.repeat(array[5].astype(bool), scale, axis=0), scale, axis=1)
    expected = zoomed & ~ndimage.binary_erosion(zoomed, iterations=2, border_value=0)
    assert np.array_equal(is_gtv, expected)
    assert is_gtv[0, : 20 * scale].all() and is_gtv[50 * scale : 60 * scale, -1].all()
    assert not is_gtv[2 : 10 * scale - 2, 2 : 20 * scale - 2].any()


def test_instances_share_no_mutable_elements(source: ImageSeries, labelmap: LabelMap) -> None:
    first, second = write_overlay_sc(
        source, labelmap, algorithm=ALGORITHM, only_segmented_slices=True
    )[:2]
    header = source.headers[0]
    assert first["PatientID"] is not second["PatientID"]
    first.PatientID = "changed"
    first.DeidentificationMethodCodeSequence[0].CodeMeaning = "changed"
    assert second.PatientID == header.PatientID
    assert (
        second.DeidentificationMethodCodeSequence[0].CodeMeaning
        == header.DeidentificationMethodCodeSequence[0].CodeMeaning
        != "changed"
    )
