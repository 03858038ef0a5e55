"""Export of job results to the destination PACS over STOW-RS, retried until delivered.

Each job with results has one record per destination in the queue's ``exports`` table
(created by :meth:`JobQueue.results_stored`). The :class:`Exporter` thread takes due
records, reads the result files back from the instance store and sends them as they are, in
one STOW-RS request: what the store serves over WADO-RS is byte for byte what the PACS
receives, on every attempt, and nothing is parsed or re-encoded. A failed attempt stays on
the record (attempts, last error, next attempt time) and is retried after
``backoff_s * 2 ** (attempts - 1)`` seconds, at most ``backoff_max_s``: an export is never
dropped. A job is ``done`` once every destination has acknowledged it.
Resending after a crash cannot duplicate anything: the SOP Instance UIDs are the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from radserve.dicom_io import DicomIOError
from radserve.server.jobs.db import (
    claim_export,
    export_delivered,
    export_failed,
    pending_exports,
)
from radserve.server.jobs.queue import JobQueue, JobState, ResultInstance
from radserve.server.metrics import ServerMetrics
from radserve.server.pacs import PacsClient
from radserve.server.settings import RemoteSettings
from radserve.server.store.instances import InstanceStore

logger = logging.getLogger(__name__)

_IDLE_WAIT_S = 1.0


@dataclass(frozen=True)
class ExportPolicy:
    """How exports are retried.

    Attributes:
        backoff_s: Delay after the first failed attempt; doubled per further failure.
        backoff_max_s: Longest delay.
        timeout_s: Timeout of one STOW-RS request.
    """

    backoff_s: float = 5.0
    backoff_max_s: float = 600.0
    timeout_s: float = 60.0

    def delay_s(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts."""
        exponent = min(max(attempts - 1, 0), 32)
        return float(min(self.backoff_max_s, self.backoff_s * 2.0**exponent))


@dataclass(frozen=True)
class ExportTask:
    """One claimed export: a job's results to one destination (``attempt`` counts from 1)."""

    job_id: str
    destination: str
    attempt: int
    study_instance_uid: str
    results: tuple[ResultInstance, ...]


def pacs_client(remote: RemoteSettings, *, timeout_s: float) -> PacsClient:
    """A DICOMweb client for a configured destination or pull source (one try per request:
    the callers retry with a durable record)."""
    headers = (
        {"Authorization": remote.auth_header.get_secret_value()}
        if remote.auth_header is not None
        else None
    )
    return PacsClient(remote.url, timeout_s=timeout_s, headers=headers, attempts=1)


class Exporter:
    """Sends due export records; one background thread (:meth:`start`), or :meth:`run_due`.

    Args:
        queue: The job queue (holds the export records).
        store: Where the results are read from.
        destinations: The configured destinations.
        policy: Back-off and timeout.
        metrics: Where attempts and failures are counted.
    """

    def __init__(
        self,
        *,
        queue: JobQueue,
        store: InstanceStore,
        destinations: Sequence[RemoteSettings],
        policy: ExportPolicy,
        metrics: ServerMetrics,
    ) -> None:
        self._queue = queue
        self._store = store
        self._policy = policy
        self._metrics = metrics
        self._clients: Mapping[str, PacsClient] = {
            remote.name: pacs_client(remote, timeout_s=policy.timeout_s) for remote in destinations
        }
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the thread --------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="radserve-export", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for due exports now (new results were stored)."""
        self._wake.set()

    def stop(self, *, timeout_s: float = 30.0) -> bool:
        """Stop the thread after its current attempt; ``False`` if it is still running."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_due()
            except Exception:  # keep exporting; the record stays due and is retried
                logger.exception("export loop failed; retrying")
                sent = 0
            if not sent:
                self._wake.wait(_IDLE_WAIT_S)
                self._wake.clear()

    # --- one pass ----------------------------------------------------------------------

    def run_due(self) -> int:
        """Attempt every export that is due now; the number attempted."""
        attempted = 0
        while not self._stop.is_set():
            task = self._claim()
            if task is None:
                break
            attempted += 1
            self._attempt(task)
        return attempted

    def _attempt(self, task: ExportTask) -> None:
        self._metrics.export_attempts.inc(destination=task.destination)
        started = time.perf_counter()
        try:
            client = self._clients.get(task.destination)
            if client is None:
                raise DicomIOError(f"destination {task.destination!r} is no longer configured")
            files = self._result_files(task)
            client.store_files(files)
        except (DicomIOError, ValueError) as exc:
            self._failed(task, str(exc))
            return
        except Exception as exc:  # never lose the record: any failure is a retry
            logger.exception("export of job %s to %s failed", task.job_id, task.destination)
            self._failed(task, f"internal error ({type(exc).__name__})")
            return
        self._delivered(task, sent_s=time.perf_counter() - started, count=len(files))

    def _result_files(self, task: ExportTask) -> list[bytes]:
        """The stored files of a job's results, as stored (checked against the index size)."""
        wanted = {r.sop_instance_uid for r in task.results}
        files: list[bytes] = []
        for series in dict.fromkeys(r.series_instance_uid for r in task.results):
            for instance in self._store.get_instances(task.study_instance_uid, series):
                if instance.sop_instance_uid not in wanted:
                    continue
                try:
                    data = instance.path.read_bytes()
                except OSError as exc:
                    raise DicomIOError(
                        f"a result instance cannot be read from the store "
                        f"({exc.strerror or type(exc).__name__})"
                    ) from exc
                if len(data) != instance.size_bytes:
                    raise DicomIOError(
                        f"a result instance's file holds {len(data)} bytes, the index says "
                        f"{instance.size_bytes}"
                    )
                files.append(data)
        if len(files) != len(wanted):
            raise DicomIOError(
                f"{len(wanted) - len(files)} result instances are missing from the store"
            )
        return files

    # --- the records -------------------------------------------------------------------

    def _claim(self) -> ExportTask | None:
        now = time.time()
        with self._queue.database.write() as db:
            row = claim_export(db, now)
        if row is None:
            return None
        job_id, destination, attempts, study = row
        job = self._queue.get(job_id)
        return ExportTask(
            job_id=job_id,
            destination=destination,
            attempt=int(attempts) + 1,
            study_instance_uid=study,
            results=job.results,
        )

    def _failed(self, task: ExportTask, error: str) -> None:
        self._metrics.export_failures.inc(destination=task.destination)
        delay_s = self._policy.delay_s(task.attempt)
        with self._queue.database.write() as db:
            export_failed(db, task.job_id, task.destination, error, time.time() + delay_s)
        logger.warning(
            "export of job %s to %s failed (attempt %d, next in %.1f s): %s",
            task.job_id,
            task.destination,
            task.attempt,
            delay_s,
            error,
        )

    def _delivered(self, task: ExportTask, *, sent_s: float, count: int) -> None:
        now = time.time()
        with self._queue.database.write() as db:
            remaining, first_created = export_delivered(db, task.job_id, task.destination, now)
        logger.info(
            "job %s: %d result instances delivered to %s in %.2f s",
            task.job_id,
            count,
            task.destination,
            sent_s,
        )
        if not remaining:
            export_s = now - float(first_created)
            if self._queue.finish_exported(task.job_id, export_s=export_s):
                self._metrics.stage_seconds.observe(export_s, stage="export")
                self._metrics.jobs_finished.inc(state=JobState.DONE)

    def pending_by_destination(self) -> dict[str, int]:
        """Undelivered export records per destination."""
        with self._queue.database.read() as db:
            pending = pending_exports(db)
        counts = dict.fromkeys(self._clients, 0)
        counts.update(pending)
        return counts
