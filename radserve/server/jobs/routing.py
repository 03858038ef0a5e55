"""Automatic jobs: a received series that a model accepts gets a job once it is stable.

The store's ``on_commit`` listener (:func:`candidate_recorder`) records the series of every
committed batch (a STOW-RS request, a pulled series) as candidates in the job database, with
the time of the last instance, before the request is answered. A
candidate with no new instance for ``stable_s`` seconds is checked against the selection
rules (``input`` in the manifest: modality, body part, series description pattern, minimum
slices) of the newest version of every model; each model that accepts it gets one job, and
only one: a series is never routed twice to the same model version, whoever created the
first job. Candidates are durable, so a series received just before a crash is routed after
the restart; should recording them fail, the STOW-RS request fails and its sender retries.
radserve's own results are stored without notifying the listener, so they never become
candidates; a series made by radserve (manufacturer ``radserve``) that arrives from outside
is not routed either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from radserve.server.jobs.db import drop_candidate, due_candidates, record_candidates
from radserve.server.jobs.queue import Job, JobQueue, JobSpec, QueueFullError
from radserve.server.jobs.selection import SeriesFacts, mismatch, series_facts
from radserve.server.registry import ModelRegistry
from radserve.server.settings import LOCAL_SOURCE
from radserve.server.store import (
    CommitListener,
    InstanceStore,
    StoredInstance,
)

logger = logging.getLogger(__name__)


def candidate_recorder(queue: JobQueue) -> CommitListener:
    """The store's ``on_commit`` listener that records routing candidates in the job database.

    It runs before the store's commit returns, so a received series is a durable candidate
    by the time the sender is answered.
    """

    def record(instances: Sequence[StoredInstance]) -> None:
        series = {i.series_instance_uid: i.study_instance_uid for i in instances}
        with queue.database.write() as db:
            record_candidates(db, series, time.time())

    return record


class Router:
    """Creates jobs for stable received series; :meth:`start` runs it in a thread.

    Args:
        queue: The job queue (also holds the candidates).
        registry: The models whose selection rules are checked.
        store: The store the series are in.
        stable_s: Seconds without a new instance before a series is routed.
        destinations: Destination names for routed jobs.
        max_queued: Route nothing while this many jobs are queued (a number, or a function
            giving the limit in force): the series stay candidates and are routed once the
            queue has room (``None``: no limit).
    """

    def __init__(
        self,
        *,
        queue: JobQueue,
        registry: ModelRegistry,
        store: InstanceStore,
        stable_s: float,
        destinations: Sequence[str],
        max_queued: int | Callable[[], int] | None = None,
    ) -> None:
        self._max_queued = max_queued
        self._queue = queue
        self._registry = registry
        self._store = store
        self._stable_s = stable_s
        self._destinations = tuple(destinations)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_job: Callable[[Job], None] | None = None

    def run_due(self) -> list[Job]:
        """Route every candidate stable for ``stable_s``; the jobs created."""
        cutoff = time.time() - self._stable_s
        with self._queue.database.read() as db:
            due = due_candidates(db, cutoff)
        created: list[Job] = []
        facts_by_study: dict[str, list[SeriesFacts]] = {}
        for series, study, received_at in due:
            if study not in facts_by_study:
                facts_by_study[study] = series_facts(self._store, study)
            facts = next(
                (f for f in facts_by_study[study] if f.series_instance_uid == series), None
            )
            if facts is not None:
                try:
                    created.extend(self._route(facts))
                except QueueFullError:
                    logger.info("job queue full: the received series are routed later")
                    break  # this and the remaining candidates stay, for a later round
            with self._queue.database.write() as db:  # unless an instance came meanwhile
                drop_candidate(db, series, received_at)
        return created

    def _route(self, facts: SeriesFacts) -> list[Job]:
        created: list[Job] = []
        for model in self._registry.latest():
            reason = mismatch(model.package.manifest.input, facts)
            if reason is not None:
                logger.debug("series not routed to %s: %s", model.key, reason)
                continue
            job = self._queue.submit_unless_exists(
                JobSpec(
                    study_instance_uid=facts.study_instance_uid,
                    series_instance_uid=facts.series_instance_uid,
                    model_name=model.name,
                    model_version=model.version,
                    source=LOCAL_SOURCE,
                    destinations=self._destinations,
                    origin="routing",
                ),
                max_queued=self._max_queued() if callable(self._max_queued) else self._max_queued,
            )
            if job is not None:
                logger.info("routed a received series to %s: job %s", model.key, job.id)
                created.append(job)
                if self.on_job is not None:
                    self.on_job(job)
        return created

    def start(self, *, interval_s: float) -> None:
        """Check the candidates every ``interval_s`` seconds in a background thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name="radserve-routing", daemon=True
        )
        self._thread.start()

    def stop(self, *, timeout_s: float = 10.0) -> bool:
        """Stop the thread; ``False`` if it is still running."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.run_due()
            except Exception:  # keep routing; the candidates stay and are checked again
                logger.exception("routing pass failed; retrying")
