"""The conformance gate: every result of a job is checked before it is stored, served or
exported.

Two checks, on each job's results:

* structural (:func:`~radserve.dicom_io.structural_problems`): always on and cheap; the
  results against each other and against the source series;
* ``dciodvfy`` on the bytes as they will be stored (the staged files), each object against
  its IOD, several at a time; an error line the source's own report holds verbatim is
  inherited from the source and counts apart (:func:`~radserve.dicom_io.introduced_errors`).
  The source report is the first source instance's, made once per series.

With mode ``block`` (the default) a problem or an introduced error fails the job before
anything is stored; ``warn`` stores and exports the results and records the findings on
the job; ``off`` checks nothing. Without ``dciodvfy`` installed the structural checks still
run, and the findings say the validator was not run (logged once at start).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from radserve.dicom_io import (
    ImageSeries,
    ValidatorReport,
    find_dciodvfy,
    introduced_errors,
    redacted,
    run_dciodvfy,
    structural_problems,
)
from radserve.inference import InferenceError

logger = logging.getLogger(__name__)

_PARALLEL = 4  # validator processes at once (each is a short, single-threaded run)
_SHOWN = 10  # validator lines kept per object


class GateMode(enum.StrEnum):
    """What the gate does with a result that fails it."""

    BLOCK = "block"
    WARN = "warn"
    OFF = "off"


class ConformanceError(InferenceError):
    """A job's results failed the conformance gate (mode ``block``); nothing was stored.

    Attributes:
        findings: What the gate found.
    """

    def __init__(self, findings: ConformanceFindings) -> None:
        super().__init__(findings.summary())
        self.findings = findings


@dataclass(frozen=True)
class ObjectFindings:
    """What the gate found in one result object.

    Attributes:
        kind: ``SEG``, ``SR`` or ``SC``.
        sop_instance_uid: The object.
        introduced: Validator error lines radserve introduced, values redacted (the first
            few of ``introduced_count``).
        introduced_count: How many error lines radserve introduced.
        inherited: How many error lines the object inherits from its source.
    """

    kind: str
    sop_instance_uid: str
    introduced: tuple[str, ...]
    introduced_count: int
    inherited: int


@dataclass(frozen=True)
class ConformanceFindings:
    """The gate's findings on one job's results.

    Attributes:
        mode: The gate's mode when it ran.
        problems: Structural problems (see :func:`~radserve.dicom_io.structural_problems`).
        objects: Per object: introduced and inherited validator errors.
        validated: Whether ``dciodvfy`` ran.
        seconds: Time the gate took.
    """

    mode: GateMode
    problems: tuple[str, ...] = ()
    objects: tuple[ObjectFindings, ...] = ()
    validated: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """No structural problem and no introduced validator error."""
        return not self.problems and not any(o.introduced_count for o in self.objects)

    def errors_by_kind(self) -> dict[str, int]:
        """Introduced errors and structural problems, counted by object kind."""
        counts: dict[str, int] = {}
        for found in self.objects:
            if found.introduced_count:
                counts[found.kind] = counts.get(found.kind, 0) + found.introduced_count
        if self.problems:
            counts["structure"] = len(self.problems)
        return counts

    def summary(self) -> str:
        """One PHI-free paragraph: what failed, the first validator lines."""
        lines = list(self.problems)
        for found in self.objects:
            lines += [f"{found.kind}: {line}" for line in found.introduced]
        shown = "; ".join(lines[:_SHOWN])
        more = f" (and {len(lines) - _SHOWN} more)" if len(lines) > _SHOWN else ""
        return f"results failed the conformance gate: {shown}{more}"

    def as_json(self) -> dict[str, object]:
        """The findings as ``GET /jobs/{id}`` shows them."""
        return {
            "mode": self.mode.value,
            "passed": self.passed,
            "validated": self.validated,
            "seconds": round(self.seconds, 3),
            "problems": list(self.problems),
            "objects": [
                {
                    "kind": o.kind,
                    "sop_instance_uid": o.sop_instance_uid,
                    "introduced": list(o.introduced),
                    "introduced_count": o.introduced_count,
                    "inherited": o.inherited,
                }
                for o in self.objects
                if o.introduced_count or o.inherited
            ],
        }


@dataclass
class ConformanceGate:
    """The gate of one server (see the module).

    Args:
        mode: ``block``, ``warn`` or ``off``.
        executable: ``dciodvfy``'s path; found on ``PATH`` when ``None``.
    """

    mode: GateMode = GateMode.BLOCK
    executable: str | None = None
    _source_errors: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.executable = self.executable or find_dciodvfy()
        if self.mode is not GateMode.OFF and self.executable is None:
            logger.warning(
                "conformance gate: dciodvfy not found (Debian package dicom3tools); results "
                "get the structural checks only"
            )

    def check(
        self,
        series: ImageSeries,
        staged: Sequence[tuple[Dataset, Path]],
        *,
        source_file: Path,
    ) -> ConformanceFindings:
        """Check a job's results, each data set with its encoded file (``staged``), against
        their source ``series`` (one of whose files is ``source_file``).

        Raises:
            ConformanceError: Mode ``block`` and the results failed.
        """
        if self.mode is GateMode.OFF:
            return ConformanceFindings(mode=self.mode)
        begin = time.perf_counter()
        problems = tuple(structural_problems([ds for ds, _ in staged], series))
        objects: tuple[ObjectFindings, ...] = ()
        if self.executable is not None:
            source = self._source_report(str(series.headers[0].SeriesInstanceUID), source_file)
            with ThreadPoolExecutor(max_workers=_PARALLEL) as pool:
                reports = list(pool.map(self._validate, [path for _, path in staged]))
            objects = tuple(
                _object_findings(ds, report, source)
                for (ds, _), report in zip(staged, reports, strict=True)
            )
        findings = ConformanceFindings(
            mode=self.mode,
            problems=problems,
            objects=objects,
            validated=self.executable is not None,
            seconds=time.perf_counter() - begin,
        )
        if not findings.passed and self.mode is GateMode.BLOCK:
            raise ConformanceError(findings)
        return findings

    def _validate(self, path: Path) -> ValidatorReport:
        return run_dciodvfy(path, executable=self.executable)

    def _source_report(self, series_uid: str, source_file: Path) -> tuple[str, ...]:
        if series_uid not in self._source_errors:
            if len(self._source_errors) > 256:
                self._source_errors.clear()
            self._source_errors[series_uid] = tuple(self._validate(source_file).errors)
        return self._source_errors[series_uid]


def _object_findings(
    ds: Dataset, report: ValidatorReport, source_errors: tuple[str, ...]
) -> ObjectFindings:
    introduced = introduced_errors(report, source_errors)
    modality = str(ds.get("Modality", ""))
    return ObjectFindings(
        kind=modality if modality in ("SEG", "SR") else "SC",
        sop_instance_uid=str(ds.SOPInstanceUID),
        introduced=tuple(redacted(line) for line in introduced[:_SHOWN]),
        introduced_count=len(introduced),
        inherited=len(report.errors) - len(introduced),
    )
