"""The jobs API: ``POST /jobs`` (role ``submit``), ``GET /jobs``, ``GET /jobs/{id}`` and
``GET /jobs/{id}/features`` (role ``read``).

``POST /jobs`` takes ``{"study_instance_uid", "series_instance_uid"?, "model", "destinations"?,
"source"?}``: ``model`` is ``name`` (its newest version) or ``name/version``; ``destinations``
are names of configured destinations (default: all of them; ``[]`` for none); ``source`` is
``local`` (default: the study must be in the store) or the name of a configured pull source.
The token is checked before any of the body is read, and the body is read up to
:data:`MAX_JOB_REQUEST_BYTES` (413 beyond). It answers 202 with the job and a ``Location``
header, 400 for a malformed body or an unknown destination or source, 404 for an unknown
model or a study (series) the store does not hold, and 503 with ``Retry-After`` when the
queue is full. A job shows its state, stage, per-stage timings,
error, result UIDs, one export record per destination (attempts, last error, next try) and,
for a model with radiomics, ``radiomics``: the parameter set and per segment its label,
name, volume, number of features and skipped features.

``GET /jobs/{id}/features`` returns the job's whole feature table: JSON
(``{"job_id", "parameter_set", "segments": [{label, segment, features: [{name, value,
ibsi_code, unit, code}], skipped, ...}]}``), or PyRadiomics' batch CSV (one row per
segment: ``Case`` the job id, ``Image`` the series, ``Mask`` the SEG, then one column per
feature) with ``?format=csv`` or ``Accept: text/csv``. A job without findings has an empty
table. 404 for an unknown job and for a job without a feature table (its model computes no
radiomics, or it has not finished).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from radserve.radiomics import feature_csv
from radserve.server.deps import JobsDep, StateDep, require_role
from radserve.server.errors import (
    MalformedRequestError,
    NotAcceptableError,
    ServiceBusyError,
)
from radserve.server.jobs.queue import Job, JobFeatures, JobSpec, JobState, QueueFullError
from radserve.server.routes.api_description import AUTHENTICATED, answers, errors
from radserve.server.routes.bodies import read_bounded_body
from radserve.server.routes.schemas import JobList, JobView
from radserve.server.settings import LOCAL_SOURCE, Role
from radserve.server.store.instances import (
    InstanceNotFoundError,
    InstanceQuery,
    InstanceStore,
    QueryLevel,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"], responses={**AUTHENTICATED, **errors(400)})

_UID = r"^[0-9]+(\.[0-9]+)*$"
_MODEL = r"^[a-z0-9][a-z0-9._-]*(/[0-9A-Za-z.+-]+)?$"
MAX_LIMIT = 1000
# Retry-After of a full queue when the back-pressure has no estimate.
DEFAULT_RETRY_AFTER_S = 30.0
# A job request is a few UIDs and names: far below this.
MAX_JOB_REQUEST_BYTES = 64 * 1024
CSV = "text/csv"
JSON = "application/json"


class JobRequest(BaseModel):
    """The body of ``POST /jobs``."""

    model_config = ConfigDict(extra="forbid")

    study_instance_uid: str = Field(pattern=_UID, max_length=64)
    series_instance_uid: str | None = Field(default=None, pattern=_UID, max_length=64)
    model: str = Field(pattern=_MODEL, max_length=130)
    destinations: list[str] | None = Field(default=None, max_length=64)
    source: str = Field(default=LOCAL_SOURCE, max_length=64)


def _time(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")


def job_json(job: Job) -> dict[str, Any]:
    """The JSON view of a job."""
    spec = job.spec
    return {
        "id": job.id,
        "state": job.state.value,
        "stage": job.stage.value,
        "origin": spec.origin,
        "study_instance_uid": spec.study_instance_uid,
        "series_instance_uid": spec.series_instance_uid,
        "model": {"name": spec.model_name, "version": spec.model_version},
        "source": spec.source,
        "destinations": list(spec.destinations),
        "attempts": job.attempts,
        "provider": job.provider,
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
        "updated_at": _time(job.updated_at),
        "timings_s": dict(job.timings_s),
        "error": job.error,
        "results": [
            {
                "kind": r.kind,
                "series_instance_uid": r.series_instance_uid,
                "sop_instance_uid": r.sop_instance_uid,
            }
            for r in job.results
        ],
        "exports": [
            {
                "destination": e.destination,
                "state": e.state.value,
                "attempts": e.attempts,
                "last_error": e.last_error,
                "next_attempt_at": _time(e.next_attempt_at),
                "delivered_at": _time(e.delivered_at),
            }
            for e in job.exports
        ],
        "radiomics": _features_json(job.id, job.features),
        "conformance": dict(job.conformance) if job.conformance is not None else None,
    }


def _features_json(job_id: str, features: JobFeatures | None) -> dict[str, Any] | None:
    if features is None:
        return None
    return {
        "parameter_set": features.parameter_set,
        "feature_table": f"/jobs/{job_id}/features",
        "segments": [
            {
                "label": s.label,
                "segment": s.segment,
                "volume_mm3": s.volume_mm3,
                "feature_count": s.feature_count,
                "skipped": [{"name": name, "reason": reason} for name, reason in s.skipped],
            }
            for s in features.summary
        ],
    }


def _job_request(body: bytes) -> JobRequest:
    try:
        return JobRequest.model_validate_json(body)
    except ValidationError as exc:
        problems = [
            ".".join(str(part) for part in ("body", *error.get("loc", ())))
            + ": "
            + error.get("msg", "")
            for error in exc.errors(include_input=False)
        ]  # without the input values, which may be patient data
        raise MalformedRequestError("invalid request: " + "; ".join(problems)[:500]) from exc


@router.post(
    "",
    status_code=202,
    summary="Create a job",
    dependencies=[Depends(require_role(Role.SUBMIT))],
    response_model=JobView,
    responses=errors(404, 408, 413, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": JobRequest.model_json_schema()}},
        }
    },
)
async def create_job(request: Request, state: StateDep, jobs: JobsDep) -> JSONResponse:
    """Queue a job running a model on a study or series."""
    # The role dependency has run: nothing of the body is read before authentication.
    idle_timeout_s = state.settings.body_idle_timeout_s
    body = _job_request(await read_bounded_body(request, MAX_JOB_REQUEST_BYTES, idle_timeout_s))
    return await run_in_threadpool(_create_job, body, state, jobs)


def _create_job(body: JobRequest, state: StateDep, jobs: JobsDep) -> JSONResponse:
    services = jobs
    settings = state.settings
    model = services.registry.resolve(body.model)
    configured = [d.name for d in settings.destinations]
    destinations = (
        configured if body.destinations is None else list(dict.fromkeys(body.destinations))
    )
    unknown = [name for name in destinations if name not in configured]
    if unknown:
        raise MalformedRequestError(
            f"unknown destinations {unknown} (configured: {configured or 'none'})"
        )
    sources = [LOCAL_SOURCE, *(s.name for s in settings.pull_sources)]
    if body.source not in sources:
        raise MalformedRequestError(f"unknown source {body.source!r} (configured: {sources})")
    if body.source == LOCAL_SOURCE:
        _check_in_store(state.store, body.study_instance_uid, body.series_instance_uid)
    spec = JobSpec(
        study_instance_uid=body.study_instance_uid,
        series_instance_uid=body.series_instance_uid,
        model_name=model.name,
        model_version=model.version,
        source=body.source,
        destinations=tuple(destinations),
        origin="api",
    )
    try:
        job = services.queue.submit(spec, max_queued=services.queue_limit.current())
    except QueueFullError as exc:
        retry_after_s = state.backpressure() or DEFAULT_RETRY_AFTER_S
        raise ServiceBusyError(
            "the job queue is full; retry later", retry_after_s=retry_after_s
        ) from exc
    services.workers.wake()
    return JSONResponse(job_json(job), status_code=202, headers={"Location": f"/jobs/{job.id}"})


def _check_in_store(store: InstanceStore, study: str, series: str | None) -> None:
    level = QueryLevel.SERIES if series else QueryLevel.STUDY
    query = InstanceQuery(
        level=level, study_instance_uid=study, series_instance_uid=series, limit=1
    )
    if not store.search(query):
        what = "series" if series else "study"
        raise InstanceNotFoundError(f"no such {what} in the store (use a pull source?)")


@router.get(
    "",
    summary="List jobs",
    dependencies=[Depends(require_role(Role.READ))],
    response_model=JobList,
)
def list_jobs(
    jobs_: JobsDep,
    state: JobState | None = None,
    study_instance_uid: Annotated[str | None, Query(pattern=_UID, max_length=64)] = None,
    series_instance_uid: Annotated[str | None, Query(pattern=_UID, max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Jobs matching the filters, newest first."""
    jobs = jobs_.queue.find(
        state=state,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        model_name=model,
        limit=limit,
        offset=offset,
    )
    return {"jobs": [job_json(job) for job in jobs]}


@router.get(
    "/{job_id}",
    summary="One job",
    dependencies=[Depends(require_role(Role.READ))],
    response_model=JobView,
    responses=errors(404),
)
def get_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    """A job: state, stage, timings, error, results and exports."""
    return job_json(jobs.queue.get(job_id))


@router.get(
    "/{job_id}/features",
    summary="A job's radiomic feature table (JSON or CSV)",
    dependencies=[Depends(require_role(Role.READ))],
    response_class=Response,
    responses={
        **answers(200, "The feature table", JSON, CSV, schema={"type": "object"}),
        **errors(404, 406),
    },
)
def get_job_features(
    job_id: str,
    request: Request,
    jobs: JobsDep,
    format_name: Annotated[str | None, Query(alias="format", pattern="^(json|csv)$")] = None,
) -> Response:
    """The job's feature table: JSON, or CSV with ``?format=csv`` or ``Accept: text/csv``."""
    queue = jobs.queue
    parameter_set, segments = queue.feature_table(job_id)
    media_type = format_media_type(format_name, request.headers.get("accept"))
    if media_type == CSV:
        job = queue.get(job_id)
        seg = [r.sop_instance_uid for r in job.results if r.kind == "SEG"]
        text = feature_csv(
            segments,
            case=job_id,
            image=job.spec.series_instance_uid or "",
            mask=seg[0] if seg else "",
        )
        return Response(
            text,
            media_type=CSV,
            headers={"Content-Disposition": f'attachment; filename="{job_id}-features.csv"'},
        )
    return JSONResponse({"job_id": job_id, "parameter_set": parameter_set, "segments": segments})


def format_media_type(format_name: str | None, accept: str | None) -> str:
    """JSON or CSV: the ``format`` parameter wins, else the Accept header's preference.

    Raises:
        NotAcceptableError: Accept lists neither JSON nor CSV (nor a wildcard).
    """
    if format_name is not None:
        return CSV if format_name == "csv" else JSON
    if not accept:
        return JSON
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(accept.split(",")):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        offered = {JSON: JSON, CSV: CSV, "application/*": JSON, "text/*": CSV, "*/*": JSON}
        if media in offered and quality > 0:
            candidate = (quality, -position, offered[media])
            if best is None or candidate > best:
                best = candidate
    if best is None:
        raise NotAcceptableError(f"the feature table is available as {JSON} or {CSV}")
    return best[2]
