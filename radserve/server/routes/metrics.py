"""``GET /metrics`` (role ``read`` or ``admin``): Prometheus text exposition.

Jobs by state and the queue depth come from the job queue at scrape time; stage latencies,
per-model inference time and export attempts and failures are recorded by this process.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from radserve.server.auth import Authenticator, Principal
from radserve.server.errors import PermissionDeniedError
from radserve.server.jobs.queue import JobState
from radserve.server.metrics import CONTENT_TYPE, gauge_lines
from radserve.server.services import get_services
from radserve.server.settings import Role

_ROLES = frozenset({Role.READ, Role.ADMIN})


async def read_or_admin(request: Request) -> Principal:
    """A FastAPI dependency: the principal, which must hold ``read`` or ``admin``."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(request.headers.get("authorization"))
    if not principal.roles & _ROLES:
        raise PermissionDeniedError("this token lacks the 'read' or 'admin' role")
    request.state.principal = principal
    return principal


router = APIRouter(tags=["operations"], dependencies=[Depends(read_or_admin)])


@router.get("/metrics", summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    """The metrics in the Prometheus text format."""
    services = get_services(request)
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
