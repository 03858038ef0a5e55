"""Grouping instances into studies and series, and building a :class:`Volume` from one series.

A series becomes a volume only if its images form one regular stack of parallel slices. The
checks run in this order, and the first that fails raises its own error:

1. grey-scale images with Image Position / Orientation (Patient) and Pixel Spacing, no
   localizer (:class:`NotAVolumeError`), in one Frame of Reference
   (:class:`InconsistentSeriesError`);
2. one Image Orientation (Patient) (:class:`MixedOrientationError`);
3. one matrix size and Pixel Spacing (:class:`MixedMatrixSizeError`);
4. at least ``min_slices`` distinct positions along the slice normal (:class:`NotAVolumeError`);
5. one image per position: several images at every position are several stacks (echoes,
   time points, diffusion directions: :class:`MultipleStacksError`), at only some positions
   duplicates (:class:`DuplicatePositionError`);
6. uniform slice spacing (:class:`MissingSlicesError`);
7. slice positions on a line along the normal, not sheared (:class:`GantryTiltError`).

Slices are ordered by position along the normal (Image Orientation row x column), so the
volume's direction is (row, column, normal), a right-handed frame in any patient position;
the slice spacing is the distance between positions along the normal, never Slice
Thickness. Voxel values are in modality units (Rescale Slope / Intercept applied): int16
when the rescale is integral, the same for every slice and its results fit, else float32.

Several stacks in one series (an fMRI or diffusion series, multi-echo) are refused rather
than split: choosing one is the caller's decision, not a guess made here.

Reading a series from disk (:func:`read_series`, :func:`read_image_series`) parses only the
headers first and checks the geometry; uncompressed pixel data is then read from each file
straight into the output volume (rescaled there, slice by slice), never held twice.
Compressed pixel data is decoded in parallel worker processes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from radserve.dicom_io.errors import InconsistentSeriesError, NotAVolumeError
from radserve.dicom_io.reading.enhanced import (
    ImagePlane,
    code_strings,
    integer,
    planes_of_instance,
    sop_instance_uid_of,
    text_value,
)
from radserve.dicom_io.reading.geometry import stack_geometry
from radserve.dicom_io.reading.instances import DEFAULT_MAX_INSTANCE_BYTES, iter_instance_headers
from radserve.dicom_io.reading.pixel_stack import InstanceSource, stack_pixels
from radserve.dicom_io.volume import Volume

logger = logging.getLogger(__name__)

MIN_SLICES = 3
"""Fewest slices accepted as a volume by default (fewer are localizers or partial series)."""

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAGS = tuple(Tag(keyword) for keyword in _PIXEL_KEYWORDS)
_PHOTOMETRIC_INTERPRETATION = Tag("PhotometricInterpretation")


def group_series(instances: Iterable[Dataset]) -> dict[str, list[Dataset]]:
    """Group instances by Series Instance UID (a blank UID is a group of its own)."""
    groups: dict[str, list[Dataset]] = defaultdict(list)
    for ds in instances:
        groups[text_value(ds, "SeriesInstanceUID")].append(ds)
    return dict(groups)


def group_by_study(instances: Iterable[Dataset]) -> dict[str, dict[str, list[Dataset]]]:
    """Group instances by Study Instance UID, then by Series Instance UID."""
    studies: dict[str, list[Dataset]] = defaultdict(list)
    for ds in instances:
        studies[text_value(ds, "StudyInstanceUID")].append(ds)
    return {study_uid: group_series(members) for study_uid, members in studies.items()}


@dataclass(frozen=True)
class ImageSeries:
    """A volume and the DICOM headers of its source instances.

    Attributes:
        volume: The reconstructed volume.
        headers: The source instances in slice order (``volume.array[k]`` comes from
            ``headers[k]``), without pixel data; for an enhanced multi-frame source, the one
            instance.
    """

    volume: Volume
    headers: tuple[Dataset, ...]


def volume_from_instances(instances: Sequence[Dataset], *, min_slices: int = MIN_SLICES) -> Volume:
    """Build a volume from the instances of one series (single-frame or enhanced multi-frame).

    Args:
        instances: The series' instances, in any order; instances without pixel data are
            ignored and an instance given twice (same SOP Instance UID) counts once.
        min_slices: Fewest distinct slice positions accepted (at least 2).

    Raises:
        InconsistentSeriesError: A subclass naming why the images are not one regular volume.
    """
    return _reconstruct([(ds, None) for ds in instances], min_slices=min_slices)[0]


def image_series_from_instances(
    instances: Sequence[Dataset], *, min_slices: int = MIN_SLICES
) -> ImageSeries:
    """Like :func:`volume_from_instances`, also returning the headers in slice order."""
    volume, used = _reconstruct([(ds, None) for ds in instances], min_slices=min_slices)
    return ImageSeries(volume=volume, headers=tuple(_strip_pixels(ds) for ds, _ in used))


def _reconstruct(
    sources: Sequence[InstanceSource], *, min_slices: int
) -> tuple[Volume, list[InstanceSource]]:
    """The volume and its source instances in slice order (each once)."""
    if min_slices < 2:
        raise ValueError(
            f"min_slices must be at least 2 to define a slice spacing, got {min_slices}"
        )
    found = _image_instances(sources)
    images = [ds for ds, _ in found]
    planes: list[ImagePlane] = []
    origins: list[tuple[int, int]] = []  # (instance index, frame index) of each plane
    for index, ds in enumerate(images):
        for frame, plane in enumerate(planes_of_instance(ds)):
            planes.append(plane)
            origins.append((index, frame))
    _check_images(images, planes)
    stack = stack_geometry(
        planes,
        [(images[i], planes[k].frame_number) for k, (i, _) in enumerate(origins)],
        min_slices=min_slices,
    )
    ordered = [planes[i] for i in stack.order]
    array = stack_pixels(found, ordered, [origins[i] for i in stack.order])
    first = images[origins[stack.order[0]][0]]
    frame_numbers = tuple(p.frame_number for p in ordered if p.frame_number is not None)
    volume = Volume(
        array=array,
        spacing_mm=stack.spacing_mm,
        origin_mm=stack.origin_mm,
        direction=stack.direction,
        frame_of_reference_uid=_uid(first, "FrameOfReferenceUID"),
        study_instance_uid=_uid(first, "StudyInstanceUID"),
        series_instance_uid=_uid(first, "SeriesInstanceUID"),
        sop_instance_uids=tuple(p.sop_instance_uid for p in ordered),
        modality=_uid(first, "Modality"),
        sop_class_uid=_sop_class_uid(first),
        frame_numbers=frame_numbers if len(frame_numbers) == len(ordered) else (),
    )
    used = dict.fromkeys(origins[i][0] for i in stack.order)  # ordered, unique
    return volume, [found[i] for i in used]


def read_image_series(
    path: str | Path | Sequence[str | Path],
    *,
    min_slices: int = MIN_SLICES,
    max_bytes: int = DEFAULT_MAX_INSTANCE_BYTES,
) -> ImageSeries:
    """Read the one image series under ``path`` (folder, file, or zip; or a list of
    instance files) with its headers, on the fast header-first path: uncompressed pixel
    data is read straight into the volume, without a whole-instance parse.

    Raises:
        NotAVolumeError: ``path`` holds no image series or several.
        InconsistentSeriesError: A subclass naming why the series is not one regular volume.
        InvalidDicomError: Pixel data cannot be read or decoded.
        InstanceTooLargeError: A file is larger than ``max_bytes``.
    """
    with _gc_paused():
        groups: dict[str, list[InstanceSource]] = defaultdict(list)
        paths = [path] if isinstance(path, str | Path) else list(path)
        for ds, location in iter_instance_headers(paths, max_bytes=max_bytes):
            if location is not None or _has_pixels(ds):
                groups[text_value(ds, "SeriesInstanceUID")].append((ds, location))
        if not groups:
            raise NotAVolumeError("no DICOM image instances found")
        if len(groups) > 1:
            sizes = ", ".join(str(len(g)) for g in groups.values())
            raise NotAVolumeError(
                f"expected one image series, found {len(groups)} (with {sizes} images); "
                "convert one series folder at a time"
            )
        (sources,) = groups.values()
        volume, used = _reconstruct(sources, min_slices=min_slices)
        # Headers read without their pixel data are new objects of ours: no copy needed.
        headers = tuple(ds if location is not None else _strip_pixels(ds) for ds, location in used)
    return ImageSeries(volume=volume, headers=headers)


def read_series(path: str | Path, *, min_slices: int = MIN_SLICES) -> Volume:
    """Read the one image series under ``path`` (folder, file, or zip) as a volume."""
    return read_image_series(path, min_slices=min_slices).volume


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk read.

    Parsing hundreds of headers allocates hundreds of thousands of objects that all stay
    alive, so the collector's passes find nothing and cost about a tenth of the read. The
    collector is process-wide: other threads run without it for that fraction of a second.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- selecting and checking images -------------------------------------------------------


def _has_pixels(ds: Dataset) -> bool:
    return any(tag in ds for tag in _PIXEL_TAGS)


def _image_instances(sources: Sequence[InstanceSource]) -> list[InstanceSource]:
    images: list[InstanceSource] = []
    seen: set[str] = set()
    repeated = 0
    for ds, location in sources:
        if location is None and not _has_pixels(ds):
            continue
        uid = sop_instance_uid_of(ds)
        if uid and uid in seen:
            repeated += 1
            continue
        seen.add(uid)
        images.append((ds, location))
    if repeated:
        logger.info("ignored %d repeated instances (same SOP Instance UID)", repeated)
    if not images:
        raise NotAVolumeError("the series has no images with pixel data")
    return images


def _check_images(images: list[Dataset], planes: list[ImagePlane]) -> None:
    for ds in images:
        photometric = "MONOCHROME2"
        if _PHOTOMETRIC_INTERPRETATION in ds:
            photometric = text_value(ds, "PhotometricInterpretation")
        if integer(ds, "SamplesPerPixel", 1) != 1 or not photometric.startswith("MONO"):
            raise NotAVolumeError(f"{photometric} colour images cannot form a grey-scale volume")
        if "LOCALIZER" in [v.upper() for v in code_strings(ds, "ImageType")]:
            raise NotAVolumeError("the series is a localizer (Image Type LOCALIZER)")
    frames = {uid for ds in images for uid in code_strings(ds, "FrameOfReferenceUID")}
    if len(frames) > 1:
        raise InconsistentSeriesError(
            f"the images belong to {len(frames)} different Frames of Reference"
        )
    n = len(planes)
    unplaced = sum(p.image_position_mm is None or p.image_orientation is None for p in planes)
    if unplaced:
        raise NotAVolumeError(
            f"{unplaced} of {n} images have no Image Position / Orientation (Patient)"
        )
    if any(p.pixel_spacing_mm is None for p in planes):
        raise NotAVolumeError("images without Pixel Spacing cannot form a volume")


# --- metadata ----------------------------------------------------------------------------


def _uid(ds: Dataset, keyword: str) -> str | None:
    return str(ds.get(keyword, "") or "") or None


def _sop_class_uid(ds: Dataset) -> str | None:
    uid = _uid(ds, "SOPClassUID")
    if uid is None and hasattr(ds, "file_meta"):
        uid = _uid(ds.file_meta, "MediaStorageSOPClassUID")
    return uid


def _strip_pixels(ds: Dataset) -> Dataset:
    # A new element dict: Dataset(ds) would share (and so strip) the source's elements.
    header = Dataset({tag: elem for tag, elem in ds.items() if tag not in _PIXEL_TAGS})
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    return header
