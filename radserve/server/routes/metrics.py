"""``GET /metrics`` (role ``read`` or ``admin``): Prometheus text exposition.

Jobs by state and the queue depth come from the job queue at scrape time; stage latencies,
per-model inference time and export attempts and failures are recorded by this process.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from radserve.server.deps import JobsDep, require_any_role
from radserve.server.jobs.queue import JobState
from radserve.server.metrics import CONTENT_TYPE, gauge_lines
from radserve.server.routes.api_description import AUTHENTICATED, answers
from radserve.server.settings import Role

router = APIRouter(
    tags=["operations"],
    dependencies=[Depends(require_any_role(Role.READ, Role.ADMIN))],
    responses=AUTHENTICATED,
)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses=answers(200, "The Prometheus text exposition", "text/plain"),
)
def metrics(jobs: JobsDep) -> Response:
    """The metrics in the Prometheus text format."""
    services = jobs
    counts = services.queue.counts_by_state()
    gauges = [
        gauge_lines(
            "radserve_jobs",
            "Jobs by state.",
            [({"state": state.value}, count) for state, count in counts.items()],
        ),
        gauge_lines(
            "radserve_queue_depth",
            "Jobs waiting for a worker.",
            [({}, counts[JobState.QUEUED])],
        ),
        gauge_lines(
            "radserve_exports_pending",
            "Export records not yet delivered, per destination.",
            [
                ({"destination": name}, count)
                for name, count in services.exporter.pending_by_destination().items()
            ],
        ),
        gauge_lines(
            "radserve_models_loaded",
            "Loaded model packages, with the execution provider in use.",
            [
                ({"model": m.name, "version": m.version, "provider": m.predictor.provider}, 1)
                for m in services.registry.models
            ],
        ),
    ]
    return Response(services.metrics.render(gauges), media_type=CONTENT_TYPE)
