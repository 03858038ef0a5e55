"""QIDO-RS (PS3.18 10.6): search studies, series and instances.

Query parameters: matching keys by keyword or tag (``PatientID=...``, ``00100020=...``) with
the matching the store implements (:mod:`radserve.server.store.query`), ``limit``,
``offset``, ``includefield`` (checked; every indexed attribute is returned anyway) and
``fuzzymatching`` (``true`` gets a ``Warning: 299`` saying it is not supported, PS3.18
8.3.4.2: matching is never fuzzy). A key the store cannot match on is a 400 naming it.

Results: a DICOM JSON array (``application/dicom+json``, or ``application/json``) or PS3.19
XML, one ``multipart/related; type="application/dicom+xml"`` part per result (an Accept
header allowing none of these is 406), with the Retrieve URL of each result and
every attribute PS3.18 Tables 10.6.3-3/4/5 require of its level, empty where the data have
none; Instance Availability is ONLINE (everything is on this server's disk). No match is
200 with ``[]`` (PS3.18 2026a 11.9.3.1 allows 204 only in older editions). At most
:data:`MAX_RESULTS` results per request; when more match, a ``Warning`` header says so and
``offset`` pages on.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydicom.datadict import keyword_for_tag

from radserve.dicom_io import native_dicom_model
from radserve.server.deps import StoreDep, dicom_json_response, dicomweb_url, require_role
from radserve.server.routes.api_description import (
    AUTHENTICATED,
    DICOM_JSON_RESULTS,
    errors,
    qido_parameters,
)
from radserve.server.routes.retrieve import Offer, multipart_response, negotiate
from radserve.server.settings import Role
from radserve.server.store.instances import InstanceQuery, InstanceStore, QueryError, QueryLevel
from radserve.server.store.query import check_keyword

router = APIRouter(
    prefix="/dicomweb",
    tags=["QIDO-RS"],
    dependencies=[Depends(require_role(Role.READ))],
    default_response_class=Response,
    responses={**AUTHENTICATED, **DICOM_JSON_RESULTS, **errors(400, 406)},
)

MAX_RESULTS = 5000
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_COUNT = re.compile(r"[0-9]{1,19}")
_RETRIEVE_URL = "00081190"
_MORE_RESULTS = '299 radserve "There are additional results that can be requested"'
_NOT_FUZZY = (  # PS3.18 8.3.4.2
    '299 radserve "The fuzzymatching parameter is not supported. '
    'Only literal matching has been performed."'
)
_INSTANCE_AVAILABILITY = "00080056"
_DICOM_XML = "application/dicom+xml"
_OFFERS = (
    Offer("application/dicom+json"),
    Offer("application/json"),
    Offer("multipart/related", _DICOM_XML),
)
# PS3.18 Tables 10.6.3-3 (study), 10.6.3-4 (series), 10.6.3-5 (instance): the attributes a
# result shall hold, empty when unknown (tag: VR); Timezone Offset only where known.
_REQUIRED: dict[QueryLevel, dict[str, str]] = {
    QueryLevel.STUDY: {
        "00080020": "DA",  # Study Date
        "00080030": "TM",  # Study Time
        "00080050": "SH",  # Accession Number
        "00080056": "CS",  # Instance Availability
        "00080061": "CS",  # Modalities in Study
        "00080090": "PN",  # Referring Physician's Name
        "00100010": "PN",  # Patient's Name
        "00100020": "LO",  # Patient ID
        "00100030": "DA",  # Patient's Birth Date
        "00100040": "CS",  # Patient's Sex
        "0020000D": "UI",  # Study Instance UID
        "00200010": "SH",  # Study ID
        "00201206": "IS",  # Number of Study Related Series
        "00201208": "IS",  # Number of Study Related Instances
    },
    QueryLevel.SERIES: {
        "00080060": "CS",  # Modality
        "0008103E": "LO",  # Series Description
        "0020000E": "UI",  # Series Instance UID
        "00200011": "IS",  # Series Number
        "00201209": "IS",  # Number of Series Related Instances
        "00400244": "DA",  # Performed Procedure Step Start Date
        "00400245": "TM",  # Performed Procedure Step Start Time
    },
    QueryLevel.IMAGE: {
        "00080016": "UI",  # SOP Class UID
        "00080018": "UI",  # SOP Instance UID
        "00080056": "CS",  # Instance Availability
        "00200013": "IS",  # Instance Number
        "00280010": "US",  # Rows
        "00280011": "US",  # Columns
        "00280100": "US",  # Bits Allocated
        "00280008": "IS",  # Number of Frames
    },
}


def _keyword(key: str) -> str:
    if _TAG.fullmatch(key):
        keyword = keyword_for_tag(int(key, 16))
        if not keyword:
            raise QueryError(f"{key} is not a known DICOM attribute tag")
        return keyword
    if "." in key:
        raise QueryError("sequence matching (dotted attribute paths) is not supported")
    check_keyword(key)
    return key


def _non_negative(name: str, value: str) -> int:
    if not _COUNT.fullmatch(value):  # ASCII digits only: int() also takes "+1", " 1", "1_0"
        raise QueryError(f"{name} must be a non-negative integer")
    return int(value)


def parse_query(
    request: Request,
    level: QueryLevel,
    *,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
) -> InstanceQuery:
    """The store query of a QIDO-RS request.

    Raises:
        QueryError: A malformed or unsupported parameter.
    """
    match: dict[str, str] = {}
    limit = MAX_RESULTS
    offset = 0
    for key, value in request.query_params.multi_items():
        if key == "limit":
            limit = min(_non_negative(key, value), MAX_RESULTS)
        elif key == "offset":
            offset = _non_negative(key, value)
        elif key == "includefield":
            for field in value.split(","):
                if field.strip() and field.strip() != "all":
                    _keyword(field.strip())
        elif key == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise QueryError("fuzzymatching must be true or false")
        else:
            keyword = _keyword(key)
            if keyword in match:
                raise QueryError(f"{keyword} is given more than once")
            match[keyword] = value
    return InstanceQuery(
        level=level,
        match=match,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        limit=limit + 1,  # one more, to know whether more match
        offset=offset,
    )


def _search(request: Request, store: InstanceStore, query: InstanceQuery) -> Response:
    offer = negotiate(request.headers.get("accept"), _OFFERS)
    results = store.search(query)
    limit = (query.limit or 1) - 1
    warnings = [_MORE_RESULTS] if len(results) > limit else []
    if request.query_params.get("fuzzymatching", "").lower() == "true":
        warnings.append(_NOT_FUZZY)
    base = dicomweb_url(request)
    required = _REQUIRED[query.level]
    for result in results[:limit]:
        result[_RETRIEVE_URL] = {"vr": "UR", "Value": [_retrieve_url(base, query.level, result)]}
        if _INSTANCE_AVAILABILITY in required:
            result[_INSTANCE_AVAILABILITY] = {"vr": "CS", "Value": ["ONLINE"]}
        for tag, vr in required.items():
            result.setdefault(tag, {"vr": vr})
    headers = {"Warning": ", ".join(warnings)} if warnings else {}
    if offer.part_type == _DICOM_XML:  # PS3.18 10.6.3.2: one part per result
        response = multipart_response(
            _DICOM_XML, [(_DICOM_XML, native_dicom_model(r)) for r in results[:limit]]
        )
        response.headers.update(headers)
        return response
    return dicom_json_response(results[:limit], headers=headers)


def _retrieve_url(base: str, level: QueryLevel, result: dict[str, Any]) -> str:
    def uid(tag: str) -> str:
        return str(result[tag]["Value"][0])

    url = f"{base}/studies/{uid('0020000D')}"
    if level is not QueryLevel.STUDY:
        url += f"/series/{uid('0020000E')}"
    if level is QueryLevel.IMAGE:
        url += f"/instances/{uid('00080018')}"
    return url


@router.get(
    "/studies", summary="Search for studies", openapi_extra=qido_parameters(QueryLevel.STUDY)
)
def search_studies(request: Request, store: StoreDep) -> Response:
    """Studies matching the query parameters."""
    return _search(request, store, parse_query(request, QueryLevel.STUDY))


@router.get(
    "/series",
    summary="Search for series of any study",
    openapi_extra=qido_parameters(QueryLevel.SERIES),
)
def search_series(request: Request, store: StoreDep) -> Response:
    """Series of any study matching the query parameters."""
    return _search(request, store, parse_query(request, QueryLevel.SERIES))


@router.get(
    "/studies/{study}/series",
    summary="Search for series of a study",
    openapi_extra=qido_parameters(QueryLevel.SERIES),
)
def search_study_series(request: Request, store: StoreDep, study: str) -> Response:
    """Series of one study matching the query parameters."""
    return _search(
        request, store, parse_query(request, QueryLevel.SERIES, study_instance_uid=study)
    )


@router.get(
    "/instances",
    summary="Search for instances of any study",
    openapi_extra=qido_parameters(QueryLevel.IMAGE),
)
def search_instances(request: Request, store: StoreDep) -> Response:
    """Instances of any study matching the query parameters."""
    return _search(request, store, parse_query(request, QueryLevel.IMAGE))


@router.get(
    "/studies/{study}/instances",
    summary="Search for instances of a study",
    openapi_extra=qido_parameters(QueryLevel.IMAGE),
)
def search_study_instances(request: Request, store: StoreDep, study: str) -> Response:
    """Instances of one study matching the query parameters."""
    return _search(request, store, parse_query(request, QueryLevel.IMAGE, study_instance_uid=study))


@router.get(
    "/studies/{study}/series/{series}/instances",
    summary="Search for instances of a series",
    openapi_extra=qido_parameters(QueryLevel.IMAGE),
)
def search_series_instances(request: Request, store: StoreDep, study: str, series: str) -> Response:
    """Instances of one series matching the query parameters."""
    query = parse_query(
        request, QueryLevel.IMAGE, study_instance_uid=study, series_instance_uid=series
    )
    return _search(request, store, query)
