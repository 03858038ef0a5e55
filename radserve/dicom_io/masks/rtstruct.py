"""Reading RT Structure Set (RTSTRUCT) contours onto the grid of an image series.

Each selected ROI becomes one segment of a :class:`LabelMap` on the reference grid.

Rasterisation rules (documented because tools differ at the boundary):

* Contour points (LPS mm) are mapped into the reference grid's continuous index space with the
  inverse of its affine, so oblique grids work like axial ones. Voxel centres sit at integer
  indices.
* Every point of a contour must lie within half a slice spacing of one slice plane of the grid;
  otherwise the contour is off-plane (tilted, between slices or outside the volume) and
  :class:`MaskError` names the ROI.
* A voxel belongs to the ROI when its centre is inside by the even-odd rule, taken over all
  contours of the ROI on that slice together: disjoint contours add up, a contour inside another
  cuts a hole (the usual reading of holes drawn as separate contours), i.e. the XOR of the
  filled contours. Centres exactly on an edge follow the half-open rule of scanline fill (left
  and top edges in, right and bottom edges out), so two ROIs sharing an edge do not both claim
  the voxels on it. Away from edges this equals ``skimage.draw.polygon2mask``. Polygons are
  clipped to the grid.
* ROIs are written in selection order, so where ROIs overlap the later ROI wins, unless
  ``overlap="error"``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from radserve.dicom_io.errors import InvalidDicomError, MaskError
from radserve.dicom_io.masks.labelmap import (
    ANATOMICAL_STRUCTURE,
    MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    NEOPLASM,
    ORGAN,
    TISSUE,
    Code,
    LabelMap,
    SegmentInfo,
)
from radserve.dicom_io.reading.instances import read_instance
from radserve.dicom_io.volume import Volume

logger = logging.getLogger(__name__)

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

# DICOM PS3.16 CID 9580 (RT Segmentation Property Category) and CID 9534 (Radiotherapy Target).
RT_TARGET = Code("130041", "DCM", "RT Target")
CLINICAL_TARGET_VOLUME = Code("228792002", "SCT", "CTV")
PLANNING_TARGET_VOLUME = Code("228793007", "SCT", "PTV")
INTERNAL_TARGET_VOLUME = Code("130056", "DCM", "ITV")

# RT ROI Interpreted Type -> (Segmented Property Category, Segmented Property Type).
_CODES_BY_INTERPRETED_TYPE: dict[str, tuple[Code, Code]] = {
    "GTV": (MORPHOLOGICALLY_ABNORMAL_STRUCTURE, NEOPLASM),
    "CTV": (RT_TARGET, CLINICAL_TARGET_VOLUME),
    "PTV": (RT_TARGET, PLANNING_TARGET_VOLUME),
    "ITV": (RT_TARGET, INTERNAL_TARGET_VOLUME),
    "ORGAN": (ANATOMICAL_STRUCTURE, ORGAN),
    "AVOIDANCE": (ANATOMICAL_STRUCTURE, ORGAN),
}
_DEFAULT_CODES = (TISSUE, TISSUE)


@dataclass(frozen=True)
class _Roi:
    """One ROI of the structure set with its closed planar contours (LPS, ``(n, 3)``)."""

    number: int
    name: str
    frame_of_reference_uid: str
    interpreted_type: str
    contours: tuple[npt.NDArray[np.float64], ...]


def list_rois(rtstruct: Dataset | str | Path) -> list[str]:
    """ROI Name of every ROI in the Structure Set ROI Sequence, in file order.

    Raises:
        MaskError: The input is not a readable RT Structure Set.
    """
    ds = _load(rtstruct)
    return [str(item.get("ROIName", "")) for item in ds.get("StructureSetROISequence", [])]


def read_rtstruct(
    rtstruct: Dataset | str | Path,
    reference: Volume,
    *,
    roi_names: Sequence[str] | None = None,
    overlap: Literal["last_wins", "error"] = "last_wins",
) -> LabelMap:
    """Rasterise RTSTRUCT ROIs onto the grid of ``reference``.

    Args:
        rtstruct: The RT Structure Set, as a dataset or a file path.
        reference: The image volume whose grid the label map uses (normally the series the
            contours were drawn on).
        roi_names: ROIs to read, by ROI Name; segment labels follow this order (1, 2, ...).
            By default every ROI with CLOSED_PLANAR contours, in file order.
        overlap: ``"last_wins"`` lets a later ROI overwrite an earlier one where they overlap;
            ``"error"`` raises instead.

    Returns:
        A label map on the reference grid (uint8; uint16 beyond 255 ROIs) with the reference's
        UIDs. An ROI that has no contours, covers no voxel centre or is entirely overwritten
        by later ROIs is left out with a warning; its label stays unused, so the other labels
        keep their place in the selection.

    Raises:
        MaskError: Not an RTSTRUCT, unknown ROI name, Frame of Reference mismatch, off-plane
            contour, or overlapping ROIs with ``overlap="error"``.
    """
    ds = _load(rtstruct)
    rois = _parse_rois(ds)
    selected = _select(rois, roi_names)
    dtype = np.uint8 if len(selected) <= 255 else np.uint16
    labels = np.zeros(reference.shape, dtype=dtype)
    inverse = np.linalg.inv(reference.affine_lps()).astype(np.float64)
    segments: list[SegmentInfo] = []
    names_by_label: dict[int, str] = {}
    for label, roi in enumerate(selected, start=1):
        _check_frame_of_reference(roi, reference)
        if not roi.contours:
            logger.warning("ROI '%s' has no closed planar contours; omitted", roi.name)
            continue
        mask = _rasterise(roi, inverse, reference.shape)
        if not mask.any():
            logger.warning("ROI '%s' covers no voxel centre of the grid; omitted", roi.name)
            continue
        clashes = [names_by_label[int(v)] for v in np.unique(labels[mask]) if v != 0]
        if clashes and overlap == "error":
            raise MaskError(f"ROI '{roi.name}' overlaps ROI(s) {clashes}")
        if clashes:
            logger.info("ROI '%s' overwrites where it overlaps ROI(s) %s", roi.name, clashes)
        labels[mask] = label
        names_by_label[label] = roi.name
        category, type_ = _CODES_BY_INTERPRETED_TYPE.get(roi.interpreted_type, _DEFAULT_CODES)
        description = (
            f"RT ROI Interpreted Type {roi.interpreted_type}" if roi.interpreted_type else None
        )
        segments.append(
            SegmentInfo(
                label=label, name=roi.name, category=category, type=type_, description=description
            )
        )
    present = set(np.unique(labels).tolist())
    for segment in segments:
        if segment.label not in present:
            logger.warning("ROI '%s' is covered entirely by later ROIs; omitted", segment.name)
    kept = tuple(s for s in segments if s.label in present)
    return LabelMap(volume=reference.with_array(labels), segments=kept)


def _load(rtstruct: Dataset | str | Path) -> Dataset:
    if isinstance(rtstruct, Dataset):
        ds = rtstruct
        name = "dataset"
    else:
        path = Path(rtstruct)
        name = path.name
        if not path.is_file():
            raise MaskError(f"{name}: RTSTRUCT file not found")
        try:
            ds = read_instance(path)
        except InvalidDicomError as exc:
            raise MaskError(f"cannot read the RTSTRUCT: {exc}") from exc
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != RT_STRUCTURE_SET_STORAGE and ds.get("Modality") != "RTSTRUCT":
        raise MaskError(f"{name}: not an RT Structure Set (SOP Class UID '{sop_class}')")
    if "StructureSetROISequence" not in ds:
        raise MaskError(f"{name}: RT Structure Set without a Structure Set ROI Sequence")
    return ds


def _parse_rois(ds: Dataset) -> list[_Roi]:
    try:
        types = {
            int(obs.ReferencedROINumber): str(obs.get("RTROIInterpretedType", "") or "")
            for obs in ds.get("RTROIObservationsSequence", [])
        }
        contour_items = {
            int(item.ReferencedROINumber): item.get("ContourSequence", [])
            for item in ds.get("ROIContourSequence", [])
        }
        default_for = ""
        if ds.get("ReferencedFrameOfReferenceSequence"):
            default_for = str(ds.ReferencedFrameOfReferenceSequence[0].get("FrameOfReferenceUID"))
        rois = []
        for item in ds.StructureSetROISequence:
            number = int(item.ROINumber)
            name = str(item.get("ROIName", "") or f"ROI {number}")
            contours = tuple(
                _contour_points(c)
                for c in contour_items.get(number, [])
                if c.get("ContourGeometricType") == "CLOSED_PLANAR"
            )
            rois.append(
                _Roi(
                    number=number,
                    name=name,
                    frame_of_reference_uid=str(
                        item.get("ReferencedFrameOfReferenceUID", "") or default_for
                    ),
                    interpreted_type=types.get(number, "").upper(),
                    contours=tuple(c for c in contours if len(c) >= 3),
                )
            )
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise MaskError(f"RT Structure Set is malformed or truncated ({exc})") from exc
    return rois


def _contour_points(item: Dataset) -> npt.NDArray[np.float64]:
    raw = item.get_item(0x30060050)  # Contour Data, still undecoded when read from a file
    if raw is None:
        raise ValueError("contour without Contour Data")
    value = raw.value
    if isinstance(value, bytes):
        points = np.asarray(value.decode("ascii").replace("\\", " ").split(), dtype=np.float64)
    else:
        points = np.asarray(value, dtype=np.float64).ravel()
    if points.size % 3:
        raise ValueError("Contour Data is not a list of (x, y, z) triplets")
    return points.reshape(-1, 3)


def _select(rois: list[_Roi], roi_names: Sequence[str] | None) -> list[_Roi]:
    if roi_names is None:
        chosen = [roi for roi in rois if roi.contours]
        skipped = [roi.name for roi in rois if not roi.contours]
        if skipped:
            logger.info("ROIs without closed planar contours not read: %s", skipped)
        return chosen
    available = [roi.name for roi in rois]
    if len(set(roi_names)) != len(roi_names):
        raise MaskError(f"roi_names lists an ROI more than once: {list(roi_names)}")
    chosen = []
    for name in roi_names:
        matches = [roi for roi in rois if roi.name == name]
        if not matches:
            raise MaskError(f"ROI '{name}' not in the RT Structure Set; available: {available}")
        if len(matches) > 1:
            raise MaskError(f"ROI name '{name}' is ambiguous: {len(matches)} ROIs share it")
        chosen.append(matches[0])
    return chosen


def _check_frame_of_reference(roi: _Roi, reference: Volume) -> None:
    if not reference.frame_of_reference_uid or not roi.frame_of_reference_uid:
        logger.warning("Frame of Reference of ROI '%s' cannot be checked (UID missing)", roi.name)
        return
    if roi.frame_of_reference_uid != reference.frame_of_reference_uid:
        raise MaskError(
            f"ROI '{roi.name}' is in another Frame of Reference than the reference series"
        )


def _rasterise(
    roi: _Roi, inverse_affine: npt.NDArray[np.float64], shape: tuple[int, int, int]
) -> npt.NDArray[np.bool_]:
    """Even-odd scanline fill of all contours of one ROI at once (no Python loop per pixel)."""
    n_k, n_j, n_i = shape
    starts, ends, slices = [], [], []
    for number, points in enumerate(roi.contours, start=1):
        ijk = points @ inverse_affine[:3, :3].T + inverse_affine[:3, 3]
        k = int(np.rint(ijk[:, 2].mean()))
        distance = float(np.abs(ijk[:, 2] - k).max())
        if distance > 0.5 or not 0 <= k < n_k:
            raise MaskError(
                f"ROI '{roi.name}': contour {number} does not lie on a slice of the reference "
                f"grid (nearest slice index {k} of 0..{n_k - 1}, "
                f"off by up to {distance:.2f} slice spacings)"
            )
        starts.append(ijk[:, :2])
        ends.append(np.roll(ijk[:, :2], -1, axis=0))  # closed: the last point joins the first
        slices.append(np.full(len(ijk), k))
    (x0, y0), (x1, y1) = np.concatenate(starts).T, np.concatenate(ends).T
    edge_slice = np.concatenate(slices)
    # An edge crosses the rows r with min(y) <= r < max(y) (half-open, so a vertex shared by
    # two edges counts once); horizontal edges cross none.
    first_row = np.clip(np.ceil(np.minimum(y0, y1)), 0, n_j).astype(np.int64)
    end_row = np.clip(np.ceil(np.maximum(y0, y1)), 0, n_j).astype(np.int64)
    counts = np.maximum(end_row - first_row, 0)
    mask = np.zeros(shape, dtype=bool)
    if not counts.any():
        return mask
    edge = np.repeat(np.arange(len(counts)), counts)
    rows = first_row[edge] + np.arange(len(edge)) - np.repeat(np.cumsum(counts) - counts, counts)
    x = x0[edge] + (rows - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    # A crossing at x toggles every voxel centre at column >= x (left edges in, right edges out).
    columns = np.clip(np.ceil(x), 0, n_i).astype(np.int64)
    k_lo, k_hi = int(edge_slice.min()), int(edge_slice.max()) + 1
    r_lo, r_hi = int(rows.min()), int(rows.max()) + 1
    box = (k_hi - k_lo, r_hi - r_lo, n_i + 1)
    flat = np.ravel_multi_index((edge_slice[edge] - k_lo, rows - r_lo, columns), box)
    toggles = (np.bincount(flat, minlength=int(np.prod(box))) & 1).astype(np.uint8)
    parity = np.bitwise_xor.accumulate(toggles.reshape(box), axis=2)[:, :, :n_i]
    mask[k_lo:k_hi, r_lo:r_hi] = parity.astype(bool)
    return mask
