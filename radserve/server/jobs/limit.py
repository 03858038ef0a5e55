"""How many jobs the queue may hold: configured, or derived from the measured job time.

A queue limit is a promise about latency: a job accepted now starts within about
``backlog_s`` seconds. Unless ``queue_max_jobs`` fixes it, the limit is the number of jobs
the workers get through in ``queue_backlog_s`` at the mean job time measured so far (the
stages a worker spends: fetch, inference, radiomics, results, store), between
:data:`MIN_DERIVED` and :data:`MAX_DERIVED`; before any job has run it is
:data:`UNMEASURED_LIMIT`.
"""

from __future__ import annotations

import math

from radserve.server.metrics import ServerMetrics

JOB_STAGES = ("fetch", "inference", "radiomics", "results", "store")
MIN_DERIVED = 10
MAX_DERIVED = 10_000
UNMEASURED_LIMIT = 100


class QueueLimit:
    """The queue limit in force now (see the module).

    Args:
        metrics: Where the workers record their stage times.
        configured: A fixed limit (``queue_max_jobs``); ``None`` derives it.
        workers: Worker threads.
        backlog_s: The work, in seconds, the queue may hold when the limit is derived.
    """

    def __init__(
        self, metrics: ServerMetrics, *, configured: int | None, workers: int, backlog_s: float
    ) -> None:
        self._metrics = metrics
        self.configured = configured
        self._workers = max(1, workers)
        self._backlog_s = backlog_s

    def mean_job_s(self) -> float | None:
        """The mean time a worker spends on a job so far; ``None`` before the first."""
        histogram = self._metrics.stage_seconds
        runs = histogram.count(stage="inference")
        if not runs:
            return None
        return sum(histogram.total(stage=stage) for stage in JOB_STAGES) / runs

    def current(self) -> int:
        """The number of queued jobs beyond which no job is added."""
        if self.configured is not None:
            return self.configured
        mean_s = self.mean_job_s()
        if mean_s is None:
            return UNMEASURED_LIMIT
        derived = math.ceil(self._backlog_s * self._workers / max(mean_s, 1e-3))
        return min(MAX_DERIVED, max(MIN_DERIVED, derived))
