"""The OHIF viewer at ``/viewer`` (a single-page app over this server's DICOMweb).

Viewer pages need a browser session (``/login``); without one, they redirect to the login
form. The viewer's own code and assets (open-source files, no patient data) are served
without one, so the login page can be the only page an anonymous browser sees. Every answer
carries the cross-origin isolation headers OHIF needs for ``SharedArrayBuffer``; unknown
paths without a file extension fall back to ``index.html`` (the app's own routes).
"""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from radserve.server.deps import StateDep
from radserve.server.errors import AuthenticationError, ViewerNotInstalledError
from radserve.server.session import SESSION_COOKIE
from radserve.server.settings import Role
from radserve.server.viewer import VIEWER_PATH, ViewerSite
from radserve.server.viewer.site import APP_CONFIG

router = APIRouter(tags=["viewer"], include_in_schema=False)

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
_MEDIA_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}


@router.get(VIEWER_PATH)
def viewer_root() -> RedirectResponse:
    """The viewer's study list."""
    return RedirectResponse(f"{VIEWER_PATH}/", status_code=307)


@router.get(VIEWER_PATH + "/{path:path}")
def viewer_file(request: Request, state: StateDep, path: str) -> Response:
    """A viewer file, the generated configuration, or the app's page."""
    site = _site(state.viewer)
    if path == APP_CONFIG:
        return Response(
            site.app_config,
            media_type="text/javascript",
            headers={**ISOLATION_HEADERS, "Cache-Control": "no-store"},
        )
    found = site.file(path) if path != "index.html" else None
    if found is not None:
        media_type = _MEDIA_TYPES.get(found.suffix) or mimetypes.guess_type(found.name)[0]
        return FileResponse(
            found,
            media_type=media_type or "application/octet-stream",
            headers={**ISOLATION_HEADERS, "Cache-Control": "public, max-age=3600"},
        )
    if PurePosixPath(path).suffix and path != "index.html":
        return Response(status_code=404, headers=ISOLATION_HEADERS)
    if not _has_session(request, state):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return Response(
        site.index_html,
        media_type="text/html",
        headers={**ISOLATION_HEADERS, "Cache-Control": "no-store"},
    )


def _site(site: ViewerSite | None) -> ViewerSite:
    if site is None:
        raise ViewerNotInstalledError(
            "the viewer is not installed: run `radserve viewer install DIR` and set "
            "RADSERVE_VIEWER_DIR"
        )
    return site


def _has_session(request: Request, state: StateDep) -> bool:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return False
    try:
        principal = state.authenticator.principal_of_session(cookie, state.sessions)
    except AuthenticationError:
        return False
    return Role.READ in principal.roles
