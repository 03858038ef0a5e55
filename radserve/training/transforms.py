"""MONAI transforms built from the manifest's :class:`PreprocessingSpec`, and augmentations.

The deterministic part reproduces :func:`radserve.inference.preprocessing.preprocess`:
``Orientationd(axcodes)`` -> ``Spacingd(pixdim, bilinear, border)`` -> clip to the window and
normalise (``ScaleIntensityRanged`` for ``scale_to_unit``; clipping then
``NormalizeIntensityd`` for ``zscore``). Cases enter as :func:`case_to_dict` dictionaries:
``[1, i, j, k]`` arrays with the volume's RAS affine, the layout MONAI's ITK reader gives.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from monai.data.meta_tensor import MetaTensor
from monai.transforms.compose import Compose
from monai.transforms.croppad.dictionary import RandCropByPosNegLabeld, SpatialPadd
from monai.transforms.intensity.dictionary import (
    NormalizeIntensityd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
)
from monai.transforms.spatial.dictionary import Orientationd, RandAffined, RandFlipd, Spacingd
from monai.transforms.transform import MapTransform

from radserve.dicom_io import Volume
from radserve.inference import PreprocessingSpec, ScaleToUnit
from radserve.training.config import AugmentationConfig
from radserve.training.datalist import Case

IMAGE = "image"
LABEL = "label"
KEYS = (IMAGE, LABEL)


def volume_to_tensor(volume: Volume, *, dtype: torch.dtype = torch.float32) -> MetaTensor:
    """A volume as a ``[1, i, j, k]`` MetaTensor with its RAS affine (MONAI's convention)."""
    array = np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0)[np.newaxis])
    return MetaTensor(
        torch.as_tensor(array, dtype=dtype),
        affine=torch.as_tensor(volume.affine_ras(), dtype=torch.float64),
    )


def case_to_dict(case: Case) -> dict[str, Any]:
    """A case as the dictionary the transforms take (``image``, ``label``, ``name``)."""
    return {
        IMAGE: volume_to_tensor(case.image),
        LABEL: volume_to_tensor(case.image.with_array(case.label), dtype=torch.uint8),
        "name": case.name,
    }


def preprocessing_transforms(spec: PreprocessingSpec, *, with_label: bool = True) -> Compose:
    """The deterministic transforms: orientation, spacing, window and normalisation."""
    keys = list(KEYS) if with_label else [IMAGE]
    low, high = spec.intensity.window_hu
    steps: list[MapTransform] = [
        Orientationd(keys=keys, axcodes=spec.orientation),
        Spacingd(
            keys=keys,
            pixdim=spec.target_spacing_mm,
            mode=["bilinear", "nearest"][: len(keys)],
            padding_mode=["border", "border"][: len(keys)],
            dtype=[np.float32, np.float32][: len(keys)],
        ),
    ]
    norm = spec.intensity.normalisation
    if isinstance(norm, ScaleToUnit):
        steps.append(
            ScaleIntensityRanged(keys=IMAGE, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
        )
    else:
        steps.append(
            ScaleIntensityRanged(
                keys=IMAGE, a_min=low, a_max=high, b_min=low, b_max=high, clip=True
            )
        )
        steps.append(
            NormalizeIntensityd(
                keys=IMAGE,
                subtrahend=norm.mean,  # type: ignore[arg-type]  # a float works (MONAI 1.6)
                divisor=norm.std,  # type: ignore[arg-type]
            )
        )
    return Compose(steps)


def augmentation_transforms(
    config: AugmentationConfig, *, patch_size: tuple[int, int, int]
) -> Compose:
    """Random transforms for training: pad, crop by label ratio, flips, intensity, affine."""
    positive = config.positive_fraction
    steps: list[MapTransform] = [
        SpatialPadd(keys=list(KEYS), spatial_size=patch_size, mode="constant"),
        RandCropByPosNegLabeld(
            keys=list(KEYS),
            label_key=LABEL,
            spatial_size=patch_size,
            pos=positive,
            neg=1.0 - positive,
            num_samples=config.samples_per_case,
            image_key=None,
        ),
    ]
    if config.affine is not None:
        angle = math.radians(config.affine.rotate_deg)
        steps.append(
            RandAffined(
                keys=list(KEYS),
                prob=config.affine.prob,
                rotate_range=(angle, angle, angle),
                scale_range=(config.affine.scale,) * 3,
                mode=("bilinear", "nearest"),
                padding_mode="border",
            )
        )
    if config.flip_prob > 0:
        steps.extend(
            RandFlipd(keys=list(KEYS), prob=config.flip_prob, spatial_axis=axis)
            for axis in range(3)
        )
    if config.intensity_scale > 0:
        steps.append(
            RandScaleIntensityd(
                keys=IMAGE, factors=config.intensity_scale, prob=config.intensity_prob
            )
        )
    if config.intensity_shift > 0:
        steps.append(
            RandShiftIntensityd(
                keys=IMAGE, offsets=config.intensity_shift, prob=config.intensity_prob
            )
        )
    return Compose(steps)
