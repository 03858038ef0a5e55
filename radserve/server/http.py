"""HTTP plumbing of the app: the one place where exceptions become statuses, request ids,
log redaction, and how uvicorn runs the app (built by :func:`radserve.server.app.create_app`).

Errors: handlers raise domain exceptions; :data:`STATUS_BY_EXCEPTION` maps them to statuses
(first match wins). A 4xx body is ``{"error": <message>}`` (messages never hold PHI); a 5xx
body is generic, with the request id, and the error is logged with that id. An exception no
handler knows is caught by :class:`RequestContextMiddleware`: 500, logged by type and
traceback frames only (a foreign exception's message may quote data).

Request ids: ``X-Request-ID`` is taken from the request when it is a short token, else
generated, and sent back on every response. One access log line per request gives the
method, the path with UIDs replaced by ``{uid}`` and anything but plain words by ``{text}``
(:func:`loggable_path`), without the query string (query values may be patient names), the
status and the duration.
"""

from __future__ import annotations

import logging
import math
import re
import time
import traceback
import uuid

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radserve.dicom_io import (
    DicomIOError,
    InconsistentSeriesError,
    InstanceTooLargeError,
    InvalidDicomError,
    UnsupportedTransferSyntaxError,
)
from radserve.inference import (
    InferenceError,
    ModelNotFoundError,
    SeriesNotAcceptedError,
)
from radserve.server.connections import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    guarded_protocol,
)
from radserve.server.errors import (
    AuthenticationError,
    MalformedRequestError,
    NotAcceptableError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RequestTimeoutError,
    ResourceNotFoundError,
    ServiceBusyError,
    UnsupportedMediaTypeError,
    ViewerNotInstalledError,
)
from radserve.server.jobs.queue import JobNotFoundError
from radserve.server.store.instances import (
    DuplicateInstanceError,
    InstanceNotFoundError,
    InstanceRejectedError,
    QueryError,
    StoreError,
    StoreFullError,
)

logger = logging.getLogger(__name__)

STATUS_BY_EXCEPTION: tuple[tuple[type[Exception], int], ...] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (InstanceNotFoundError, 404),
    (ModelNotFoundError, 404),
    (JobNotFoundError, 404),
    (ViewerNotInstalledError, 404),
    (ResourceNotFoundError, 404),
    (NotAcceptableError, 406),
    (RequestTimeoutError, 408),
    (DuplicateInstanceError, 409),
    (InstanceRejectedError, 409),
    (PayloadTooLargeError, 413),
    (InstanceTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (UnsupportedTransferSyntaxError, 422),
    (InconsistentSeriesError, 422),
    (SeriesNotAcceptedError, 422),
    (ServiceBusyError, 503),
    (StoreFullError, 507),
    (MalformedRequestError, 400),
    (QueryError, 400),
    (InvalidDicomError, 400),
    (ClientDisconnect, 400),
    (StoreError, 500),  # the store's own failure (disk, index), not the client's
    (DicomIOError, 422),  # other problems with the client's DICOM data
    (InferenceError, 500),
)
"""Exception class -> HTTP status; the first class the exception is an instance of wins."""

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_UID = re.compile(r"\d+(\.\d+)+")
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._,-]{1,64}")
_MAX_LOGGED_SEGMENTS = 16


def loggable_path(path: str) -> str:
    """A request path as the access log writes it: UID segments as ``{uid}``, segments that
    are not plain words (free text, control characters, anything percent-decoded into
    another character) as ``{text}``, at most :data:`_MAX_LOGGED_SEGMENTS` of them; so a
    log line can neither carry patient data from a path nor be forged by one."""
    segments = path.split("/")[1:]
    shown = [
        "{uid}" if _UID.fullmatch(s) else s if _PLAIN_SEGMENT.fullmatch(s) or not s else "{text}"
        for s in segments[:_MAX_LOGGED_SEGMENTS]
    ]
    if len(segments) > _MAX_LOGGED_SEGMENTS:
        shown.append("...")
    return "/" + "/".join(shown)


def status_for(exc: BaseException) -> int:
    """The HTTP status of an exception (500 for unknown ones)."""
    for cls, status in STATUS_BY_EXCEPTION:
        if isinstance(exc, cls):
            return status
    return 500


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


async def _handle_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, AuthenticationError):
        invalid = ', error="invalid_token"' if exc.invalid_token else ""
        headers["WWW-Authenticate"] = f'Bearer realm="radserve"{invalid}'
    if isinstance(exc, ServiceBusyError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if status >= 500 and not isinstance(exc, ServiceBusyError):
        logger.error(
            "%s: %s [request %s]", type(exc).__name__, exc, _request_id(request)
        )  # radserve's messages never hold PHI
        return JSONResponse(
            {"error": "internal server error", "request_id": _request_id(request)},
            status_code=status,
            headers=headers,
        )
    message = "client disconnected" if isinstance(exc, ClientDisconnect) else str(exc)
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        ".".join(str(part) for part in error.get("loc", ())) + ": " + str(error.get("msg", ""))
        for error in exc.errors()
    ]  # without the input values, which may be patient data
    return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, status_code=400)


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


class RequestContextMiddleware:
    """Request ids, the access log line, and the 500 answer to unexpected exceptions."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False
        begin = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # the last resort: log without the message, answer 500
            frames = "".join(traceback.format_tb(exc.__traceback__))
            logger.error("unexpected %s [request %s]\n%s", type(exc).__name__, request_id, frames)
            if not started:
                response = JSONResponse(
                    {"error": "internal server error", "request_id": request_id},
                    status_code=500,
                )
                await response(scope, receive, send_with_id)
            # Else the response is cut short; the server closes the connection.
        finally:
            seconds = time.perf_counter() - begin
            logger.info(
                "%s %s -> %d in %.1f ms [request %s]",
                scope["method"],
                loggable_path(scope["path"]),
                status,
                seconds * 1000,
                request_id,
            )
            _observe(scope, status, seconds)


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def _observe(scope: Scope, status: int, seconds: float) -> None:
    """Count the request in the server's metrics, when the app has them."""
    state = getattr(getattr(scope.get("app"), "state", None), "radserve", None)
    jobs = getattr(state, "jobs", None)
    if jobs is None:
        return
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    method = scope["method"] if scope["method"] in _KNOWN_METHODS else "other"
    jobs.metrics.observe_request(method, route, status, seconds)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID.fullmatch(text) else None
    return None


class PydicomValueRedactor(logging.Filter):
    """Replaces quoted values in pydicom's log messages (``Invalid value for VR DA:
    '2006-01-28'``), which may be patient data, by ``'<redacted>'``."""

    _QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._QUOTED.sub("'<redacted>'", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_redaction() -> None:
    """Add :class:`PydicomValueRedactor` to pydicom's logger (once per process)."""
    pydicom_logger = logging.getLogger("pydicom")
    if not any(isinstance(f, PydicomValueRedactor) for f in pydicom_logger.filters):
        pydicom_logger.addFilter(PydicomValueRedactor())


def install_error_handling(app: FastAPI) -> None:
    """Map exceptions to statuses (:data:`STATUS_BY_EXCEPTION`) and add request ids."""
    handled: tuple[type[Exception], ...] = (DicomIOError, InferenceError, ClientDisconnect)
    for cls in handled:
        app.add_exception_handler(cls, _handle_error)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_middleware(RequestContextMiddleware)


def uvicorn_config(
    app: FastAPI,
    *,
    host: str,
    port: int,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> uvicorn.Config:
    """How radserve runs under uvicorn.

    The HTTP protocol is uvicorn's h11 one with a header timeout and a connection limit
    (:mod:`radserve.server.connections`).

    uvicorn's access log is off (it logs query strings, and QIDO-RS query values may be
    patient names; :class:`RequestContextMiddleware` logs requests without them) and
    uvicorn leaves logging configuration to the application. The access logger is disabled
    too, so that no handler attached to it later (a test's log capture) revives it.
    """
    logging.getLogger("uvicorn.access").disabled = True
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        http=guarded_protocol(header_timeout_s=header_timeout_s, max_connections=max_connections),
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=30,
    )
