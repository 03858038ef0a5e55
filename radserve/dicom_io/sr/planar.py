"""Key-slice planar measurement groups (TID 1410) for viewers that draw image coordinates.

A TID 1411 volumetric group (the segment of the SEG, every measurement) is the complete
record, but viewers such as OHIF only show groups with an image region. So each segment also
gets a TID 1410 group on its key slice (the source image where its area is largest): a closed
SCOORD POLYLINE of the outer contour of its largest region there, in image coordinates
(column, row; (0, 0) is the top-left corner of the top-left pixel, so a pixel centre is
at +0.5), and the headline values: volume, mean intensity (CT: HU) and maximum 3D diameter
(the largest distance between two voxel centres of the segment, in mm).
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code as PydicomCode
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import measure

from radserve.dicom_io.masks.measurements import SegmentMeasurements
from radserve.dicom_io.volume import Volume

CONTOUR_TOLERANCE_PX = 0.5


@dataclass(frozen=True)
class KeySliceOutline:
    """A segment's key slice and the outline of its largest region there.

    Attributes:
        slice_index: The key slice (``volume.array[k]``).
        polyline: Closed polyline, ``(n, 2)`` (column, row) in SCOORD image coordinates.
    """

    slice_index: int
    polyline: npt.NDArray[np.float64]


def key_slice_outline(mask: npt.NDArray[np.bool_]) -> KeySliceOutline | None:
    """The slice of largest area of ``mask`` (``[k, j, i]``) and its outer contour."""
    areas = mask.sum(axis=(1, 2))
    if not areas.any():
        return None
    k = int(np.argmax(areas))
    labels, count = ndimage.label(mask[k])
    sizes = ndimage.sum_labels(mask[k], labels, index=range(1, count + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    filled = ndimage.binary_fill_holes(largest)
    contours = measure.find_contours(np.pad(filled, 1).astype(float), 0.5)
    contour = max(contours, key=len) - 1.0  # (row, column) of pixel centres, unpadded
    simplified = measure.approximate_polygon(contour, tolerance=CONTOUR_TOLERANCE_PX)
    if not np.array_equal(simplified[0], simplified[-1]):
        simplified = np.vstack([simplified, simplified[:1]])
    polyline = np.stack([simplified[:, 1] + 0.5, simplified[:, 0] + 0.5], axis=1)
    return KeySliceOutline(k, polyline.astype(np.float64))


def maximum_3d_diameter_mm(mask: npt.NDArray[np.bool_], volume: Volume) -> float:
    """The largest distance (mm) between two voxel centres of ``mask`` on ``volume``'s grid."""
    surface = mask & ~ndimage.binary_erosion(mask)
    kji = np.argwhere(surface)
    if len(kji) < 2:
        return 0.0
    points = volume.index_to_lps(kji[:, ::-1])
    points = points[_hull_vertices(points)]
    differences = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((differences**2).sum(axis=-1)).max())


def _hull_vertices(points: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Indices of the convex hull's vertices, in the plane or on the line the points span
    when they are flat (a one-slice segment) or collinear; the farthest pair is among them."""
    centred = points - points.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    rank = int((singular > 1e-9 * max(float(singular[0]), 1e-12)).sum())
    if rank <= 1:  # a point or a line: its two ends
        along = centred @ axes[0]
        return np.asarray([int(np.argmin(along)), int(np.argmax(along))], dtype=np.intp)
    flat = centred @ axes[:rank].T
    try:
        hull = ConvexHull(flat)
    except QhullError:  # nearly degenerate: joggled input always gives a hull
        hull = ConvexHull(flat, qhull_options="QJ")
    return np.asarray(hull.vertices, dtype=np.intp)


@dataclass(frozen=True)
class PlanarGroupInput:
    """What one segment's planar group says."""

    tracking_identifier: hd.sr.TrackingIdentifier
    finding_type: hd.sr.CodedConcept
    finding_category: hd.sr.CodedConcept
    source_image: Dataset
    outline: KeySliceOutline
    measured: SegmentMeasurements
    max_diameter_mm: float


def planar_group(
    group: PlanarGroupInput,
    algorithm_id: hd.sr.AlgorithmIdentification,
    intensity: tuple[PydicomCode, PydicomCode] | None,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """The TID 1410 group of one segment on its key slice."""
    measurements = [
        hd.sr.Measurement(
            name=codes.SCT.Volume,
            value=float(group.measured.volume_mm3),
            unit=codes.UCUM.CubicMillimeter,
        ),
        hd.sr.Measurement(
            name=codes.SCT.Diameter,
            value=group.max_diameter_mm,
            unit=codes.UCUM.Millimeter,
            derivation=codes.SCT.Maximum,
        ),
    ]
    if intensity is not None:
        concept, unit = intensity
        measurements.append(
            hd.sr.Measurement(
                name=concept,
                value=float(group.measured.mean),
                unit=unit,
                derivation=codes.SCT.Mean,
            )
        )
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=group.outline.polyline,
        source_image=hd.sr.SourceImageForRegion.from_source_image(group.source_image),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=group.tracking_identifier,
        referenced_region=region,
        finding_type=group.finding_type,
        finding_category=group.finding_category,
        algorithm_id=algorithm_id,
        measurements=measurements,
    )
