"""What the routers share: the application context, its dependency, DICOM JSON responses."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response

from radserve.server.settings import ServerSettings
from radserve.server.store.instances import InstanceStore

DICOM_JSON = "application/dicom+json"

Backpressure = Callable[[], float | None]
"""Says whether new work is accepted: ``None``, or the seconds after which to retry."""

ReadinessCheck = Callable[[], None]
"""Raises when a component is not ready (``/readyz`` answers 503)."""


def never_busy() -> float | None:
    """The default :data:`Backpressure`: always accept."""
    return None


@dataclass(frozen=True)
class ApiContext:
    """The application's shared state, in ``app.state.context``.

    Attributes:
        settings: The server settings.
        store: The instance store.
        backpressure: Asked before STOW-RS accepts a request.
        readiness_checks: Named checks run by ``/readyz`` besides the store's.
    """

    settings: ServerSettings
    store: InstanceStore
    backpressure: Backpressure = never_busy
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)


def get_context(request: Request) -> ApiContext:
    """FastAPI dependency: the application context."""
    context: ApiContext = request.app.state.context
    return context


def dicomweb_url(request: Request) -> str:
    """The DICOMweb root URL as the client sees this server (``.../dicomweb``)."""
    return str(request.base_url).rstrip("/") + "/dicomweb"


def dicom_json_response(
    content: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A response of DICOM JSON (``application/dicom+json``, UTF-8)."""
    body = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(
        body, status_code=status_code, media_type=DICOM_JSON, headers=dict(headers or {})
    )
