"""The durable job queue: SQLite in WAL mode under ``data_dir`` (``jobs.sqlite3``).

A job runs one model on one series and sends the results to destinations. States::

    queued -> running -> exporting -> done
                 |            (export records retried until delivered, never dropped)
                 +-> failed   (bad input, timeout, or quarantined: see below)

A worker *claims* the oldest due queued job, which sets a lease (``lease_s`` from the last
stage change). After a crash the server's next start re-queues every ``running`` job (the
store's folder lock guarantees no other process runs them); a running job whose lease has
expired is claimable too, for deployments where several processes share the queue. Reruns do
not duplicate results: result UIDs derive from the source series and the model version.

Crash accounting: a crash is charged only to a job that was running *alone* when the server
stopped. Jobs interrupted together are charged nothing (their claim does not count as an
attempt) and are marked *solo*: a solo job is claimed only when no other job runs, nothing
else is claimed while it runs, and nothing passes it in the queue. So a job that kills the
server is soon running alone when it does, and is failed ("quarantined") after
``max_attempts`` such crashes, while the jobs that happened to run beside it are rerun.

Each change of state is one transaction with ``synchronous=FULL``: once :meth:`JobQueue.submit`
returns, the job survives a power cut. Times are stored as Unix seconds. The export records
(table ``exports``) are driven by :mod:`radserve.server.jobs.export`; this module creates them
when a job's results are stored, together with the job's radiomic feature table (table
``job_features``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from radserve.server.jobs.db import (
    JOB_COLUMNS,
    JOBS_FILE,
    SCHEMA,
    Database,
    add_missing_columns,
    exports_of,
    fail_job,
    features_of,
    insert_job,
    job_from_row,
    merged_timings,
    put_features,
    scalar,
)
from radserve.server.jobs.records import (
    ExportRecord,
    ExportState,
    FeatureTableNotFoundError,
    Job,
    JobError,
    JobFeatures,
    JobNotFoundError,
    JobSpec,
    JobState,
    QueueError,
    QueueFullError,
    ResultInstance,
    Stage,
)

__all__ = [
    "JOBS_FILE",
    "Database",
    "ExportRecord",
    "ExportState",
    "FeatureTableNotFoundError",
    "Job",
    "JobError",
    "JobFeatures",
    "JobNotFoundError",
    "JobQueue",
    "JobSpec",
    "JobState",
    "QueueError",
    "QueueFullError",
    "ResultInstance",
    "Stage",
]

logger = logging.getLogger(__name__)


class JobQueue:
    """Durable jobs and their export records; thread-safe.

    Args:
        data_dir: The folder of ``jobs.sqlite3`` (the instance store's folder).
        lease_s: How long a claim holds without a stage change.
        max_attempts: Claims of one job before it is failed.

    Raises:
        QueueError: The database cannot be opened.
    """

    def __init__(self, data_dir: str | Path, *, lease_s: float, max_attempts: int) -> None:
        try:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueError(f"data folder cannot be created ({exc.strerror})") from exc
        self.database = Database(Path(data_dir) / JOBS_FILE)
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self._owner = uuid.uuid4().hex
        try:
            with self.database.write() as db:
                for statement in SCHEMA:
                    db.execute(statement)
                add_missing_columns(db)
            self._recover()
        except BaseException:
            self.database.close()
            raise

    def close(self) -> None:
        """Close the database."""
        self.database.close()

    def _recover(self) -> None:
        """Re-queue the jobs a previous process left running, charging the crash only to a
        job that was running alone (see the module docstring)."""
        now = time.time()
        with self.database.write() as db:
            rows = db.execute(
                "SELECT id, crashes FROM jobs WHERE state = ? AND (lease_owner IS NULL OR "
                "lease_owner != ?)",
                (JobState.RUNNING, self._owner),
            ).fetchall()
            alone = len(rows) == 1  # the process died running this job and no other
            for job_id, crashes in rows:
                if alone and crashes + 1 >= self.max_attempts:
                    fail_job(
                        db,
                        job_id,
                        f"quarantined: the server stopped {crashes + 1} times while running "
                        "this job alone; not retried",
                        now,
                    )
                    continue
                # Charged: one more crash. Not charged: the claim does not count as an
                # attempt, and the job runs alone next time, so that a crash then is its own.
                db.execute(
                    "UPDATE jobs SET state = ?, stage = ?, lease_owner = NULL, "
                    "lease_expires = NULL, not_before = ?, updated_at = ?, solo = 1, "
                    "crashes = crashes + ?, attempts = MAX(attempts - ?, 0) WHERE id = ?",
                    (
                        JobState.QUEUED,
                        Stage.QUEUED,
                        now,
                        now,
                        1 if alone else 0,
                        0 if alone else 1,
                        job_id,
                    ),
                )
            sending = db.execute(
                "UPDATE exports SET state = ?, next_attempt_at = ? WHERE state = ?",
                (ExportState.PENDING, now, ExportState.SENDING),
            ).rowcount
        if rows or sending:
            logger.warning(
                "job queue recovery: %d interrupted jobs re-queued or failed, %d exports resumed",
                len(rows),
                sending,
            )

    # --- creating ----------------------------------------------------------------------

    def submit(self, spec: JobSpec, *, max_queued: int | None = None) -> Job:
        """Queue a new job; durable once this returns.

        Raises:
            QueueFullError: ``max_queued`` jobs are queued already (checked in the same
                transaction as the insert, so concurrent submissions cannot pass it).
        """
        with self.database.write() as db:
            _check_room(db, max_queued)
            job_id = insert_job(db, spec, time.time())
        logger.info("job %s queued (%s)", job_id, spec.origin)
        return self.get(job_id)

    def submit_unless_exists(self, spec: JobSpec, *, max_queued: int | None = None) -> Job | None:
        """Queue a job unless one exists for the same series, model name and version.

        Raises:
            QueueFullError: ``max_queued`` jobs are queued already (see :meth:`submit`).
        """
        if spec.series_instance_uid is None:
            raise ValueError("submit_unless_exists needs a series")
        with self.database.write() as db:
            found = db.execute(
                "SELECT 1 FROM jobs WHERE series_instance_uid = ? AND model_name = ? AND "
                "model_version = ? LIMIT 1",
                (spec.series_instance_uid, spec.model_name, spec.model_version),
            ).fetchone()
            if found is not None:
                return None
            _check_room(db, max_queued)
            job_id = insert_job(db, spec, time.time())
        logger.info("job %s queued (%s)", job_id, spec.origin)
        return self.get(job_id)

    # --- the worker's side -------------------------------------------------------------

    def claim(self) -> Job | None:
        """Take the oldest due queued job (or one whose lease expired) and mark it running."""
        now = time.time()
        with self.database.write() as db:
            running = db.execute(
                "SELECT COUNT(*), COALESCE(MAX(solo), 0) FROM jobs WHERE state = ?",
                (JobState.RUNNING,),
            ).fetchone()
            if running[1]:
                return None  # a job that must run alone is running
            row = db.execute(
                "SELECT id, attempts, solo FROM jobs WHERE (state = ? AND not_before <= ?) OR "
                "(state = ? AND lease_expires < ? AND lease_owner != ?) ORDER BY seq LIMIT 1",
                (JobState.QUEUED, now, JobState.RUNNING, now, self._owner),
            ).fetchone()
            if row is None:
                return None
            job_id, attempts, solo = row
            if solo and running[0]:
                return None  # it waits until the others are done, and nothing passes it
            if attempts >= self.max_attempts:  # an expired lease, out of attempts
                fail_job(db, job_id, f"interrupted {attempts} times; not retried", now)
                return None
            db.execute(
                "UPDATE jobs SET state = ?, stage = ?, attempts = attempts + 1, "
                "lease_owner = ?, lease_expires = ?, started_at = ?, updated_at = ?, "
                "error = NULL WHERE id = ?",
                (
                    JobState.RUNNING,
                    Stage.FETCHING,
                    self._owner,
                    now + self.lease_s,
                    now,
                    now,
                    job_id,
                ),
            )
        return self.get(job_id)

    def set_stage(
        self,
        job_id: str,
        stage: Stage,
        *,
        timings_s: Mapping[str, float] | None = None,
        series_instance_uid: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Record a running job's progress (and renew its lease)."""
        now = time.time()
        with self.database.write() as db:
            merged = merged_timings(db, job_id, timings_s)
            db.execute(
                "UPDATE jobs SET stage = ?, timings = ?, lease_expires = ?, updated_at = ?, "
                "series_instance_uid = COALESCE(?, series_instance_uid), "
                "provider = COALESCE(?, provider) WHERE id = ? AND state = ?",
                (
                    stage,
                    merged,
                    now + self.lease_s,
                    now,
                    series_instance_uid,
                    provider,
                    job_id,
                    JobState.RUNNING,
                ),
            )

    def results_stored(
        self,
        job_id: str,
        results: Sequence[ResultInstance],
        *,
        timings_s: Mapping[str, float],
        features: JobFeatures | None = None,
        conformance: Mapping[str, Any] | None = None,
    ) -> Job:
        """The results are in the store: record them (and the feature table, replacing one
        of an earlier run, and the conformance gate's findings), create one export record
        per destination and move the job to ``exporting`` (``done`` without destinations)."""
        now = time.time()
        with self.database.write() as db:
            destinations = json.loads(
                scalar(db, "SELECT destinations FROM jobs WHERE id = ?", job_id) or "[]"
            )
            merged = merged_timings(db, job_id, timings_s)
            encoded = json.dumps([r.__dict__ for r in results])
            state, stage = (
                (JobState.EXPORTING, Stage.EXPORTING)
                if destinations
                else (JobState.DONE, Stage.DONE)
            )
            db.execute(
                "UPDATE jobs SET state = ?, stage = ?, results = ?, timings = ?, "
                "conformance = ?, lease_owner = NULL, lease_expires = NULL, updated_at = ?, "
                "finished_at = CASE WHEN ? = 'done' THEN ? ELSE NULL END WHERE id = ?",
                (
                    state,
                    stage,
                    encoded,
                    merged,
                    _json_or_null(conformance),
                    now,
                    state,
                    now,
                    job_id,
                ),
            )
            put_features(db, job_id, features, now)
            for destination in destinations:
                db.execute(
                    "INSERT INTO exports (job_id, destination, state, next_attempt_at, "
                    "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, destination) DO "
                    "UPDATE SET state = excluded.state, next_attempt_at = "
                    "excluded.next_attempt_at, created_at = excluded.created_at, "
                    "delivered_at = NULL",
                    (job_id, destination, ExportState.PENDING, now, now),
                )
        return self.get(job_id)

    def finish_exported(self, job_id: str, *, export_s: float) -> bool:
        """Mark an exporting job done when every export record is delivered; whether it was."""
        now = time.time()
        with self.database.write() as db:
            merged = merged_timings(db, job_id, {"export_s": export_s})
            changed = db.execute(
                "UPDATE jobs SET state = ?, stage = ?, finished_at = ?, updated_at = ?, "
                "timings = ? WHERE id = ? AND state = ? AND NOT EXISTS (SELECT 1 FROM exports "
                "WHERE job_id = ? AND state != ?)",
                (
                    JobState.DONE,
                    Stage.DONE,
                    now,
                    now,
                    merged,
                    job_id,
                    JobState.EXPORTING,
                    job_id,
                    ExportState.DELIVERED,
                ),
            ).rowcount
        if changed:
            logger.info("job %s done", job_id)
        return bool(changed)

    def fail(
        self,
        job_id: str,
        error: str,
        *,
        timings_s: Mapping[str, float] | None = None,
        conformance: Mapping[str, Any] | None = None,
    ) -> None:
        """Fail a job with a message (which must not hold PHI) and, when the conformance
        gate failed it, the gate's findings."""
        now = time.time()
        with self.database.write() as db:
            if timings_s:
                db.execute(
                    "UPDATE jobs SET timings = ? WHERE id = ?",
                    (merged_timings(db, job_id, timings_s), job_id),
                )
            if conformance is not None:
                db.execute(
                    "UPDATE jobs SET conformance = ? WHERE id = ?",
                    (_json_or_null(conformance), job_id),
                )
            fail_job(db, job_id, error, now)
        logger.warning("job %s failed: %s", job_id, error)

    def retry_later(self, job_id: str, error: str, *, delay_s: float) -> Job:
        """Put a running job back in the queue after a transient failure (e.g. the pull
        source is down); it fails instead once it has used its attempts."""
        now = time.time()
        with self.database.write() as db:
            attempts = int(scalar(db, "SELECT attempts FROM jobs WHERE id = ?", job_id) or 0)
            if attempts >= self.max_attempts:
                fail_job(db, job_id, f"{error} (after {attempts} attempts)", now)
            else:
                db.execute(
                    "UPDATE jobs SET state = ?, stage = ?, error = ?, not_before = ?, "
                    "lease_owner = NULL, lease_expires = NULL, updated_at = ? WHERE id = ?",
                    (JobState.QUEUED, Stage.QUEUED, error, now + delay_s, now, job_id),
                )
        return self.get(job_id)

    def release(self, job_id: str) -> None:
        """Give a running job back to the queue (shutdown); the attempt is not counted."""
        now = time.time()
        with self.database.write() as db:
            db.execute(
                "UPDATE jobs SET state = ?, stage = ?, attempts = MAX(attempts - 1, 0), "
                "lease_owner = NULL, lease_expires = NULL, not_before = ?, updated_at = ? "
                "WHERE id = ? AND state = ?",
                (JobState.QUEUED, Stage.QUEUED, now, now, job_id, JobState.RUNNING),
            )

    # --- reading -----------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """One job with its export records.

        Raises:
            JobNotFoundError: No such job.
        """
        with self.database.read() as db:
            row = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFoundError("no job with this id")
            exports = exports_of(db, [job_id]).get(job_id, ())
            features = features_of(db, [job_id]).get(job_id)
        return job_from_row(row, exports, features)

    def feature_table(self, job_id: str) -> tuple[str, list[dict[str, Any]]]:
        """A job's parameter set identifier and feature table.

        Raises:
            JobNotFoundError: No such job.
            FeatureTableNotFoundError: The job has no feature table.
        """
        with self.database.read() as db:
            row = db.execute(
                "SELECT parameter_set, segments FROM job_features WHERE job_id = ?", (job_id,)
            ).fetchone()
            known = (
                row is not None
                or db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
            )
        if not known:
            raise JobNotFoundError("no job with this id")
        if row is None:
            raise FeatureTableNotFoundError("this job has no feature table")
        segments: list[dict[str, Any]] = json.loads(row[1])
        return str(row[0]), segments

    def find(
        self,
        *,
        state: JobState | None = None,
        study_instance_uid: str | None = None,
        series_instance_uid: str | None = None,
        model_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs matching every given filter, newest first."""
        conditions: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("state", state),
            ("study_instance_uid", study_instance_uid),
            ("series_instance_uid", series_instance_uid),
            ("model_name", model_name),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(str(value))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self.database.read() as db:
            rows = db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs{where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            ids = [row[0] for row in rows]
            exports = exports_of(db, ids)
            features = features_of(db, ids)
        return [job_from_row(row, exports.get(row[0], ()), features.get(row[0])) for row in rows]

    def counts_by_state(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        with self.database.read() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        counts = dict.fromkeys(JobState, 0)
        counts.update({JobState(state): int(count) for state, count in rows})
        return counts

    def depth(self) -> int:
        """Jobs waiting for a worker (queued)."""
        with self.database.read() as db:
            return int(
                db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE state = ?", (JobState.QUEUED,)
                ).fetchone()[0]
            )

    def check_ready(self) -> None:
        """Raise :class:`QueueError` unless the database answers."""
        with self.database.read() as db:
            db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (JobState.RUNNING,))


def _check_room(db: Any, max_queued: int | None) -> None:
    """Raise :class:`QueueFullError` when ``max_queued`` jobs are queued (inside the
    transaction that would add one)."""
    if max_queued is None:
        return
    (queued,) = db.execute(
        "SELECT COUNT(*) FROM jobs WHERE state = ?", (JobState.QUEUED,)
    ).fetchone()
    if int(queued) >= max_queued:
        raise QueueFullError(f"the job queue holds {queued} queued jobs already")


def _json_or_null(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, allow_nan=False)
