"""From a :class:`Volume` to the network's input tensor, and from predicted labels back.

The network grid and tensor, precisely (training must build the same; MONAI's
``LoadImage`` (ITK reader) -> ``EnsureChannelFirst`` -> ``Orientation(axcodes)`` ->
``Spacing(pixdim, mode="bilinear", padding_mode="border")`` -> ``ScaleIntensityRange(clip=True)``
gives this layout):

1. **Orientation.** ``SimpleITK.DICOMOrient(image, orientation)`` permutes and flips the
   volume's axes so that its x, y, z axes (SimpleITK's index order, the Volume's i, j, k)
   point as nearly as possible to the three letters of ``preprocessing.orientation`` (``RAS``:
   x towards the patient's right, y anterior, z superior). Axis-aligned volumes become exactly
   aligned; an oblique volume keeps its rotation (no interpolation happens here).
2. **Spacing.** The oriented image is resampled with linear interpolation to
   ``target_spacing_mm`` (x, y, z), keeping its origin (the centre of the first voxel) and
   direction; the size along each axis is ``numpy.round((n - 1) * spacing / target + 1)``.
   Sample points beyond the last voxel centre are clamped per axis, as MONAI's "border"
   padding does: the image is first extended by replicating its last voxels (enough of them
   to cover half a target voxel), so such a point still interpolates along the other axes.
   When the spacing already equals the target (within 1e-6 mm) nothing is resampled.
3. **Intensity.** Values are clipped to ``window_hu`` and normalised: ``scale_to_unit`` maps
   the window linearly onto [0, 1], ``zscore`` computes ``(value - mean) / std``. float32.
4. **Layout.** The array is ``[C=1, X, Y, Z]``: the first spatial axis is x (SimpleITK's
   first index, the reverse of ``GetArrayFromImage``'s ``[z, y, x]``), so a batch is
   ``[N, 1, X, Y, Z]``, the ``[N, C, D, H, W]`` the ONNX model receives.

Predicted labels go back with :func:`labels_to_source`: the integer label map on the network
grid (argmax already taken) is resampled onto the source volume's grid with nearest-neighbour
interpolation, so labels are never blended.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from radserve.dicom_io import Grid, Volume
from radserve.inference.errors import NetworkGridTooLargeError
from radserve.inference.manifest import IntensitySpec, PreprocessingSpec, ScaleToUnit

logger = logging.getLogger(__name__)

SPACING_ATOL_MM = 1e-6
"""Spacings closer than this to the target are not resampled."""

MAX_NETWORK_VOXELS = 2**30
"""Largest network grid accepted whatever the memory budget (see :func:`max_network_voxels`)."""

# Bytes one network voxel costs at most during a prediction, besides the per-channel ones:
# the resampled image and the network input (float32 each), the label map.
_BYTES_PER_VOXEL = 4 + 4 + 2
# ... and per output channel: the blended logits and their accumulator (float32 each).
_BYTES_PER_VOXEL_AND_CHANNEL = 8


def network_bytes_per_voxel(output_channels: int) -> int:
    """An upper estimate of the memory one network-grid voxel takes during a prediction."""
    return _BYTES_PER_VOXEL + _BYTES_PER_VOXEL_AND_CHANNEL * max(1, output_channels)


def max_network_voxels(memory_budget_bytes: int | None, output_channels: int) -> int:
    """The largest network grid a prediction may use within ``memory_budget_bytes``
    (``None``: :data:`MAX_NETWORK_VOXELS`)."""
    if memory_budget_bytes is None:
        return MAX_NETWORK_VOXELS
    return min(MAX_NETWORK_VOXELS, memory_budget_bytes // network_bytes_per_voxel(output_channels))


@dataclass(frozen=True)
class PreprocessedImage:
    """A volume on the network grid.

    Attributes:
        array: The network input ``[1, X, Y, Z]``, float32, C-contiguous.
        reference: The network grid: the oriented, resampled image before intensity
            normalisation (its geometry is what :func:`labels_to_source` needs).
    """

    array: npt.NDArray[np.float32]
    reference: sitk.Image

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """``(X, Y, Z)`` of the network grid."""
        _, x, y, z = self.array.shape
        return (int(x), int(y), int(z))


def preprocess(
    volume: Volume, spec: PreprocessingSpec, *, max_voxels: int = MAX_NETWORK_VOXELS
) -> PreprocessedImage:
    """Bring ``volume`` onto the network grid and normalise it (see the module docstring).

    Raises:
        NetworkGridTooLargeError: The network grid would exceed ``max_voxels``; checked
            before anything is resampled.
    """
    image = sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
    oriented = sitk.DICOMOrient(image, spec.orientation)
    resampled = resample_to_spacing(oriented, spec.target_spacing_mm, max_voxels=max_voxels)
    zyx = sitk.GetArrayViewFromImage(resampled)
    array = apply_intensity(zyx.transpose(2, 1, 0), spec.intensity)
    return PreprocessedImage(array=array[np.newaxis], reference=resampled)


def network_grid_size(
    size: Sequence[int], spacing_mm: Sequence[float], target_spacing_mm: Sequence[float]
) -> tuple[int, int, int]:
    """Grid size after resampling: ``round((n - 1) * spacing / target + 1)`` per axis."""
    x, y, z = (
        max(1, int(np.round((n - 1) * s / t + 1.0)))
        for n, s, t in zip(size, spacing_mm, target_spacing_mm, strict=True)
    )
    return (x, y, z)


def resample_to_spacing(
    image: sitk.Image,
    target_spacing_mm: tuple[float, float, float],
    *,
    max_voxels: int = MAX_NETWORK_VOXELS,
) -> sitk.Image:
    """Resample ``image`` to ``target_spacing_mm``, same origin and direction (linear).

    Raises:
        NetworkGridTooLargeError: The new grid (or the image, when it needs no resampling)
            would exceed ``max_voxels``.
    """
    spacing = tuple(float(s) for s in image.GetSpacing())
    unchanged = np.allclose(spacing, target_spacing_mm, rtol=0.0, atol=SPACING_ATOL_MM)
    size = (
        tuple(int(n) for n in image.GetSize())
        if unchanged
        else network_grid_size(image.GetSize(), spacing, target_spacing_mm)
    )
    voxels = int(np.prod(size, dtype=np.int64))
    if voxels > max_voxels:
        raise NetworkGridTooLargeError(
            f"the series on the model's {list(target_spacing_mm)} mm grid is {list(size)} "
            f"voxels ({voxels}), more than the {max_voxels} the inference memory budget allows "
            f"(source spacing {[round(s, 3) for s in spacing]} mm)"
        )
    if unchanged:
        return image
    # Replicate the last voxels wherever the grid reaches past the last voxel centre, so that
    # linear interpolation clamps per axis there (MONAI "border"), rather than ITK's
    # extrapolator taking the nearest voxel in all three axes.
    upper = [
        int(np.ceil(((m - 1) * t - (n - 1) * s) / s + 1e-9)) if (m - 1) * t > (n - 1) * s else 0
        for m, t, n, s in zip(size, target_spacing_mm, image.GetSize(), spacing, strict=True)
    ]
    if any(upper):
        image = sitk.ZeroFluxNeumannPad(image, [0, 0, 0], [u + 1 if u else 0 for u in upper])
    return sitk.Resample(
        image,
        list(size),
        sitk.Transform(),
        sitk.sitkLinear,
        image.GetOrigin(),
        tuple(float(t) for t in target_spacing_mm),
        image.GetDirection(),
        0.0,
        image.GetPixelID(),
        True,  # nearest-neighbour extrapolation: only reached within 1e-6 mm of the edge
    )


def apply_intensity(array: npt.NDArray[Any], spec: IntensitySpec) -> npt.NDArray[np.float32]:
    """Clip to the window and normalise, as float32 (a new array)."""
    low, high = (np.float32(v) for v in spec.window_hu)
    result = np.array(array, dtype=np.float32, order="C", copy=True)
    np.clip(result, low, high, out=result)
    norm = spec.normalisation
    if isinstance(norm, ScaleToUnit):
        result -= low
        result /= high - low
    else:
        result -= np.float32(norm.mean)
        result /= np.float32(norm.std)
    return result


def labels_to_source(
    labels: npt.NDArray[np.integer[Any]], *, reference: sitk.Image, source: Volume
) -> npt.NDArray[np.uint8]:
    """Map a label map ``[X, Y, Z]`` on the network grid onto the source grid ``[k, j, i]``.

    Args:
        labels: Integer labels (0..255) on the grid of ``reference``, network layout.
        reference: The network grid (:attr:`PreprocessedImage.reference`).
        source: The volume the prediction is for.

    Raises:
        ValueError: ``labels`` does not have the reference grid's shape.
    """
    size = tuple(int(n) for n in reference.GetSize())
    if labels.shape != size:
        raise ValueError(f"labels of shape {labels.shape} do not fit the network grid {size}")
    label_image = sitk.GetImageFromArray(np.ascontiguousarray(labels.astype(np.uint8).T))
    label_image.CopyInformation(reference)
    if source.same_grid(Grid.from_sitk(label_image)):
        return sitk.GetArrayFromImage(label_image)
    back = sitk.Resample(
        label_image,
        _empty_like(source),
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
        True,  # nearest-neighbour extrapolation at the grid's outer half voxel
    )
    result: npt.NDArray[np.uint8] = sitk.GetArrayFromImage(back)
    return result


def _empty_like(volume: Volume) -> sitk.Image:
    k, j, i = volume.shape
    image = sitk.Image([i, j, k], sitk.sitkUInt8)
    image.SetSpacing(tuple(float(s) for s in volume.spacing_mm))
    image.SetOrigin(tuple(float(o) for o in volume.origin_mm))
    image.SetDirection(tuple(float(d) for d in np.asarray(volume.direction).ravel()))
    return image
