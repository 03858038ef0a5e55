"""Stacking the pixel data of a series' frames into one volume array, in modality units.

Uncompressed pixel data is read from each file straight into a preallocated volume
(:func:`radserve.dicom_io.reading.headers.read_pixel_data_into`) and rescaled there, frame by frame,
while it is still in the CPU cache; anything else is decoded (in parallel worker processes
for compressed data) and then rescaled. Voxels are int16 when Rescale Slope / Intercept are
integers, the same for every frame and their results fit; else float32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from radserve.dicom_io.errors import InvalidDicomError
from radserve.dicom_io.reading.enhanced import ImagePlane, integer, required_integer
from radserve.dicom_io.reading.headers import (
    PixelDataLocation,
    read_pixel_data_into,
    with_pixel_data,
)
from radserve.dicom_io.reading.instances import decode_pixel_arrays

_INT16 = np.iinfo(np.int16)
# An instance read whole (no location), or its header and where its Pixel Data lies.
InstanceSource = tuple[Dataset, PixelDataLocation | None]


def stack_pixels(
    images: list[InstanceSource], planes: list[ImagePlane], sources: list[tuple[int, int]]
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


@dataclass(frozen=True)
class _NativeLayout:
    """Uncompressed pixel data of every image, all of one stored type, ready to read."""

    dtype: np.dtype[Any]  # the stored values, in native byte order
    locations: tuple[PixelDataLocation, ...]
    bits_stored: tuple[int, ...]
    bits_range: tuple[int, int]


def _native_layout(images: list[InstanceSource], rows: int, columns: int) -> _NativeLayout | None:
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
    """:func:`stack_pixels` reading each frame from its file into the volume, rescaling it
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
