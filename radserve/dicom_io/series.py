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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from radserve.dicom_io.enhanced import (
    ImagePlane,
    code_strings,
    integer,
    planes_of_instance,
    required_integer,
    sop_instance_uid_of,
    stack_attributes,
    text_value,
)
from radserve.dicom_io.errors import (
    DuplicatePositionError,
    GantryTiltError,
    InconsistentSeriesError,
    InvalidDicomError,
    MissingSlicesError,
    MixedMatrixSizeError,
    MixedOrientationError,
    MultipleStacksError,
    NotAVolumeError,
)
from radserve.dicom_io.reading import (
    PixelDataLocation,
    decode_pixel_arrays,
    iter_instance_headers,
    read_pixel_data_into,
    with_pixel_data,
)
from radserve.dicom_io.volume import Volume

logger = logging.getLogger(__name__)

MIN_SLICES = 3
"""Fewest slices accepted as a volume by default (fewer are localizers or partial series)."""

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAGS = tuple(Tag(keyword) for keyword in _PIXEL_KEYWORDS)
_PHOTOMETRIC_INTERPRETATION = Tag("PhotometricInterpretation")
_ORIENTATION_ATOL = 1e-3  # direction cosines; about 0.06 degrees
_UNIT_VECTOR_ATOL = 1e-2
_POSITION_ATOL_MM = 0.01  # closer along the normal than this: the same position
_SPACING_ATOL_MM = 0.01
_SPACING_RTOL = 0.01
_SHEAR_PIXEL_FRACTION = 0.1  # in-plane shift tolerated at any slice, in pixels ...
_SHEAR_SLOPE = 5e-4  # ... plus this per mm along the normal (about 0.03 degrees)
_INT16 = np.iinfo(np.int16)

# An instance read whole (no location), or its header and where its Pixel Data lies.
_Source = tuple[Dataset, PixelDataLocation | None]


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


def _reconstruct(sources: Sequence[_Source], *, min_slices: int) -> tuple[Volume, list[_Source]]:
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
    stack = _stack_geometry(
        planes,
        [(images[i], planes[k].frame_number) for k, (i, _) in enumerate(origins)],
        min_slices=min_slices,
    )
    ordered = [planes[i] for i in stack.order]
    array = _stack_pixels(found, ordered, [origins[i] for i in stack.order])
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


def read_image_series(path: str | Path, *, min_slices: int = MIN_SLICES) -> ImageSeries:
    """Read the one image series under ``path`` (folder, file, or zip) with its headers.

    Raises:
        NotAVolumeError: ``path`` holds no image series or several.
        InconsistentSeriesError: A subclass naming why the series is not one regular volume.
        InvalidDicomError: Pixel data cannot be read or decoded.
    """
    with _gc_paused():
        groups: dict[str, list[_Source]] = defaultdict(list)
        for ds, location in iter_instance_headers([path]):
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


def _image_instances(sources: Sequence[_Source]) -> list[_Source]:
    images: list[_Source] = []
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


# --- geometry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _StackGeometry:
    order: npt.NDArray[np.intp]
    direction: npt.NDArray[np.float64]
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]


def _stack_geometry(
    planes: list[ImagePlane],
    origins: list[tuple[Dataset, int | None]],
    *,
    min_slices: int,
) -> _StackGeometry:
    """Order the planes along their normal and check that they form one regular stack.

    ``origins`` holds the source instance and frame number of each plane (for messages).
    """
    orientations = np.asarray([p.image_orientation for p in planes], dtype=np.float64)
    if np.any(np.abs(orientations - orientations[0]) > _ORIENTATION_ATOL):
        raise MixedOrientationError(_describe_orientations(orientations))
    row, column = _orthonormal(orientations[0])
    sizes = Counter((p.rows, p.columns) for p in planes)
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c} ({k} images)" for (r, c), k in sizes.most_common())
        raise MixedMatrixSizeError(f"the images differ in Rows x Columns: {listed}")
    spacings = np.asarray([p.pixel_spacing_mm for p in planes], dtype=np.float64)
    if np.any(np.abs(spacings - spacings[0]) > 1e-3):
        found = Counter((round(float(a), 4), round(float(b), 4)) for a, b in spacings)
        listed = ", ".join(f"{a}x{b} mm ({k} images)" for (a, b), k in found.most_common())
        raise MixedMatrixSizeError(f"the images differ in Pixel Spacing: {listed}")
    normal = np.cross(row, column)
    positions = np.asarray([p.image_position_mm for p in planes], dtype=np.float64)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    group = np.concatenate([[0], np.cumsum(np.diff(along) > _POSITION_ATOL_MM)])
    distinct = int(group[-1]) + 1
    if distinct < min_slices:
        raise NotAVolumeError(_describe_too_few(len(planes), distinct, min_slices))
    if distinct < len(planes):
        _raise_repeated_positions(origins, order, group, along)
    _check_spacing(np.diff(along))
    ps_row, ps_column = (float(v) for v in spacings[0])
    _check_shear(positions[order], normal, min(ps_row, ps_column))
    origin = positions[order[0]]
    return _StackGeometry(
        order=order,
        direction=np.column_stack([row, column, normal]),
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        spacing_mm=(ps_column, ps_row, float((along[-1] - along[0]) / (len(along) - 1))),
    )


def _orthonormal(
    orientation: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    row, column = orientation[:3], orientation[3:]
    if (
        abs(np.linalg.norm(row) - 1) > _UNIT_VECTOR_ATOL
        or abs(np.linalg.norm(column) - 1) > _UNIT_VECTOR_ATOL
        or abs(float(row @ column)) > _UNIT_VECTOR_ATOL
    ):
        raise NotAVolumeError(
            f"Image Orientation (Patient) {_fmt(orientation)} is not two orthogonal unit vectors"
        )
    row = row / np.linalg.norm(row)
    column = column - (column @ row) * row
    return row, column / np.linalg.norm(column)


def _describe_orientations(orientations: npt.NDArray[np.float64]) -> str:
    found = Counter(tuple(np.round(o, 4).tolist()) for o in orientations)
    listed = "; ".join(f"{_fmt(o)} ({k} images)" for o, k in found.most_common(4))
    more = f" and {len(found) - 4} more" if len(found) > 4 else ""
    return (
        f"the {len(orientations)} images have {len(found)} different Image Orientation "
        f"(Patient) values: {listed}{more}; a volume needs one stack of parallel slices"
    )


def _describe_too_few(images: int, distinct: int, min_slices: int) -> str:
    if images == 1:
        return f"a single image (e.g. a localizer) is not a volume; need {min_slices} slices"
    if distinct == images:
        return f"only {images} slices; a volume needs at least {min_slices}"
    return (
        f"the {images} images lie at only {distinct} distinct position(s) along the slice "
        f"normal (e.g. a monitoring scan); a volume needs at least {min_slices}"
    )


def _raise_repeated_positions(
    origins: list[tuple[Dataset, int | None]],
    order: npt.NDArray[np.intp],
    group: npt.NDArray[np.intp],
    along: npt.NDArray[np.float64],
) -> None:
    counts = np.bincount(group)
    repeated = int(np.argmax(counts > 1))
    differ = _differing_attributes([origins[i] for i in order[group == repeated]])
    if np.all(counts == counts[0]):
        raise MultipleStacksError(
            f"{len(origins)} images at {len(counts)} positions form {counts[0]} stacks of "
            f"{len(counts)} slices, which {differ}; a volume needs one stack (select one "
            "echo, time point or diffusion direction)"
        )
    shared = [float(along[np.argmax(group == g)]) for g in np.flatnonzero(counts > 1)]
    listed = ", ".join(f"{v:.2f}" for v in shared[:5]) + (" ..." if len(shared) > 5 else "")
    raise DuplicatePositionError(
        f"{int(np.sum(counts[counts > 1]))} of {len(origins)} images share a position with "
        f"another image ({len(shared)} positions, at {listed} mm along the slice normal), "
        f"while {int(np.sum(counts == 1))} positions have one image; the images at a shared "
        f"position {differ}"
    )


def _differing_attributes(origins: list[tuple[Dataset, int | None]]) -> str:
    values: dict[str, list[str]] = defaultdict(list)
    for ds, frame_number in origins:
        for keyword, value in stack_attributes(ds, frame_number):
            if value not in values[keyword]:
                values[keyword].append(value)
    differing = {k: v for k, v in values.items() if len(v) > 1}
    if len(differing) > 1:
        differing.pop("DimensionIndexValues", None)
    if not differing:
        return "no standard attribute tells apart (e.g. diffusion directions or time points)"
    listed = "; ".join(
        f"{k} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})" for k, v in differing.items()
    )
    return f"differ in {listed}"


def _check_spacing(gaps: npt.NDArray[np.float64]) -> None:
    expected = float(np.median(gaps)) if len(gaps) >= 3 else float(np.min(gaps))
    wrong = np.flatnonzero(np.abs(gaps - expected) > _SPACING_ATOL_MM + _SPACING_RTOL * expected)
    if not len(wrong):
        return
    details = ", ".join(
        f"{gaps[i]:.3f} mm between slices {i + 1} and {i + 2}"
        + (f" (about {round(gaps[i] / expected) - 1} missing)" if gaps[i] > expected else "")
        for i in wrong[:4]
    )
    more = f" and {len(wrong) - 4} more" if len(wrong) > 4 else ""
    raise MissingSlicesError(
        f"slice spacing is not uniform across {len(gaps) + 1} slices: expected {expected:.3f} mm, "
        f"found {details}{more}; slices are missing or the spacing varies"
    )


def _check_shear(
    positions: npt.NDArray[np.float64], normal: npt.NDArray[np.float64], pixel_mm: float
) -> None:
    offsets = positions - positions[0]
    along = offsets @ normal
    shift = np.linalg.norm(offsets - np.outer(along, normal), axis=1)
    tolerance = _SHEAR_PIXEL_FRACTION * pixel_mm + _SHEAR_SLOPE * np.abs(along)
    if np.all(shift <= tolerance):
        return
    span = float(along[-1] - along[0])
    angle = float(np.degrees(np.arctan2(shift[-1], span)))
    raise GantryTiltError(
        f"the slices are sheared: their positions drift {shift[-1]:.2f} mm in-plane over "
        f"{span:.2f} mm along the slice normal (a tilt of about {angle:.1f} degrees, e.g. "
        "gantry/detector tilt); the volume would need resampling"
    )


# --- pixels ------------------------------------------------------------------------------


def _stack_pixels(
    images: list[_Source], planes: list[ImagePlane], sources: list[tuple[int, int]]
) -> npt.NDArray[Any]:
    """Stack the frames in slice order, in modality units (Rescale Slope / Intercept applied).

    int16 when the rescale is integral, the same for all slices and its result fits; else
    float32.
    """
    rows, columns = planes[0].rows, planes[0].columns
    rescale = _common_integral_rescale(planes)
    layout = _native_layout(images, rows, columns)
    if layout is not None:
        return _stack_native(layout, planes, sources, rescale)
    instances = [
        ds if location is None else with_pixel_data(ds, location) for ds, location in images
    ]
    frames = _decoded_frames(instances, rows, columns)
    return _rescaled(_bits_range(instances), frames, planes, sources, rescale)


def _common_integral_rescale(planes: list[ImagePlane]) -> tuple[int, int] | None:
    """The Rescale Slope and Intercept of every plane, if they are the same integers."""
    slope, intercept = planes[0].rescale_slope, planes[0].rescale_intercept
    if not (float(slope).is_integer() and float(intercept).is_integer()):
        return None
    if any(p.rescale_slope != slope or p.rescale_intercept != intercept for p in planes):
        return None
    return int(slope), int(intercept)


def _rescaled(
    bits_range: tuple[int, int],
    frames: list[npt.NDArray[Any]],
    planes: list[ImagePlane],
    sources: list[tuple[int, int]],
    rescale: tuple[int, int] | None,
) -> npt.NDArray[Any]:
    """The frames ``frames[i][f]`` for each ``(i, f)`` of ``sources``, rescaled."""
    shape = (len(planes), planes[0].rows, planes[0].columns)
    if rescale is not None and all(np.issubdtype(f.dtype, np.integer) for f in frames):
        slope, intercept = rescale
        plan = _int16_plan(bits_range, frames, slope, intercept)
        if plan is not None:
            out = np.empty(shape, dtype=np.int16)
            for k, (i, f) in enumerate(sources):
                if plan == "in place":
                    out[k] = frames[i][f]
                else:
                    out[k] = frames[i][f].astype(np.int32) * slope + intercept
            if plan == "in place":
                _rescale_in_place(out, slope, intercept)
            return out
    out32 = np.empty(shape, dtype=np.float32)
    for k, ((i, f), plane) in enumerate(zip(sources, planes, strict=True)):
        out32[k] = frames[i][f] * plane.rescale_slope + plane.rescale_intercept
    return out32


def _rescale_in_place(out: npt.NDArray[np.int16], slope: int, intercept: int) -> None:
    if slope != 1:
        out *= np.int16(slope)
    if intercept != 0:
        out += np.int16(intercept)


def _decoded_frames(images: list[Dataset], rows: int, columns: int) -> list[npt.NDArray[Any]]:
    frames = []
    for ds, pixels in zip(images, decode_pixel_arrays(images), strict=True):
        count = integer(ds, "NumberOfFrames", 1)
        if pixels.size != count * rows * columns:
            raise InvalidDicomError(
                f"decoded pixel data has shape {pixels.shape}, expected {count} frame(s) of "
                f"{rows}x{columns}"
            )
        frames.append(pixels.reshape(count, rows, columns))
    return frames


def _bits_range(images: Sequence[Dataset]) -> tuple[int, int]:
    """The lowest and highest value that Bits Stored and Pixel Representation allow."""
    bits = {(integer(ds, "BitsStored", 16), integer(ds, "PixelRepresentation", 0)) for ds in images}
    low = min(-(2 ** (b - 1)) if signed else 0 for b, signed in bits)
    high = max(2 ** (b - 1) - 1 if signed else 2**b - 1 for b, signed in bits)
    return low, high


def _int16_plan(
    bits_range: tuple[int, int], frames: list[npt.NDArray[Any]], slope: int, intercept: int
) -> str | None:
    """How to rescale into int16: ``"in place"`` (stored values, the product and the result
    all fit in int16), ``"int32"`` (only the result fits), or ``None`` (use float32)."""
    # The decoders keep stored values within Bits Stored, so that range bounds them ...
    found = _range_plan(*bits_range, slope, intercept)
    if found == "in place":
        return found
    # ... but the values at hand may fit where the full range does not.
    low = min(int(f.min()) for f in frames)
    high = max(int(f.max()) for f in frames)
    return _range_plan(low, high, slope, intercept)


def _range_plan(low: int, high: int, slope: int, intercept: int) -> str | None:
    """:func:`_int16_plan` for stored values between ``low`` and ``high``."""
    products = sorted((low * slope, high * slope))
    results = (products[0] + intercept, products[1] + intercept)
    if not (_INT16.min <= results[0] and results[1] <= _INT16.max):
        return None
    fits = _INT16.min <= min(low, products[0]) and max(high, products[1]) <= _INT16.max
    fits = fits and _INT16.min <= slope <= _INT16.max and _INT16.min <= intercept <= _INT16.max
    return "in place" if fits else "int32"


# --- uncompressed pixel data read straight from the files ---------------------------------


@dataclass(frozen=True)
class _NativeLayout:
    """Uncompressed pixel data of every image, all of one stored type, ready to read."""

    dtype: np.dtype[Any]  # the stored values, in native byte order
    locations: tuple[PixelDataLocation, ...]
    bits_stored: tuple[int, ...]
    bits_range: tuple[int, int]


def _native_layout(images: list[_Source], rows: int, columns: int) -> _NativeLayout | None:
    """How to read every image's pixels from its file; ``None`` when any cannot be (then
    they are decoded the general way, which also names what is wrong)."""
    dtypes: set[np.dtype[Any]] = set()
    locations: list[PixelDataLocation] = []
    bits: list[int] = []
    for ds, location in images:
        if location is None:
            return None
        try:
            bits_allocated = required_integer(ds, "BitsAllocated")
            bits_stored = integer(ds, "BitsStored", bits_allocated)
            signed = integer(ds, "PixelRepresentation", 0) == 1
            frames = integer(ds, "NumberOfFrames", 1)
            samples = integer(ds, "SamplesPerPixel", 1)
        except (AttributeError, TypeError, ValueError, InvalidDicomError):
            return None
        if (
            bits_allocated not in (8, 16, 32)
            or not 1 <= bits_stored <= bits_allocated
            or samples != 1
            or location.length < frames * rows * columns * bits_allocated // 8
            or (not location.little_endian and location.vr == "OB" and bits_allocated > 8)
        ):
            return None
        dtypes.add(np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}"))
        locations.append(location)
        bits.append(bits_stored)
    if len(dtypes) != 1:
        return None
    return _NativeLayout(
        dtype=dtypes.pop(),
        locations=tuple(locations),
        bits_stored=tuple(bits),
        bits_range=_bits_range([ds for ds, _ in images]),
    )


def _stack_native(
    layout: _NativeLayout,
    planes: list[ImagePlane],
    sources: list[tuple[int, int]],
    rescale: tuple[int, int] | None,
) -> npt.NDArray[Any]:
    """:func:`_stack_pixels` reading each frame from its file into the volume, rescaling it
    while it is still in the CPU cache."""
    shape = (len(planes), planes[0].rows, planes[0].columns)
    plan = None if rescale is None else _range_plan(*layout.bits_range, *rescale)
    if rescale is not None and plan == "in place" and layout.dtype.itemsize == 2:
        out = np.empty(shape, dtype=np.int16)
        stored = out.view(layout.dtype)  # stored values fit in int16: the same bits
        for k in _read_native(layout, sources, lambda k: stored[k]):
            _rescale_in_place(out[k], *rescale)
        return out
    if rescale is None:  # float32 whatever the values
        out32 = np.empty(shape, dtype=np.float32)
        frame = np.empty(shape[1:], dtype=layout.dtype)
        for k in _read_native(layout, sources, lambda k: frame):
            out32[k] = frame * planes[k].rescale_slope + planes[k].rescale_intercept
        return out32
    stack = np.empty(shape, dtype=layout.dtype)
    for _ in _read_native(layout, sources, lambda k: stack[k]):
        pass
    if (
        layout.dtype.itemsize == 2
        and _int16_plan(layout.bits_range, [stack], *rescale) == "in place"
    ):
        out = stack.view(np.int16)  # the values at hand fit in int16: the same bits
        _rescale_in_place(out, *rescale)
        return out
    return _rescaled(
        layout.bits_range, [stack], planes, [(0, k) for k in range(len(planes))], rescale
    )


def _read_native(
    layout: _NativeLayout,
    sources: list[tuple[int, int]],
    target: Callable[[int], npt.NDArray[Any]],
) -> Iterator[int]:
    """Read the stored values of each frame ``(i, f)`` of ``sources`` into ``target(k)``,
    yielding ``k`` once it holds them (native byte order, unused high bits cleared)."""
    for k, (i, f) in enumerate(sources):
        out = target(k)
        read_pixel_data_into(layout.locations[i], out, start=f * out.nbytes)
        if not layout.locations[i].little_endian and out.itemsize > 1:
            out.byteswap(inplace=True)
        _clear_unused_bits(out, layout.bits_stored[i])
        yield k


def _clear_unused_bits(values: npt.NDArray[Any], bits_stored: int) -> None:
    """Like pydicom: values outside the Bits Stored range have garbage in the unused high
    bits (or lack sign extension); shifting left and back clears (or extends) them."""
    bits_allocated = values.itemsize * 8
    if bits_stored >= bits_allocated:
        return
    signed = values.dtype.kind == "i"
    high = (1 << (bits_stored - 1 if signed else bits_stored)) - 1
    if values.max() > high or (signed and values.min() < -(1 << (bits_stored - 1))):
        shift = bits_allocated - bits_stored
        np.left_shift(values, shift, out=values)
        np.right_shift(values, shift, out=values)


# --- metadata ----------------------------------------------------------------------------


def _uid(ds: Dataset, keyword: str) -> str | None:
    return str(ds.get(keyword, "") or "") or None


def _sop_class_uid(ds: Dataset) -> str | None:
    uid = _uid(ds, "SOPClassUID")
    if uid is None and hasattr(ds, "file_meta"):
        uid = _uid(ds.file_meta, "MediaStorageSOPClassUID")
    return uid


def _fmt(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"


def _strip_pixels(ds: Dataset) -> Dataset:
    # A new element dict: Dataset(ds) would share (and so strip) the source's elements.
    header = Dataset({tag: elem for tag, elem in ds.items() if tag not in _PIXEL_TAGS})
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    return header
