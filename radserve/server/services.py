"""The job-side components the jobs, models and metrics routers share (``app.state.services``)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from radserve.server.jobs.export import Exporter
from radserve.server.jobs.queue import JobQueue
from radserve.server.jobs.worker import WorkerPool
from radserve.server.metrics import ServerMetrics
from radserve.server.registry import ModelRegistry


@dataclass(frozen=True)
class ServerServices:
    """The components behind ``/jobs``, ``/models`` and ``/metrics``.

    Attributes:
        queue: The durable job queue.
        registry: The loaded models.
        workers: The job workers (woken when a job is queued).
        exporter: The export sender.
        metrics: The recorded metrics.
    """

    queue: JobQueue
    registry: ModelRegistry
    workers: WorkerPool
    exporter: Exporter
    metrics: ServerMetrics


def get_services(request: Request) -> ServerServices:
    """FastAPI dependency: the server's job-side components."""
    services: ServerServices = request.app.state.services
    return services
