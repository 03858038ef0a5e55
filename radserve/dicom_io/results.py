"""The DICOM result set for one segmented series: measurements, SEG, SR and overlay SC."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import JPEGLSLossless

from radserve.dicom_io.algorithm import AlgorithmIdentity
from radserve.dicom_io.masks.labelmap import LabelMap
from radserve.dicom_io.masks.measurements import SegmentMeasurements, measure_segments
from radserve.dicom_io.reading.series import ImageSeries
from radserve.dicom_io.sc.overlay import write_overlay_sc
from radserve.dicom_io.seg.types import SegmentationTypeChoice, choose_segmentation_type
from radserve.dicom_io.seg.writing import write_seg
from radserve.dicom_io.sr.content import CodingSchemeIdentification, NumericMeasurement
from radserve.dicom_io.sr.writing import SrOptions, write_sr

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResultSet:
    """What radserve sends back to the PACS for one series.

    A series in which the model finds nothing is a result too ("no findings"): there is no
    SEG (a SEG must hold at least one segment frame), the SR says each structure the model
    looks for is absent, and the overlay is one key image whose legend says so.

    Attributes:
        measurements: Per-segment measurements (also in the SR); empty for no findings.
        seg: The DICOM SEG; ``None`` when no segment has any voxel.
        sr: The TID 1500 Comprehensive 3D SR.
        overlay: The burned-in overlay Secondary Capture instances.
    """

    measurements: list[SegmentMeasurements]
    seg: Dataset | None
    sr: Dataset
    overlay: list[Dataset]

    @property
    def no_findings(self) -> bool:
        """True when the model found no segment in the series."""
        return self.seg is None

    def datasets(self) -> list[Dataset]:
        """Every result instance: SEG (when there is one), SR, then the overlay."""
        seg = [] if self.seg is None else [self.seg]
        return [*seg, self.sr, *self.overlay]

    def save(self, out_dir: Path) -> dict[str, list[Path]]:
        """Write the instances as DICOM files under ``out_dir/{seg,sr,overlay}/``."""
        groups = {
            "SEG": ("seg", [] if self.seg is None else [self.seg]),
            "SR": ("sr", [self.sr]),
            "SC": ("overlay", self.overlay),
        }
        written: dict[str, list[Path]] = {}
        for kind, (folder, datasets) in groups.items():
            written[kind] = []
            if not datasets:
                continue
            target = out_dir / folder
            target.mkdir(parents=True, exist_ok=True)
            for ds in datasets:
                path = target / f"{ds.SOPInstanceUID}.dcm"
                ds.save_as(path, enforce_file_format=True)
                written[kind].append(path)
        return written


def build_results(
    source: ImageSeries,
    labelmap: LabelMap,
    *,
    algorithm: AlgorithmIdentity,
    overlay_all_slices: bool = False,
    extra_measurements: Mapping[int, Sequence[NumericMeasurement]] | None = None,
    coding_schemes: Sequence[CodingSchemeIdentification] = (),
    overlay_transfer_syntax_uid: str = JPEGLSLossless,
    segmentation_type: SegmentationTypeChoice = "auto",
) -> ResultSet:
    """Measure each segment and write the SEG, SR and overlay SC for a label map.

    When no segment has any voxel the result is a "no findings" set (see :class:`ResultSet`).

    Args:
        source: The segmented image series.
        labelmap: Labels on the grid of ``source``.
        algorithm: The model that produced the label map.
        overlay_all_slices: Write an overlay instance for every source slice, not only the
            slices with a segment.
        extra_measurements: Further SR measurements per label (e.g. radiomic features);
            ignored for no findings.
        coding_schemes: Identifications of the non-standard coding schemes the extra
            measurements may use (see :func:`~radserve.dicom_io.sr.writing.write_sr`).
        overlay_transfer_syntax_uid: Transfer syntax of the overlay instances (see
            :func:`~radserve.dicom_io.sc.overlay.write_overlay_sc`).
        segmentation_type: The SEG's type, or ``auto`` (see
            :func:`~radserve.dicom_io.seg.types.choose_segmentation_type`).
    """
    measurements = measure_segments(source.volume, labelmap)
    _, rows, columns = source.volume.shape
    seg_type = choose_segmentation_type(segmentation_type, rows, columns)
    seg = (
        write_seg(source, labelmap, algorithm=algorithm, segmentation_type=seg_type)
        if measurements
        else None
    )
    sr = write_sr(
        source,
        seg,
        labelmap,
        measurements,
        algorithm=algorithm,
        options=SrOptions(
            extra_measurements=extra_measurements if seg is not None else None,
            coding_schemes=coding_schemes,
        ),
    )
    overlay = write_overlay_sc(
        source,
        labelmap,
        algorithm=algorithm,
        only_segmented_slices=not overlay_all_slices,
        transfer_syntax_uid=overlay_transfer_syntax_uid,
    )
    if seg is None:
        logger.info("results: no findings; SR + %d overlay key image", len(overlay))
    else:
        logger.info(
            "results: %d segments measured, %s SEG + SR + %d overlay instances",
            len(measurements),
            seg_type,
            len(overlay),
        )
    return ResultSet(measurements=measurements, seg=seg, sr=sr, overlay=overlay)
