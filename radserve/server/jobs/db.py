"""The job database ``jobs.sqlite3``: its one owner. The schema (tables ``jobs``,
``exports``, ``job_features`` and ``routing_candidates``), the mapping of rows to
:class:`~radserve.server.jobs.records.Job`, and every SQL statement on it: the queue's
operations live in :mod:`radserve.server.jobs.queue` and call the connection this module
opens and its job statements; export and routing call the functions at the end of this
module.

``job_features`` holds, per job of a model with radiomics, the parameter set, a compact
per-segment summary (shown with the job) and the whole feature table as JSON (served by
``GET /jobs/{id}/features``); it is written in the transaction that records the results.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from radserve.server.jobs.records import (
    ExportRecord,
    ExportState,
    Job,
    JobFeatures,
    JobSpec,
    JobState,
    QueueError,
    ResultInstance,
    SegmentFeatureSummary,
    Stage,
)

JOBS_FILE = "jobs.sqlite3"


JOB_COLUMNS = (
    "id, state, stage, origin, study_instance_uid, series_instance_uid, model_name, "
    "model_version, source, destinations, created_at, updated_at, started_at, finished_at, "
    "attempts, provider, timings, error, results, conformance"
)


SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      id TEXT NOT NULL UNIQUE,
      state TEXT NOT NULL,
      stage TEXT NOT NULL,
      origin TEXT NOT NULL,
      study_instance_uid TEXT NOT NULL,
      series_instance_uid TEXT,
      model_name TEXT NOT NULL,
      model_version TEXT NOT NULL,
      source TEXT NOT NULL,
      destinations TEXT NOT NULL,
      created_at REAL NOT NULL,
      updated_at REAL NOT NULL,
      started_at REAL,
      finished_at REAL,
      not_before REAL NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      lease_owner TEXT,
      lease_expires REAL,
      provider TEXT,
      timings TEXT NOT NULL DEFAULT '{}',
      error TEXT,
      results TEXT NOT NULL DEFAULT '[]',
      solo INTEGER NOT NULL DEFAULT 0,
      crashes INTEGER NOT NULL DEFAULT 0,
      conformance TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, not_before, seq)",
    "CREATE INDEX IF NOT EXISTS jobs_series ON jobs (series_instance_uid, model_name)",
    "CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_instance_uid)",
    """CREATE TABLE IF NOT EXISTS exports (
      job_id TEXT NOT NULL REFERENCES jobs (id),
      destination TEXT NOT NULL,
      state TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      next_attempt_at REAL NOT NULL,
      last_error TEXT,
      delivered_at REAL,
      created_at REAL NOT NULL,
      PRIMARY KEY (job_id, destination)
    )""",
    "CREATE INDEX IF NOT EXISTS exports_due ON exports (state, next_attempt_at)",
    """CREATE TABLE IF NOT EXISTS job_features (
      job_id TEXT PRIMARY KEY REFERENCES jobs (id),
      parameter_set TEXT NOT NULL,
      summary TEXT NOT NULL,
      segments TEXT NOT NULL,
      created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS routing_candidates (
      series_instance_uid TEXT PRIMARY KEY,
      study_instance_uid TEXT NOT NULL,
      last_received_at REAL NOT NULL
    )""",
)


# Columns added after the first release: (name, definition), added to an older database.
ADDED_JOB_COLUMNS = (
    ("solo", "INTEGER NOT NULL DEFAULT 0"),
    ("crashes", "INTEGER NOT NULL DEFAULT 0"),
    ("conformance", "TEXT"),
)


def add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a jobs table made by an earlier version up to :data:`SCHEMA`."""
    present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for name, definition in ADDED_JOB_COLUMNS:
        if name not in present:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")


class Database:
    """One SQLite connection shared by threads, serialised by a lock.

    Args:
        path: The database file (created if missing).

    Raises:
        QueueError: The database cannot be opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            raise QueueError(f"job database cannot be opened ({exc})") from exc

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed when the block ends."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise QueueError(f"job database write failed ({exc})") from exc

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection, for queries."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise QueueError(f"job database query failed ({exc})") from exc

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


def exports_of(
    db: sqlite3.Connection, job_ids: Sequence[str]
) -> dict[str, tuple[ExportRecord, ...]]:
    if not job_ids:
        return {}
    found: dict[str, list[ExportRecord]] = {}
    marks = ", ".join("?" for _ in job_ids)
    rows = db.execute(
        "SELECT job_id, destination, state, attempts, next_attempt_at, last_error, delivered_at "
        f"FROM exports WHERE job_id IN ({marks}) ORDER BY destination",
        list(job_ids),
    ).fetchall()
    for job_id, destination, state, attempts, next_at, error, delivered in rows:
        found.setdefault(job_id, []).append(
            ExportRecord(
                destination=destination,
                state=ExportState(state),
                attempts=int(attempts),
                next_attempt_at=next_at if state != ExportState.DELIVERED else None,
                last_error=error,
                delivered_at=delivered,
            )
        )
    return {job_id: tuple(records) for job_id, records in found.items()}


def features_of(db: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, JobFeatures]:
    """The feature summaries of jobs (without the tables), by job id."""
    if not job_ids:
        return {}
    marks = ", ".join("?" for _ in job_ids)
    rows = db.execute(
        f"SELECT job_id, parameter_set, summary FROM job_features WHERE job_id IN ({marks})",
        list(job_ids),
    ).fetchall()
    return {
        job_id: JobFeatures(parameter_set=parameter_set, summary=summary_from_json(summary))
        for job_id, parameter_set, summary in rows
    }


def summary_to_json(summary: Sequence[SegmentFeatureSummary]) -> str:
    """The summary as stored."""
    return json.dumps(
        [
            {
                "label": s.label,
                "segment": s.segment,
                "volume_mm3": s.volume_mm3,
                "feature_count": s.feature_count,
                "skipped": [list(k) for k in s.skipped],
            }
            for s in summary
        ],
        allow_nan=False,
    )


def summary_from_json(text: str) -> tuple[SegmentFeatureSummary, ...]:
    """The summary back from storage."""
    return tuple(
        SegmentFeatureSummary(
            label=int(item["label"]),
            segment=str(item["segment"]),
            volume_mm3=item["volume_mm3"],
            feature_count=int(item["feature_count"]),
            skipped=tuple((str(name), str(reason)) for name, reason in item["skipped"]),
        )
        for item in json.loads(text)
    )


def job_from_row(
    row: Sequence[Any],
    exports: tuple[ExportRecord, ...],
    features: JobFeatures | None = None,
) -> Job:
    (
        job_id,
        state,
        stage,
        origin,
        study,
        series,
        model_name,
        model_version,
        source,
        destinations,
        created_at,
        updated_at,
        started_at,
        finished_at,
        attempts,
        provider,
        timings,
        error,
        results,
        conformance,
    ) = row
    spec = JobSpec(
        study_instance_uid=study,
        series_instance_uid=series,
        model_name=model_name,
        model_version=model_version,
        source=source,
        destinations=tuple(json.loads(destinations)),
        origin=origin,
    )
    return Job(
        id=job_id,
        spec=spec,
        state=JobState(state),
        stage=Stage(stage),
        created_at=created_at,
        updated_at=updated_at,
        started_at=started_at,
        finished_at=finished_at,
        attempts=int(attempts),
        provider=provider,
        timings_s=json.loads(timings),
        error=error,
        results=tuple(ResultInstance(**item) for item in json.loads(results)),
        exports=exports,
        features=features,
        conformance=json.loads(conformance) if conformance else None,
    )


# --- jobs: the queue's statements ------------------------------------------------------


def insert_job(db: sqlite3.Connection, spec: JobSpec, now: float) -> str:
    """Insert a queued job for ``spec``; its new id."""
    job_id = uuid.uuid4().hex
    db.execute(
        "INSERT INTO jobs (id, state, stage, origin, study_instance_uid, series_instance_uid, "
        "model_name, model_version, source, destinations, created_at, updated_at, not_before) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            JobState.QUEUED,
            Stage.QUEUED,
            spec.origin,
            spec.study_instance_uid,
            spec.series_instance_uid,
            spec.model_name,
            spec.model_version,
            spec.source,
            json.dumps(list(spec.destinations)),
            now,
            now,
            now,
        ),
    )
    return job_id


def fail_job(db: sqlite3.Connection, job_id: str, error: str, now: float) -> None:
    """Mark a job failed with ``error`` (which must not hold PHI)."""
    db.execute(
        "UPDATE jobs SET state = ?, stage = ?, error = ?, finished_at = ?, updated_at = ?, "
        "lease_owner = NULL, lease_expires = NULL WHERE id = ?",
        (JobState.FAILED, Stage.FAILED, error, now, now, job_id),
    )


def put_features(
    db: sqlite3.Connection, job_id: str, features: JobFeatures | None, now: float
) -> None:
    """Record a job's feature table, replacing an earlier one (removing it for ``None``)."""
    if features is None:
        db.execute("DELETE FROM job_features WHERE job_id = ?", (job_id,))
        return
    db.execute(
        "INSERT INTO job_features (job_id, parameter_set, summary, segments, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET "
        "parameter_set = excluded.parameter_set, summary = excluded.summary, "
        "segments = excluded.segments, created_at = excluded.created_at",
        (
            job_id,
            features.parameter_set,
            summary_to_json(features.summary),
            features.segments_json,
            now,
        ),
    )


def scalar(db: sqlite3.Connection, sql: str, value: str) -> Any:
    """The first column of the first row of a one-parameter query (``None`` without one)."""
    row = db.execute(sql, (value,)).fetchone()
    return row[0] if row else None


def merged_timings(
    db: sqlite3.Connection, job_id: str, timings_s: Mapping[str, float] | None
) -> str:
    """A job's stored timings updated with ``timings_s``, as stored (JSON)."""
    current: dict[str, float] = json.loads(
        scalar(db, "SELECT timings FROM jobs WHERE id = ?", job_id) or "{}"
    )
    current.update({k: round(float(v), 4) for k, v in (timings_s or {}).items()})
    return json.dumps(current)


# --- routing candidates: received series waiting to be stable --------------------------


def record_candidates(db: sqlite3.Connection, series: Mapping[str, str], at: float) -> None:
    """Note that instances of these series (series UID -> study UID) arrived at ``at``."""
    db.executemany(
        "INSERT INTO routing_candidates VALUES (?, ?, ?) ON CONFLICT "
        "(series_instance_uid) DO UPDATE SET last_received_at = excluded.last_received_at",
        [(uid, study, at) for uid, study in series.items()],
    )


def due_candidates(db: sqlite3.Connection, cutoff: float) -> list[tuple[str, str, float]]:
    """``(series, study, last received)`` of the candidates last received by ``cutoff``."""
    rows = db.execute(
        "SELECT series_instance_uid, study_instance_uid, last_received_at FROM "
        "routing_candidates WHERE last_received_at <= ? ORDER BY last_received_at",
        (cutoff,),
    ).fetchall()
    return [(str(a), str(b), float(c)) for a, b, c in rows]


def drop_candidate(db: sqlite3.Connection, series: str, received_at: float) -> None:
    """Forget a routed candidate, unless an instance of it arrived since ``received_at``."""
    db.execute(
        "DELETE FROM routing_candidates WHERE series_instance_uid = ? AND last_received_at = ?",
        (series, received_at),
    )


# --- exports: one record per job and destination ---------------------------------------


def claim_export(db: sqlite3.Connection, now: float) -> tuple[str, str, int, str] | None:
    """Take the export due first (marked sending, one more attempt): ``(job id,
    destination, attempts before this one, study UID)``, or ``None`` when none is due."""
    row = db.execute(
        "SELECT e.job_id, e.destination, e.attempts, j.study_instance_uid FROM exports e "
        "JOIN jobs j ON j.id = e.job_id WHERE e.state = ? AND e.next_attempt_at <= ? "
        "ORDER BY e.next_attempt_at LIMIT 1",
        (ExportState.PENDING, now),
    ).fetchone()
    if row is None:
        return None
    job_id, destination, attempts, study = row
    db.execute(
        "UPDATE exports SET state = ?, attempts = attempts + 1 WHERE job_id = ? AND "
        "destination = ?",
        (ExportState.SENDING, job_id, destination),
    )
    return str(job_id), str(destination), int(attempts), str(study)


def export_failed(
    db: sqlite3.Connection, job_id: str, destination: str, error: str, retry_at: float
) -> None:
    """An attempt failed: pending again, tried again at ``retry_at``."""
    db.execute(
        "UPDATE exports SET state = ?, last_error = ?, next_attempt_at = ? "
        "WHERE job_id = ? AND destination = ?",
        (ExportState.PENDING, error, retry_at, job_id, destination),
    )


def export_delivered(
    db: sqlite3.Connection, job_id: str, destination: str, now: float
) -> tuple[int, float]:
    """An export was delivered: ``(undelivered exports of the job left, when its first
    export record was created)``."""
    db.execute(
        "UPDATE exports SET state = ?, delivered_at = ?, last_error = NULL "
        "WHERE job_id = ? AND destination = ?",
        (ExportState.DELIVERED, now, job_id, destination),
    )
    remaining, first_created = db.execute(
        "SELECT SUM(state != ?), MIN(created_at) FROM exports WHERE job_id = ?",
        (ExportState.DELIVERED, job_id),
    ).fetchone()
    return int(remaining or 0), float(first_created)


def pending_exports(db: sqlite3.Connection) -> dict[str, int]:
    """Undelivered export records per destination (those that have any)."""
    rows = db.execute(
        "SELECT destination, COUNT(*) FROM exports WHERE state != ? GROUP BY destination",
        (ExportState.DELIVERED,),
    ).fetchall()
    return {str(name): int(count) for name, count in rows}
