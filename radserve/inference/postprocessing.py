"""From network outputs to a clean label map: argmax, and removing small connected components."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage


def labels_from_logits(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """The argmax over the channel axis (axis 0) as uint8 labels; ties go to the lower channel.

    Two channels (background + one label) take a single comparison instead of the argmax.
    """
    labels: npt.NDArray[np.uint8]
    if logits.shape[0] == 2:
        labels = np.greater(logits[1], logits[0]).view(np.uint8)
    else:
        labels = np.argmax(logits, axis=0).astype(np.uint8)
    return labels


def remove_small_components(
    labels: npt.NDArray[np.uint8], *, min_voxels: int
) -> tuple[npt.NDArray[np.uint8], int]:
    """Set to background every connected component smaller than ``min_voxels``.

    Components are taken per label, face-connected (6-connectivity in 3D, as MONAI's
    ``RemoveSmallObjects`` default).

    Args:
        labels: A label map (any shape); not modified.
        min_voxels: Components with fewer voxels are removed.

    Returns:
        The cleaned label map (``labels`` itself when nothing is removed, else a copy) and
        the number of voxels removed.
    """
    if min_voxels < 1:
        raise ValueError(f"min_voxels must be positive, got {min_voxels}")
    result = labels
    removed = 0
    # One pass finds every label's bounding box; labelling then only looks inside it, and
    # only the bounding boxes of the small components are written to.
    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        mask = labels[box] == index + 1
        components, count = ndimage.label(mask)
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        small = np.flatnonzero(sizes[1:] < min_voxels) + 1
        if small.size == 0:
            continue
        if result is labels:
            result = labels.copy()
        target = result[box]
        component_boxes = ndimage.find_objects(components)
        for component in small:
            inner = component_boxes[component - 1]
            assert inner is not None  # every component has voxels
            target[inner][components[inner] == component] = 0
        removed += int(sizes[small].sum())
    return result, removed
