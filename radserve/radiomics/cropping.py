"""Where to crop the image before extraction, per image type, so that values do not change.

A stock ``RadiomicsFeatureExtractor.execute`` filters the whole image and then crops the
filtered image to the segment's bounding box. The filtered values inside the box only
depend on the image near the box, so radserve crops first, keeping the margin each filter
needs (``tests/radiomics/test_equivalence.py`` checks every feature against the stock call):

* ``Original``: no margin (features only read voxels inside the box).
* ``LoG``: ITK's recursive Gaussian is an infinite impulse response filter, so a crop
  changes the filtered values by an amount that decays with the distance to the crop edge.
  Measured on STS_002 (largest difference inside the segment, relative to the largest
  filtered value there): 3e-6 with a margin of 8 sigma, 9e-8 with 12 sigma, and with
  :data:`LOG_MARGIN_SIGMAS` = 16 sigma at most 2e-8 in a handful of voxels (the float32
  rounding of the filter's output). The margin per axis, in voxels, is
  ``ceil(16 * sigma / spacing)``. PyRadiomics' own ``cropToTumorMask`` with its default
  ``padDistance`` of 5 voxels is far too small for LoG: features of the 3 and 5 mm LoG
  images then differ from the stock call by up to 140 % (STS_002; 10 voxels: 17 %).
* ``Wavelet``: PyRadiomics runs ``pywt.swtn`` (periodic boundaries) once per level on the
  previous approximation, so a voxel depends on ``dec_len - 1`` neighbours per level. The
  margin is ``(start_level + level) * dec_len`` (the values are then bit-identical); where
  that margin does not fit inside the image along an axis, the whole axis is kept, because
  the periodic wrap then reaches the far side of the image.
* ``Gradient``: 2 voxels (central differences).
* ``Square``, ``SquareRoot``, ``Logarithm``, ``Exponential`` scale by the maximum of the
  whole image, and ``LBP2D`` / ``LBP3D`` are not analysed: these keep the whole image.

Resampling, ``preCrop`` and diagnostics need the whole image (:func:`whole_image_plan`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

LOG_MARGIN_SIGMAS = 16.0
GRADIENT_MARGIN_VOXELS = 2
_WHOLE_IMAGE_TYPES = frozenset(
    {"Square", "SquareRoot", "Logarithm", "Exponential", "LBP2D", "LBP3D"}
)


@dataclass(frozen=True)
class Region:
    """A box of voxels, in SimpleITK index order ``(i, j, k)``.

    Attributes:
        index: The first voxel.
        size: The number of voxels along each axis.
    """

    index: tuple[int, int, int]
    size: tuple[int, int, int]

    @property
    def upper(self) -> tuple[int, int, int]:
        """The last voxel (inclusive)."""
        return (
            self.index[0] + self.size[0] - 1,
            self.index[1] + self.size[1] - 1,
            self.index[2] + self.size[2] - 1,
        )

    def union(self, other: Region) -> Region:
        """The smallest box holding both boxes."""
        lower = tuple(min(a, b) for a, b in zip(self.index, other.index, strict=True))
        upper = tuple(max(a, b) for a, b in zip(self.upper, other.upper, strict=True))
        return _box(lower, upper)

    def relative_to(self, outer: Region) -> Region:
        """This box in the index space of ``outer`` (which must contain it)."""
        index = tuple(a - b for a, b in zip(self.index, outer.index, strict=True))
        if min(index) < 0 or any(u > o for u, o in zip(self.upper, outer.upper, strict=True)):
            raise ValueError(f"{self} is not inside {outer}")
        return Region(index=(index[0], index[1], index[2]), size=self.size)


@dataclass(frozen=True)
class ImageTypeGroup:
    """One filtered image (or one LoG sigma) and the region it is computed on.

    Attributes:
        image_type: PyRadiomics image type (``Original``, ``LoG``, ``Wavelet``, ...).
        custom: The image type's custom settings (for LoG, a single ``sigma``).
        region: The region of the full image the filter runs on.
    """

    image_type: str
    custom: Mapping[str, Any]
    region: Region


@dataclass(frozen=True)
class CropPlan:
    """The regions one segment's extraction reads.

    Attributes:
        union: The region to cut from the full image (holds every other region).
        groups: One entry per filtered image, in the order of the parameter set.
        box: The segment's bounding box (the shape features' region).
        whole: The full image.
    """

    union: Region
    groups: tuple[ImageTypeGroup, ...]
    box: Region
    whole: Region

    def union_of(self, parts: Sequence[int]) -> Region:
        """The region a task computing ``parts`` (group indices; -1 for the shape
        features) needs: the box, those groups' regions, and one voxel around."""
        union = self.box
        for index in parts:
            if index >= 0:
                union = union.union(self.groups[index].region)
        if union == self.whole:
            return union
        # PyRadiomics refuses a mask without background (getMask): keep one voxel around.
        return _grow(union, [1, 1, 1], self.whole, keep_whole_axis=False)


def bounding_box(mask: npt.NDArray[Any], label: int) -> Region | None:
    """The bounding box of ``label`` in a ``[k, j, i]`` array, or None when it is empty."""
    hit = mask == label
    if not hit.any():
        return None
    bounds = []
    for axis in (2, 1, 0):  # i, j, k
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(hit.any(axis=other))
        bounds.append((int(present[0]), int(present[-1])))
    return _box(tuple(b[0] for b in bounds), tuple(b[1] for b in bounds))


def plan_crops(
    image_types: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    *,
    box: Region,
    image_size: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
) -> CropPlan:
    """Plan the crop of each filtered image around a segment's bounding box.

    Args:
        image_types: Enabled image types and their custom settings (parameter set order).
        settings: The parameter set's settings (global filter settings such as ``sigma``).
        box: The segment's bounding box.
        image_size: Size of the full image, ``(i, j, k)``.
        spacing_mm: Voxel spacing, ``(i, j, k)``.
    """
    whole = Region(index=(0, 0, 0), size=image_size)
    groups: list[ImageTypeGroup] = []
    for image_type, custom in image_types.items():
        args = {**settings, **custom}
        if image_type == "LoG":
            for sigma in args.get("sigma", []):
                margin = [math.ceil(LOG_MARGIN_SIGMAS * float(sigma) / s) for s in spacing_mm]
                region = _grow(box, margin, whole, keep_whole_axis=False)
                groups.append(ImageTypeGroup(image_type, {**custom, "sigma": [sigma]}, region))
            continue
        if image_type == "Original":
            region = box
        elif image_type == "Wavelet":
            region = _grow(box, [_wavelet_margin(args)] * 3, whole, keep_whole_axis=True)
        elif image_type == "Gradient":
            region = _grow(box, [GRADIENT_MARGIN_VOXELS] * 3, whole, keep_whole_axis=False)
        else:  # _WHOLE_IMAGE_TYPES and anything PyRadiomics adds later
            region = whole
        groups.append(ImageTypeGroup(image_type, dict(custom), region))
    plan = CropPlan(union=whole, groups=tuple(groups), box=box, whole=whole)
    return dataclasses.replace(plan, union=plan.union_of(range(len(groups))))


def whole_image_plan(
    image_types: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    *,
    image_size: tuple[int, int, int],
) -> CropPlan:
    """A plan without cropping (resampling, pre-cropping or diagnostics are enabled)."""
    whole = Region(index=(0, 0, 0), size=image_size)
    groups = [
        ImageTypeGroup(image_type, dict(custom), whole)
        for image_type, custom in image_types.items()
    ]
    return CropPlan(union=whole, groups=tuple(groups), box=whole, whole=whole)


def _wavelet_margin(args: Mapping[str, Any]) -> int:
    import pywt  # type: ignore[import-untyped]

    wavelet = pywt.Wavelet(args.get("wavelet", "coif1"))
    passes = int(args.get("start_level", 0)) + int(args.get("level", 1))
    return passes * int(wavelet.dec_len)


def _grow(box: Region, margin: Sequence[int], whole: Region, *, keep_whole_axis: bool) -> Region:
    lower: list[int] = []
    upper: list[int] = []
    for axis in range(3):
        low = box.index[axis] - margin[axis]
        high = box.upper[axis] + margin[axis]
        limit = whole.size[axis] - 1
        if keep_whole_axis and (low < 0 or high > limit):
            low, high = 0, limit
        lower.append(max(low, 0))
        upper.append(min(high, limit))
    return _box(lower, upper)


def _box(lower: Sequence[int], upper: Sequence[int]) -> Region:
    return Region(
        index=(int(lower[0]), int(lower[1]), int(lower[2])),
        size=(
            int(upper[0] - lower[0] + 1),
            int(upper[1] - lower[1] + 1),
            int(upper[2] - lower[2] + 1),
        ),
    )
