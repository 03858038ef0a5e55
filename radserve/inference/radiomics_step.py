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
never fails the job. Extraction runs in the caller's thread (``workers`` 0) or on a
:class:`RadiomicsPool` of worker processes shared by every model; a pool whose worker died
(out of memory) is replaced, and the job that saw it fails with a clear message.

A job's feature table is :func:`radserve.radiomics.tables.feature_table`;
:func:`feature_csv` turns it into PyRadiomics' batch CSV.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radserve.dicom_io.labelmap import Code, LabelMap
from radserve.dicom_io.volume import Volume
from radserve.inference.errors import InferenceError
from radserve.radiomics.errors import ParameterSetError, RadiomicsError
from radserve.radiomics.extract import extract_features, process_pool
from radserve.radiomics.features import Feature, SegmentFeatures, SkippedFeature
from radserve.radiomics.params import PARAMETER_SET_DIR, ParameterSet, load_parameter_set
from radserve.radiomics.tables import CaseFeatures, csv_rows

logger = logging.getLogger(__name__)

_YAML_SUFFIXES = (".yaml", ".yml")


class RadiomicsStepError(InferenceError):
    """Radiomics failed for a job as a whole (not one segment PyRadiomics rejects)."""


@dataclass(frozen=True)
class RadiomicsOptions:
    """How the server computes radiomics.

    Attributes:
        enabled: Compute features for models whose manifest names a parameter set.
        workers: Worker processes shared by every model (0: in the job's worker thread).
    """

    enabled: bool = True
    workers: int = 0

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("radiomics workers must be 0 or more")


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


class RadiomicsPool:
    """Worker processes for extraction, started on first use and shared by every model.

    Args:
        workers: Processes (at least 1).
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a radiomics pool needs at least one worker")
        self.workers = workers
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    def executor(self) -> Executor:
        """The pool (started now if it is not yet).

        Raises:
            RadiomicsStepError: The pool was shut down.
        """
        with self._lock:
            if self._closed:
                raise RadiomicsStepError("the radiomics pool is shut down")
            if self._executor is None:
                self._executor = process_pool(self.workers)
            return self._executor

    def discard(self, broken: Executor) -> None:
        """Drop a pool whose worker died; the next :meth:`executor` starts a new one."""
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop the worker processes (at server stop); waits for running extractions."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


class RadiomicsRunner:
    """A model's radiomics: its parameter set, run in-process or on a shared pool.

    Args:
        parameter_set: The loaded parameter set.
        pool: Worker processes; ``None`` runs in the calling thread.
    """

    def __init__(self, parameter_set: ParameterSet, *, pool: RadiomicsPool | None = None) -> None:
        self.parameter_set = parameter_set
        self.pool = pool

    def run(self, volume: Volume, labelmap: LabelMap) -> list[SegmentFeatures]:
        """The features of every segment of ``labelmap`` that has voxels (none: ``[]``).

        A segment PyRadiomics rejects is returned without features, with the reason.

        Raises:
            RadiomicsStepError: The extraction failed as a whole (a worker process died,
                the label map is not on the image grid).
        """
        if not labelmap.present_labels():
            return []
        executor = self.pool.executor() if self.pool is not None else None
        try:
            return extract_features(
                volume,
                labelmap,
                parameter_set=self.parameter_set,
                executor=executor,
                on_error="skip",
            )
        except BrokenProcessPool as exc:
            if self.pool is not None and executor is not None:
                self.pool.discard(executor)
            raise RadiomicsStepError(
                "a radiomics worker process stopped (out of memory?); the pool was restarted"
            ) from exc
        except RadiomicsError as exc:
            raise RadiomicsStepError(f"radiomics failed: {exc}") from exc


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
