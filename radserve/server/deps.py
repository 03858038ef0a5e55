"""The server's one state object and the typed FastAPI dependencies that hand it out.

:class:`ServerState` is everything a request handler may need (settings, the instance store,
the authenticator, back-pressure and readiness checks, and the job components when the app
runs jobs); :func:`radserve.server.app.create_app` builds it once and keeps it in
``app.state.radserve``. Handlers never fish in ``request.app.state``: they declare what they
use with the ``Annotated`` aliases below (``store: StoreDep``, ``jobs: JobsDep``, ...), and
declare their authorization with :func:`require_role` / :func:`require_any_role`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from radserve.server.auth import Authenticator, Principal
from radserve.server.errors import PermissionDeniedError
from radserve.server.jobs.export import Exporter
from radserve.server.jobs.limit import QueueLimit
from radserve.server.jobs.queue import JobQueue
from radserve.server.jobs.worker import WorkerPool
from radserve.server.metadata_cache import MetadataCache
from radserve.server.metrics import ServerMetrics
from radserve.server.registry import ModelRegistry
from radserve.server.session import SESSION_COOKIE, SessionSigner
from radserve.server.settings import Role, ServerSettings
from radserve.server.store import InstanceStore
from radserve.server.viewer import ViewerSite

DICOM_JSON = "application/dicom+json"
SAFE_METHODS = frozenset({"GET", "HEAD"})

Backpressure = Callable[[], float | None]
"""Says whether new work is accepted: ``None``, or the seconds after which to retry."""

ReadinessCheck = Callable[[], None]
"""Raises when a component is not ready (``/readyz`` answers 503)."""


def never_busy() -> float | None:
    """The default :data:`Backpressure`: always accept."""
    return None


@dataclass(frozen=True)
class JobServices:
    """The components behind ``/jobs``, ``/models`` and ``/metrics``.

    Attributes:
        queue: The durable job queue.
        registry: The loaded models.
        workers: The job workers (woken when a job is queued).
        exporter: The export sender.
        metrics: The recorded metrics.
        queue_limit: The queue limit in force (configured or derived).
    """

    queue: JobQueue
    registry: ModelRegistry
    workers: WorkerPool
    exporter: Exporter
    metrics: ServerMetrics
    queue_limit: QueueLimit


@dataclass(frozen=True)
class ServerState:
    """The application's shared state, in ``app.state.radserve``.

    Attributes:
        settings: The server settings.
        store: The instance store.
        authenticator: Checks bearer tokens and session cookies.
        sessions: Signs and verifies browser session cookies.
        backpressure: Asked before STOW-RS or the jobs API accepts work.
        readiness_checks: Named checks run by ``/readyz`` besides the store's.
        jobs: The job components; ``None`` for a DICOMweb-only app.
        viewer: The installed web viewer; ``None`` when none is configured.
        metadata_cache: The DICOM JSON of recently retrieved instances.
    """

    settings: ServerSettings
    store: InstanceStore
    authenticator: Authenticator
    sessions: SessionSigner
    backpressure: Backpressure = never_busy
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    jobs: JobServices | None = None
    viewer: ViewerSite | None = None
    metadata_cache: MetadataCache = field(default_factory=MetadataCache)


def get_state(request: Request) -> ServerState:
    """FastAPI dependency: the application's state."""
    state: ServerState = request.app.state.radserve
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


def get_settings(state: StateDep) -> ServerSettings:
    """FastAPI dependency: the server settings."""
    return state.settings


def get_store(state: StateDep) -> InstanceStore:
    """FastAPI dependency: the instance store."""
    return state.store


def get_jobs(state: StateDep) -> JobServices:
    """FastAPI dependency: the job components (only routed where the app runs jobs)."""
    if state.jobs is None:
        raise RuntimeError("this app runs no jobs")
    return state.jobs


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
StoreDep = Annotated[InstanceStore, Depends(get_store)]
JobsDep = Annotated[JobServices, Depends(get_jobs)]


def require_any_role(
    *roles: Role,
) -> Callable[[Request, ServerState], Coroutine[Any, Any, Principal]]:
    """A FastAPI dependency: the request's principal, which must hold one of ``roles``.

    A bearer token authenticates any request. A browser session cookie (from ``/login``)
    authenticates only a request without an ``Authorization`` header and with a safe
    method (GET, HEAD): with the cookie's ``SameSite=Strict`` this keeps another site from
    storing or submitting in a logged-in user's name. The principal is also left in
    ``request.state.principal``.

    Raises:
        AuthenticationError: No valid token (401).
        PermissionDeniedError: The token holds none of ``roles`` (403).
    """
    wanted = frozenset(roles)
    names = " or ".join(repr(role.value) for role in roles)

    async def dependency(request: Request, state: StateDep) -> Principal:
        authorization = request.headers.get("authorization")
        cookie = request.cookies.get(SESSION_COOKIE)
        if authorization is None and cookie is not None and request.method in SAFE_METHODS:
            principal = state.authenticator.principal_of_session(cookie, state.sessions)
        else:
            principal = state.authenticator.authenticate(authorization)
        if not principal.roles & wanted:
            raise PermissionDeniedError(f"this token lacks the {names} role")
        request.state.principal = principal
        return principal

    return dependency


def require_role(role: Role) -> Callable[[Request, ServerState], Coroutine[Any, Any, Principal]]:
    """A FastAPI dependency: the request's principal, which must hold ``role``."""
    return require_any_role(role)


def dicomweb_url(request: Request) -> str:
    """The DICOMweb root URL as clients reach this server (``.../dicomweb``): from the
    ``public_url`` setting, else from the request."""
    public_url = get_state(request).settings.public_url
    base = public_url if public_url is not None else str(request.base_url)
    return base.rstrip("/") + "/dicomweb"


def dicom_json_response(
    content: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A response of DICOM JSON (``application/dicom+json``, UTF-8)."""
    body = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(
        body, status_code=status_code, media_type=DICOM_JSON, headers=dict(headers or {})
    )
