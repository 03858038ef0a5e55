"""STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies[/{study}]``.

Instances come as DICOM files (``multipart/related; type="application/dicom"``, below) or as
DICOM JSON metadata with bulk data parts (``type="application/dicom+json"``,
:mod:`radserve.server.routes.stow_json`); both end in the same batch, with the same
validation, durability and answer.

The body (``multipart/related; type="application/dicom"``) is streamed: chunks are gathered
to about a megabyte and handed to a worker thread, which parses them and writes each part
into a staging file of the store; a complete part is validated at once. All parts of a
request are made durable together (one batch: an fsync per file, two index commits), and the
answer is sent only after that.

The answer is DICOM JSON: Retrieve URL, Referenced SOP Sequence (stored) and Failed SOP
Sequence with a Failure Reason (PS3.18 Table I.2-2; 0111H, PS3.7 "Duplicate SOP Instance",
for an instance stored already with other content). A ``Warning`` header names each distinct
failure in words. Status: 200 all stored; 202 some stored; 400 none stored and every failure
is data radserve cannot understand; 409 none stored for other reasons (or a mixture); 500
when nothing was stored because the store itself failed (disk or index error).
Before the body is read: 401/403 (token), 503 + Retry-After (back-pressure), 415 (not
multipart/related of application/dicom), 400 (no boundary), 413 (Content-Length over
``max_request_bytes``; the body is also counted while it streams).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Request, Response
from pydicom.dataset import Dataset

from radserve.dicom_io import (
    DicomIOError,
    InstanceTooLargeError,
    InvalidDicomError,
    UnsupportedTransferSyntaxError,
)
from radserve.server.deps import (
    ServerState,
    StateDep,
    dicom_json_response,
    dicomweb_url,
    require_role,
)
from radserve.server.errors import (
    MalformedRequestError,
    PayloadTooLargeError,
    ServiceBusyError,
    UnsupportedMediaTypeError,
)
from radserve.server.routes.api_description import AUTHENTICATED, STOW_BODY, STOW_RESPONSES
from radserve.server.routes.bodies import body_chunks
from radserve.server.routes.multipart import (
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    parse_media_type,
)
from radserve.server.routes.stow_json import DICOM_JSON, JsonStowSession
from radserve.server.settings import Role
from radserve.server.store.batch import BatchOutcome
from radserve.server.store.instances import (
    DuplicateInstanceError,
    FailedInstance,
    InstanceRejectedError,
    InstanceStore,
    StagedFile,
    StoredInstance,
    StoreError,
    StoreFullError,
)

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/dicomweb",
    tags=["STOW-RS"],
    dependencies=[Depends(require_role(Role.SUBMIT))],
    default_response_class=Response,
    responses={**AUTHENTICATED, **STOW_RESPONSES},
)

# The study of ``/studies/{study}``: a UID (PS3.5 9.1), checked before the body is read.
StudyUID = Annotated[str, Path(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]
FEED_BYTES = 1024 * 1024  # body bytes handed to the worker thread at once
_MAX_WARNINGS = 5

# Failure Reason (0008,1197) values, PS3.18 Table I.2-2 and PS3.7 C.
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111


def failure_reason(error: DicomIOError) -> int:
    """The Failure Reason of an instance the store refused."""
    if isinstance(error, UnsupportedTransferSyntaxError):
        return TRANSFER_SYNTAX_NOT_SUPPORTED
    if isinstance(error, InstanceTooLargeError | StoreFullError):
        return OUT_OF_RESOURCES
    if isinstance(error, InvalidDicomError):
        return CANNOT_UNDERSTAND
    if isinstance(error, DuplicateInstanceError):
        return DUPLICATE_SOP_INSTANCE
    if isinstance(error, InstanceRejectedError):
        return DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    return PROCESSING_FAILURE


@dataclass(frozen=True)
class StowResult:
    """What one STOW-RS request stored and refused."""

    stored: tuple[StoredInstance, ...]
    failed: tuple[FailedInstance, ...]


class StowSession:
    """The synchronous side of one STOW-RS request: parse, stage, validate, commit.

    Args:
        store: Where the instances go.
        boundary: The multipart boundary.
        study_instance_uid: The study of the request URL, if any.
    """

    def __init__(
        self, store: InstanceStore, *, boundary: str, study_instance_uid: str | None
    ) -> None:
        self._store = store
        self._parser = MultipartParser(boundary)
        self._batch = store.batch()
        self._study_instance_uid = study_instance_uid
        self._staged: StagedFile | None = None
        self._refused: list[FailedInstance] = []
        self._parts = 0

    def feed(self, data: bytes) -> None:
        """Parse the next bytes of the body."""
        for event in self._parser.feed(data):
            if isinstance(event, PartData):
                if self._staged is not None:
                    self._staged.write(event.data)
            elif isinstance(event, PartStart):
                self._start(event)
            elif isinstance(event, PartEnd) and self._staged is not None:
                self._batch.add(self._staged, study_instance_uid=self._study_instance_uid)
                self._staged = None

    def _start(self, event: PartStart) -> None:
        self._parts += 1
        content_type = event.headers.get("content-type")
        if content_type is not None:
            media_type = parse_media_type(content_type).type
            if media_type != "application/dicom":
                error = InvalidDicomError(
                    f"part {self._parts} is {media_type}, not application/dicom"
                )
                self._refused.append(FailedInstance("", "", error))
                return
        self._staged = self._store.staged_file()

    def finish(self) -> StowResult:
        """Check the body was complete and store its instances durably.

        Raises:
            MalformedRequestError: The body is not complete, or holds no part.
        """
        self._parser.close()
        if self._parts == 0:
            raise MalformedRequestError("the request holds no parts")
        outcome = self._batch.commit()
        return StowResult(outcome.stored, (*self._refused, *outcome.failed))

    def abort(self) -> None:
        """Drop everything received."""
        if self._staged is not None:
            self._staged.discard()
            self._staged = None
        self._batch.abort()


def _boundary(content_type: str | None) -> tuple[str, str]:
    if not content_type:
        raise UnsupportedMediaTypeError(
            'STOW-RS needs Content-Type: multipart/related; type="application/dicom"'
        )
    media_type = parse_media_type(content_type)
    if media_type.type != "multipart/related":
        raise UnsupportedMediaTypeError(
            f'STOW-RS accepts multipart/related; type="application/dicom", not {media_type.type}'
        )
    part_type = media_type.parameters.get("type", "application/dicom").lower()
    if part_type not in ("application/dicom", DICOM_JSON):
        raise UnsupportedMediaTypeError(
            f"STOW-RS accepts parts of type application/dicom, or {DICOM_JSON} metadata "
            f"with bulk data, not {part_type}"
        )
    boundary = media_type.parameters.get("boundary")
    if not boundary:
        raise MalformedRequestError("multipart/related Content-Type has no boundary")
    return boundary, part_type


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError as exc:
        raise MalformedRequestError("Content-Length is not a number") from exc
    if length > limit:
        raise PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes")


async def _receive(
    request: Request, session: StowSession | JsonStowSession, limit: int, idle_timeout_s: float
) -> StowResult:
    received = 0
    pending = bytearray()
    async for chunk in body_chunks(request, idle_timeout_s):
        received += len(chunk)
        if received > limit:
            raise PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes")
        pending += chunk
        if len(pending) >= FEED_BYTES:
            data = bytes(pending)
            pending.clear()
            await anyio.to_thread.run_sync(session.feed, data)
    if pending:
        await anyio.to_thread.run_sync(session.feed, bytes(pending))
    outcome: StowResult | BatchOutcome = await anyio.to_thread.run_sync(session.finish)
    return StowResult(outcome.stored, outcome.failed)


async def _store(request: Request, state: ServerState, study_instance_uid: str | None) -> Response:
    context = state
    retry_after_s = context.backpressure()
    if retry_after_s is not None:
        raise ServiceBusyError(
            "the server is busy; retry later", retry_after_s=max(1, math.ceil(retry_after_s))
        )
    boundary, part_type = _boundary(request.headers.get("content-type"))
    limit = context.settings.max_request_bytes
    _check_declared_length(request, limit)
    session_type = JsonStowSession if part_type == DICOM_JSON else StowSession
    session = session_type(context.store, boundary=boundary, study_instance_uid=study_instance_uid)
    try:
        result = await _receive(request, session, limit, context.settings.body_idle_timeout_s)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(session.abort)
        raise
    ours = [f.error for f in result.failed if type(f.error) is StoreError]
    if ours and not result.stored:
        raise ours[0]  # the store failed (disk, index): a 500, not the client's conflict
    logger.info(
        "STOW-RS: %d stored (%d new), %d failed",
        len(result.stored),
        sum(1 for s in result.stored if s.created),
        len(result.failed),
    )
    return _response(result, dicomweb_url(request), study_instance_uid)


def _status(result: StowResult) -> int:
    if not result.failed:
        return 200
    if result.stored:
        return 202
    reasons = {failure_reason(f.error) for f in result.failed}
    return 400 if reasons == {CANNOT_UNDERSTAND} else 409


def _response(result: StowResult, base_url: str, study_instance_uid: str | None) -> Response:
    ds = Dataset()
    studies = {s.study_instance_uid for s in result.stored}
    if study_instance_uid is None and len(studies) == 1:
        study_instance_uid = studies.pop()
    if study_instance_uid is not None:
        ds.RetrieveURL = f"{base_url}/studies/{study_instance_uid}"
    if result.stored:
        ds.ReferencedSOPSequence = [_referenced(s, base_url) for s in result.stored]
    if result.failed:
        ds.FailedSOPSequence = [_failed(f) for f in result.failed]
    return dicom_json_response(
        ds.to_json_dict(),
        status_code=_status(result),
        headers=_warnings(result.failed),
    )


def _referenced(instance: StoredInstance, base_url: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = instance.sop_class_uid
    item.ReferencedSOPInstanceUID = instance.sop_instance_uid
    item.RetrieveURL = (
        f"{base_url}/studies/{instance.study_instance_uid}/series/"
        f"{instance.series_instance_uid}/instances/{instance.sop_instance_uid}"
    )
    return item


def _failed(failure: FailedInstance) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = failure.sop_class_uid
    item.ReferencedSOPInstanceUID = failure.sop_instance_uid
    item.FailureReason = failure_reason(failure.error)
    return item


_MAX_WARNING_CHARS = 160


def _warnings(failures: Sequence[FailedInstance]) -> dict[str, str]:
    messages = list(dict.fromkeys(str(f.error) for f in failures))[:_MAX_WARNINGS]
    if not messages:
        return {}
    quoted = [f'299 radserve "{_header_text(m)}"' for m in messages]
    return {"Warning": ", ".join(quoted)}


def _header_text(message: str) -> str:
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", message).replace("\\", "/").replace('"', "'")
    text = text.encode("ascii", "replace").decode("ascii")
    return text if len(text) <= _MAX_WARNING_CHARS else text[: _MAX_WARNING_CHARS - 3] + "..."


@router.post("/studies", summary="Store instances (STOW-RS)", openapi_extra=STOW_BODY)
async def store_instances(request: Request, state: StateDep) -> Response:
    """Store the instances of a multipart/related request, of any studies."""
    return await _store(request, state, None)


@router.post(
    "/studies/{study}",
    summary="Store instances of one study (STOW-RS)",
    openapi_extra=STOW_BODY,
)
async def store_study_instances(request: Request, state: StateDep, study: StudyUID) -> Response:
    """Store the instances of a multipart/related request, all of study ``study``."""
    return await _store(request, state, study)
