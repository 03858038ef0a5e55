"""Radiomics in the inference pipeline: each model's parameter set and the shared process pool.

A model whose manifest names ``radiomics_parameter_set`` gets a :class:`RadiomicsRunner` when
it is loaded, so that a missing or invalid parameter set stops the server at start rather
than failing every job. The manifest names a set in one of two ways:

* a name (``default``): ``<package>/<name>.yaml`` when the package ships its own set, else
  ``configs/radiomics/<name>.yaml``;
* a file name or relative path ending in ``.yaml`` / ``.yml``: relative to the package
  folder, so that the package stays portable.

:meth:`RadiomicsRunner.run` extracts every segment that has voxels with ``on_error="skip"``:
a segment PyRadiomics rejects (one voxel, a flat slab) gets no features and says why, and
never fails the job. Neither does a segment so large that its extraction would hold the job
for long: after ``timeout_s`` the extraction stops (the pool's running tasks are terminated),
and the segments that did not finish get no features, with the reason. Extraction runs in
the caller's thread (``workers`` 0) or on a :class:`~radserve.radiomics.pool.RadiomicsPool`
of worker processes shared by every model; a pool whose worker died (out of memory) is
replaced, and the job that saw it fails with a clear message.

A job's feature table is :func:`radserve.radiomics.tables.feature_table`;
:func:`feature_csv` turns it into PyRadiomics' batch CSV.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radserve.dicom_io import Code, LabelMap, Volume
from radserve.radiomics.errors import (
    ParameterSetError,
    RadiomicsError,
    RadiomicsStepError,
    RadiomicsTimeoutError,
    WorkerStoppedError,
)
from radserve.radiomics.extract import ExtractionOptions, extract_features
from radserve.radiomics.features import Feature, SegmentFeatures, SkippedFeature
from radserve.radiomics.params import PARAMETER_SET_DIR, ParameterSet, load_parameter_set
from radserve.radiomics.pool import RadiomicsPool
from radserve.radiomics.tables import CaseFeatures, csv_rows

logger = logging.getLogger(__name__)

_YAML_SUFFIXES = (".yaml", ".yml")

#: How a segment stopped at the radiomics time limit is skipped (followed by the limit).
TIME_LIMIT_REASON = "radiomics stopped: not finished within the time limit"


def without_features(segments: Sequence[SegmentFeatures]) -> dict[str, int]:
    """How many segments got no features, by cause: ``time_limit`` or ``rejected``."""
    counts: dict[str, int] = {}
    for segment in segments:
        if segment.features:
            continue
        stopped = any(
            s.name == "*" and s.reason.startswith(TIME_LIMIT_REASON) for s in segment.skipped
        )
        cause = "time_limit" if stopped else "rejected"
        counts[cause] = counts.get(cause, 0) + 1
    return counts


@dataclass(frozen=True)
class RadiomicsOptions:
    """How the server computes radiomics.

    Attributes:
        enabled: Compute features for models whose manifest names a parameter set.
        workers: Worker processes shared by every model (0: in the job's worker thread).
        timeout_s: Longest extraction per job; ``None`` for no limit. Without a pool it is
            checked between segments and filtered images only.
    """

    enabled: bool = True
    workers: int = 0
    timeout_s: float | None = 600.0

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("radiomics workers must be 0 or more")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError("the radiomics timeout must be positive")


def resolve_parameter_set(package_dir: Path, reference: str) -> ParameterSet:
    """Load the parameter set a manifest names (see the module docstring).

    Raises:
        ParameterSetError: No such set, or one PyRadiomics rejects.
    """
    path = Path(reference)
    if path.suffix.lower() in _YAML_SUFFIXES or len(path.parts) > 1:
        return load_parameter_set(path if path.is_absolute() else package_dir / path)
    if path.name != reference or reference in ("", ".", ".."):
        raise ParameterSetError(f"not a parameter set name: {reference!r}")
    return load_parameter_set(reference, search_dirs=[package_dir, PARAMETER_SET_DIR])


class RadiomicsRunner:
    """A model's radiomics: its parameter set, run in-process or on a shared pool.

    Args:
        parameter_set: The loaded parameter set.
        pool: Worker processes; ``None`` runs in the calling thread.
        timeout_s: Longest extraction per call (see :class:`RadiomicsOptions`).
    """

    def __init__(
        self,
        parameter_set: ParameterSet,
        *,
        pool: RadiomicsPool | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.parameter_set = parameter_set
        self.pool = pool
        self.timeout_s = timeout_s

    def run(
        self, volume: Volume, labelmap: LabelMap, *, deadline: float | None = None
    ) -> list[SegmentFeatures]:
        """The features of every segment of ``labelmap`` that has voxels (none: ``[]``).

        A segment PyRadiomics rejects is returned without features, with the reason; so is
        a segment that has not finished after ``timeout_s`` or at ``deadline`` (a
        :func:`time.monotonic` time, e.g. the job's), whichever comes first.

        Raises:
            RadiomicsStepError: The extraction failed as a whole (a worker process died,
                the label map is not on the image grid).
        """
        if not labelmap.present_labels():
            return []
        pool = self.pool.executor() if self.pool is not None else None
        if self.timeout_s is not None:
            own_deadline = time.monotonic() + self.timeout_s
            deadline = own_deadline if deadline is None else min(deadline, own_deadline)
        try:
            return extract_features(
                volume,
                labelmap,
                parameter_set=self.parameter_set,
                options=ExtractionOptions(pool=pool, on_error="skip", deadline=deadline),
            )
        except RadiomicsTimeoutError as exc:
            if self.pool is not None and pool is not None:
                self.pool.discard(pool)
            return self._unfinished(labelmap, exc)
        except WorkerStoppedError as exc:
            if self.pool is not None and pool is not None:
                self.pool.discard(pool)
            raise RadiomicsStepError(
                "a radiomics worker process stopped (out of memory?); the pool was restarted"
            ) from exc
        except RadiomicsError as exc:
            raise RadiomicsStepError(f"radiomics failed: {exc}") from exc

    def _unfinished(
        self, labelmap: LabelMap, timeout: RadiomicsTimeoutError
    ) -> list[SegmentFeatures]:
        limit = f"{self.timeout_s:g} s" if self.timeout_s is not None else "the job's deadline"
        reason = f"{TIME_LIMIT_REASON} ({limit})"
        logger.warning(
            "radiomics (%s) stopped at its time limit (%s): %d segment(s) without features",
            self.parameter_set.identifier,
            limit,
            len(timeout.unfinished),
        )
        names = {segment.label: segment.name for segment in labelmap.segments}
        by_label = {s.label: s for s in timeout.completed}
        for label in timeout.unfinished:
            by_label[label] = SegmentFeatures.failed(
                label=label,
                segment_name=names[label],
                parameter_set=self.parameter_set.identifier,
                reason=reason,
            )
        return [by_label[label] for label in sorted(by_label)]


# --- the job's feature table ------------------------------------------------------------


def segments_from_table(records: Sequence[Mapping[str, Any]]) -> list[SegmentFeatures]:
    """Segments back from :func:`~radserve.radiomics.tables.feature_table` records."""
    return [
        SegmentFeatures(
            label=int(record["label"]),
            segment_name=str(record["segment"]),
            parameter_set=str(record["parameter_set"]),
            features=tuple(
                Feature(
                    name=str(f["name"]),
                    value=float(f["value"]),
                    ibsi_code=f.get("ibsi_code"),
                    unit=Code(str(f["unit"]), "UCUM", str(f["unit"])),
                    code=Code(
                        str(f["code"]["value"]),
                        str(f["code"]["scheme"]),
                        str(f["code"]["meaning"]),
                    ),
                )
                for f in record.get("features", [])
            ),
            skipped=tuple(
                SkippedFeature(str(k["name"]), str(k["reason"])) for k in record.get("skipped", [])
            ),
            diagnostics=tuple((str(k), str(v)) for k, v in record.get("diagnostics", {}).items()),
        )
        for record in records
    ]


def feature_csv(records: Sequence[Mapping[str, Any]], *, case: str, image: str, mask: str) -> str:
    """The feature table as PyRadiomics' batch CSV (one row per segment).

    Args:
        records: The feature table.
        case: The ``Case`` column (the job id).
        image: The ``Image`` column (the source series).
        mask: The ``Mask`` column (the SEG).
    """
    segments = tuple(segments_from_table(records))
    header, rows = csv_rows([CaseFeatures(case=case, image=image, mask=mask, segments=segments)])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
