"""Liveness (``/healthz``) and readiness (``/readyz``); neither needs a token.

Readiness runs the store's check (its folder is writable, its index answers) and every
readiness check given to the app factory (e.g. "models loaded"). The answer names each check
and whether it passed, never why it failed: that goes to the log, with the request id.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from radserve.server.deps import StateDep
from radserve.server.routes.api_description import answers

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """The process is alive and serving requests."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    response_class=JSONResponse,
    responses=answers(503, "Not ready: the answer names the failed checks", "application/json"),
)
def readyz(request: Request, state: StateDep) -> JSONResponse:
    """Whether the server can take work: 200 when every check passes, else 503."""
    checks = {"store": state.store.check_ready, **state.readiness_checks}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:  # any failure means not ready; logged, not swallowed
            logger.warning(
                "readiness check %s failed: %s [request %s]",
                name,
                type(exc).__name__,
                getattr(request.state, "request_id", "-"),
            )
            results[name] = "failed"
        else:
            results[name] = "ok"
    ready = all(result == "ok" for result in results.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": results},
        status_code=200 if ready else 503,
    )
