"""Sliding-window inference over a 3D image in numpy, with MONAI's semantics.

This reproduces ``monai.inferers.sliding_window_inference`` with ``mode="gaussian"`` (or
``"constant"``), ``padding_mode="constant"``, ``cval=0`` and one image:

* an image smaller than the patch along an axis is padded with zeros, split evenly with the
  odd voxel at the end, and the output cropped back;
* the step along an axis is ``int(patch * (1 - overlap))`` (at least 1), or the whole patch
  when the (padded) image is exactly one patch long; windows start at multiples of the step
  until one reaches the end, and a window that would overhang the end is moved back to end
  at the image's edge;
* each window's output is weighted by the importance map, a separable Gaussian with
  ``sigma = sigma_scale * patch`` centred on the patch (``exp(-d**2 / (2 sigma**2))``, not
  normalised, clamped below at ``max(min weight, 1e-3)``), or ones for ``constant``; the
  result is the weighted sum over windows divided by the sum of weights.

Windows are sent to ``run_batch`` in batches of up to ``batch_size``, in C order of their
start positions. The model's raw output (usually logits) is what gets blended.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from radserve.inference.errors import IncompatibleModelError

logger = logging.getLogger(__name__)

RunBatch = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
"""A model call: ``[N, C, D, H, W]`` windows in, ``[N, K, D, H, W]`` outputs back."""

_MIN_WEIGHT = 1e-3


@dataclass(frozen=True)
class SlidingWindowOptions:
    """How the image is tiled and the window outputs blended.

    Attributes:
        patch_size: Window size ``(D, H, W)`` in voxels.
        overlap: Fraction of a window shared with the next, in [0, 1).
        batch_size: Windows per ``run_batch`` call.
        blending: ``gaussian`` or ``constant``.
        sigma_scale: Gaussian sigma as a fraction of the patch size.
        accumulate_dtype: float32 (as MONAI, half the memory) or float64 (the blended
            result is then exact to float32 precision, e.g. for an identity model).
    """

    patch_size: tuple[int, int, int]
    overlap: float
    batch_size: int
    blending: Literal["gaussian", "constant"] = "gaussian"
    sigma_scale: float = 0.125
    accumulate_dtype: type[np.floating[Any]] = np.float32

    def __post_init__(self) -> None:
        if len(self.patch_size) != 3 or any(p < 1 for p in self.patch_size):
            raise ValueError(f"patch size must be three positive sizes, got {self.patch_size}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be positive, got {self.batch_size}")
        if self.sigma_scale <= 0:
            raise ValueError(f"sigma scale must be positive, got {self.sigma_scale}")


def window_starts(image_size: int, patch_size: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis (``image_size >= patch_size``)."""
    if image_size < patch_size:
        raise ValueError(f"image size {image_size} is below patch size {patch_size}")
    if image_size == patch_size:
        return [0]
    step = max(int(patch_size * (1.0 - overlap)), 1)
    count = next(n for n in range(1, image_size + 1) if (n - 1) * step + patch_size >= image_size)
    return [min(n * step, image_size - patch_size) for n in range(count)]


def importance_map(
    patch_size: Sequence[int], *, blending: Literal["gaussian", "constant"], sigma_scale: float
) -> npt.NDArray[np.float32]:
    """The weight of each voxel of a window's output (see the module docstring)."""
    if blending == "constant":
        return np.ones(tuple(patch_size), dtype=np.float32)
    weights = np.ones((), dtype=np.float32)
    for size in patch_size:
        offsets = np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2.0)
        sigma = np.float32(size * sigma_scale)
        profile = np.exp(offsets**2 / (np.float32(-2.0) * sigma**2)).astype(np.float32)
        weights = np.multiply.outer(weights, profile)
    positive = weights[weights > 0]
    floor = max(float(positive.min()) if positive.size else 0.0, _MIN_WEIGHT)
    return np.maximum(weights, np.float32(floor)).astype(np.float32)


def sliding_window_inference(
    image: npt.NDArray[np.float32], run_batch: RunBatch, options: SlidingWindowOptions
) -> npt.NDArray[np.float32]:
    """Run ``run_batch`` over overlapping windows of ``image`` and blend the outputs.

    Args:
        image: ``[C, D, H, W]``.
        run_batch: The model call.
        options: Patch size, overlap, batch size and blending.

    Returns:
        The blended output ``[K, D, H, W]``, float32.

    Raises:
        IncompatibleModelError: ``run_batch`` returned a shape other than ``[n, K, *patch]``
            or a different ``K`` for different batches.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be [C, D, H, W], got shape {image.shape}")
    patch = options.patch_size
    spatial = tuple(int(n) for n in image.shape[1:])
    pad = [_split(max(p - n, 0)) for n, p in zip(spatial, patch, strict=True)]
    padded = np.pad(image, [(0, 0), *pad]) if any(sum(p) for p in pad) else image
    padded_size = tuple(int(n) for n in padded.shape[1:])
    starts = list(
        itertools.product(
            *(window_starts(n, p, options.overlap) for n, p in zip(padded_size, patch, strict=True))
        )
    )
    weights = importance_map(patch, blending=options.blending, sigma_scale=options.sigma_scale)
    weights_acc = weights.astype(options.accumulate_dtype)
    total: npt.NDArray[Any] | None = None
    weight_sum = np.zeros(padded_size, dtype=options.accumulate_dtype)
    logger.debug("sliding window: %d windows of %s over %s", len(starts), patch, padded_size)
    for first in range(0, len(starts), options.batch_size):
        batch_starts = starts[first : first + options.batch_size]
        regions = [_region(start, patch) for start in batch_starts]
        batch = np.stack([padded[(slice(None), *region)] for region in regions])
        output = np.asarray(run_batch(batch))
        if output.ndim != 5 or output.shape[0] != len(regions) or output.shape[2:] != patch:
            raise IncompatibleModelError(
                f"the model returned shape {list(output.shape)} for a batch of shape "
                f"{list(batch.shape)}; expected [{len(regions)}, K, {', '.join(map(str, patch))}]"
            )
        if total is None:
            total = np.zeros((output.shape[1], *padded_size), dtype=options.accumulate_dtype)
        elif output.shape[1] != total.shape[0]:
            raise IncompatibleModelError(
                f"the model returned {output.shape[1]} channels, earlier {total.shape[0]}"
            )
        for window_output, region in zip(output, regions, strict=True):
            total[(slice(None), *region)] += window_output * weights_acc
            weight_sum[region] += weights_acc
    assert total is not None  # at least one window always exists
    total /= weight_sum
    crop = tuple(slice(before, before + n) for (before, _), n in zip(pad, spatial, strict=True))
    return total[(slice(None), *crop)].astype(np.float32)


def _region(start: tuple[int, ...], patch: tuple[int, int, int]) -> tuple[slice, ...]:
    return tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))


def _split(padding: int) -> tuple[int, int]:
    return (padding // 2, padding - padding // 2)
