"""What ``/openapi.json`` says that FastAPI cannot see in a handler's signature: the media
types each route answers with, the error statuses it may answer, and the query parameters
and bodies that handlers read themselves (QIDO-RS matching keys, STOW-RS bodies).

The routes pass these to their decorators (``responses=``, ``openapi_extra=``), and
:func:`describe` corrects FastAPI's document where radserve answers otherwise (a request
that fails validation is a 400 here, never FastAPI's 422). The OpenAPI fuzz suite calls
every operation of the document on a running server and fails on any status or media type
the document does not list.
"""

from __future__ import annotations

import copy
from typing import Any

from radserve.server.routes.schemas import ErrorView
from radserve.server.session import SESSION_COOKIE
from radserve.server.store.index import ATTRIBUTES_BY_KEYWORD, MatchKind, QueryLevel
from radserve.server.store.query import MAX_OFFSET, matchable_keywords

DICOM_JSON = "application/dicom+json"
MULTIPART_RELATED = "multipart/related"

_WHY = {
    400: "Malformed request: a bad parameter, header or body",
    401: "No valid token (or browser session)",
    403: "The token lacks the role this route needs",
    404: "No such study, series, instance, frame, job or model",
    406: "Nothing this route sends matches the Accept header",
    408: "The body arrived too slowly",
    409: "No instance stored, for reasons other than unreadable data",
    413: "The body exceeds the configured limit",
    415: "The body's media type is not one this route reads",
    422: "The stored data cannot be sent in the form asked for",
    503: "Busy (the job queue is full or the disk watermark reached): try after Retry-After",
}
_DICOM_JSON_ARRAY = {"type": "array", "items": {"type": "object"}}
_BINARY = {"type": "string", "format": "binary"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries of error statuses: each a JSON ``{"error": ...}`` body."""
    return {status: {"description": _WHY[status], "model": ErrorView} for status in statuses}


def answers(
    status: int, description: str, *media_types: str, schema: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry of a success answered in ``media_types``."""
    content = {media_type: {"schema": schema or {}} for media_type in media_types}
    return {status: {"description": description, "content": content}}


AUTHENTICATED = errors(401, 403)
"""Every route behind a token."""

DICOM_JSON_RESULTS = answers(
    200,
    "The matches, as DICOM JSON (or PS3.19 XML, one multipart part each)",
    DICOM_JSON,
    "application/json",
    MULTIPART_RELATED,
    schema=_DICOM_JSON_ARRAY,
)

STOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    **answers(200, "Every instance stored", DICOM_JSON, schema={"type": "object"}),
    **answers(202, "Some instances stored, some not", DICOM_JSON, schema={"type": "object"}),
    **answers(409, _WHY[409], DICOM_JSON, schema={"type": "object"}),
    **errors(408, 413, 415, 503),
    400: {
        "description": "No instance stored, none readable (DICOM JSON: the failed instances); "
        "or a malformed request (JSON)",
        "content": {
            DICOM_JSON: {"schema": {"type": "object"}},
            "application/json": {"schema": ErrorView.model_json_schema()},
        },
    },
}
STOW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'multipart/related; type="application/dicom" (one instance a part) or '
        'type="application/dicom+json" (metadata, then bulk data parts by Content-Location)',
        "content": {MULTIPART_RELATED: {"schema": _BINARY}},
    }
}

_TIME = r"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?"
_MATCHING = {
    # What the store accepts for each kind of attribute (PS3.4 C.2.2.2); empty: universal.
    MatchKind.DATE: {"type": "string", "pattern": r"^([0-9]{8}(-([0-9]{8})?)?|-[0-9]{8})?$"},
    MatchKind.TIME: {"type": "string", "pattern": rf"^({_TIME}(-({_TIME})?)?|-{_TIME})?$"},
    MatchKind.NUMBER: {"type": "string", "pattern": r"^(-?[0-9]{1,18})?$"},
}
_PAGING = [
    {
        "name": "limit",
        "in": "query",
        "description": "At most this many results (the server caps it)",
        "schema": {"type": "integer", "minimum": 0},
    },
    {
        "name": "offset",
        "in": "query",
        "description": "Skip this many results",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
    },
    {
        "name": "includefield",
        "in": "query",
        "description": "Attributes to include, by keyword or tag, comma-separated, or 'all'",
        "schema": {"type": "string"},
    },
    {
        "name": "fuzzymatching",
        "in": "query",
        "description": "Accepted; matching is never fuzzy",
        "schema": {"type": "boolean"},
    },
]


def qido_parameters(level: QueryLevel) -> dict[str, Any]:
    """The ``openapi_extra`` of a QIDO-RS search at ``level``: paging and every matching key
    the store takes there (by keyword; the tag, ``00100020``, works as well)."""
    keys = [
        {
            "name": keyword,
            "in": "query",
            "description": f"Match {keyword}",
            "schema": _MATCHING.get(_kind(keyword), {"type": "string"}),
        }
        for keyword in sorted(matchable_keywords(level))
    ]
    return {"parameters": [*_PAGING, *keys]}


def _kind(keyword: str) -> MatchKind:
    attribute = ATTRIBUTES_BY_KEYWORD.get(keyword)
    return attribute.kind if attribute is not None else MatchKind.TEXT  # ModalitiesInStudy


def describe(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's OpenAPI document) as radserve answers: the 422 FastAPI lists
    for request validation becomes radserve's 400, its validation schemas go, and every
    operation that can answer 401 names the credentials it takes (a token, or a session)."""
    described = copy.deepcopy(document)
    validation_ref = "#/components/schemas/HTTPValidationError"
    malformed = {
        "description": _WHY[400],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorView"}}},
    }
    for operations in described.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            validation = responses.get("422", {})
            schema = validation.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") == validation_ref:
                del responses["422"]
                responses.setdefault("400", malformed)
            if "401" in responses:
                operation["security"] = [{"bearer": []}, {"session": []}]
    schemas = described.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.setdefault("ErrorView", ErrorView.model_json_schema())
    described["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API token"},
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": SESSION_COOKIE,
            "description": "A browser session, from signing in at /login",
        },
    }
    return described
