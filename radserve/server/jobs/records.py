"""What a job is: its errors, states and stages, the job record, its results, exports and
radiomics summary. Stored by :mod:`radserve.server.jobs.db`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from radserve.inference import InferenceError


class JobError(InferenceError):
    """Root of the job queue's errors."""


class JobNotFoundError(JobError):
    """No job has the requested id."""


class FeatureTableNotFoundError(JobNotFoundError):
    """The job has no feature table (its model computes no radiomics, or it is not done)."""


class QueueError(JobError):
    """The queue's database failed (disk, corruption); not the client's fault."""


class QueueFullError(JobError):
    """The queue already holds as many queued jobs as it may; nothing was added."""


class JobState(enum.StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    EXPORTING = "exporting"
    DONE = "done"
    FAILED = "failed"


class ExportState(enum.StrEnum):
    """Where one destination's copy of a job's results is."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"


class Stage(enum.StrEnum):
    """The stage a job is in (finer than its state)."""

    QUEUED = "queued"
    FETCHING = "fetching"
    INFERENCE = "inference"
    STORING = "storing"
    EXPORTING = "exporting"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class JobSpec:
    """What a job runs.

    Attributes:
        study_instance_uid: The study.
        series_instance_uid: The series; ``None`` lets the worker pick the study's series
            that the model accepts (and records it).
        model_name: The model package's name.
        model_version: Its version.
        source: ``local`` (the server's store) or the name of a configured pull source.
        destinations: Names of the destinations to send the results to.
        origin: ``api`` (``POST /jobs``) or ``routing`` (created for a received series).
    """

    study_instance_uid: str
    series_instance_uid: str | None
    model_name: str
    model_version: str
    source: str = "local"
    destinations: tuple[str, ...] = ()
    origin: str = "api"


@dataclass(frozen=True)
class ResultInstance:
    """One result instance of a job: ``kind`` is ``SEG``, ``SR`` or ``SC``."""

    kind: str
    series_instance_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class ExportRecord:
    """One destination's copy of a job's results.

    Attributes:
        destination: The destination's name.
        state: pending, sending or delivered.
        attempts: STOW-RS attempts made.
        next_attempt_at: When the next attempt is due (Unix seconds; pending only).
        last_error: Why the last attempt failed.
        delivered_at: When the destination acknowledged every instance.
    """

    destination: str
    state: ExportState
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    delivered_at: float | None


@dataclass(frozen=True)
class SegmentFeatureSummary:
    """One segment of a job's feature table, in short.

    Attributes:
        label: The segment's label.
        segment: Its name (Segment Label).
        volume_mm3: Its volume.
        feature_count: Features with a value.
        skipped: ``(name, reason)`` of the features without one (``*``: the whole segment).
    """

    label: int
    segment: str
    volume_mm3: float | None
    feature_count: int
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class JobFeatures:
    """A job's radiomic features, as stored with its results.

    Attributes:
        parameter_set: Identifier of the parameter set (name and hash).
        summary: One entry per segment.
        segments_json: The whole feature table
            (:func:`~radserve.radiomics.tables.feature_table`) as JSON.
    """

    parameter_set: str
    summary: tuple[SegmentFeatureSummary, ...]
    segments_json: str = "[]"


@dataclass(frozen=True)
class Job:
    """A job as the queue holds it (times in Unix seconds); ``features`` holds the summary
    of its feature table (without the table itself); ``conformance`` the conformance gate's
    findings on its results (see :meth:`ConformanceFindings.as_json
    <radserve.server.jobs.conformance.ConformanceFindings.as_json>`)."""

    id: str
    spec: JobSpec
    state: JobState
    stage: Stage
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    provider: str | None
    timings_s: Mapping[str, float]
    error: str | None
    results: tuple[ResultInstance, ...]
    exports: tuple[ExportRecord, ...] = field(default=())
    features: JobFeatures | None = None
    conformance: Mapping[str, Any] | None = None
