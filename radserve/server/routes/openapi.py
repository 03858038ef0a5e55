"""The API description, ``GET /openapi.json`` (role ``read``).

FastAPI's own ``/docs`` and ``/redoc`` pages are off: they load their scripts from a public
CDN, a fetch from outside the hospital network in a clinician's browser. Point any OpenAPI
tool (Swagger UI, Redoc, code generators) at ``/openapi.json`` with a token instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from radserve.server.deps import require_role
from radserve.server.routes.api_description import AUTHENTICATED, describe
from radserve.server.settings import Role

router = APIRouter(tags=["api"])


@router.get(
    "/openapi.json",
    summary="The OpenAPI description of this API",
    dependencies=[Depends(require_role(Role.READ))],
    responses=AUTHENTICATED,
)
def openapi(request: Request) -> dict[str, Any]:
    """The OpenAPI 3 document of every route."""
    return describe(request.app.openapi())
