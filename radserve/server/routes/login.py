"""Browser login: a form that turns an API token into a session cookie (``/login``).

``POST /login`` checks the token (it must hold the ``read`` role, which the viewer needs)
and sets the ``radserve_session`` cookie: HttpOnly, ``SameSite=Strict``, ``Secure`` over
HTTPS (or as ``session_cookie_secure`` says), lasting ``session_ttl_s``. The cookie
authenticates safe (GET, HEAD) requests only; see :func:`radserve.server.deps.require_any_role`.
``POST /logout`` clears it. The form body is read up to :data:`MAX_FORM_BYTES` before
anything else is done with it. ``next`` (where to go after login) must be a path on this
server.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from radserve.server.deps import StateDep
from radserve.server.errors import (
    AuthenticationError,
    MalformedRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from radserve.server.session import SESSION_COOKIE
from radserve.server.settings import Role
from radserve.server.viewer import VIEWER_PATH

logger = logging.getLogger(__name__)

router = APIRouter(tags=["login"], include_in_schema=False)

MAX_FORM_BYTES = 8 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>radserve - log in</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #0b1a2e; color: #e6edf5;
       display: flex; align-items: center; justify-content: center; height: 100vh; margin: 0; }}
form {{ background: #13294b; padding: 2em; border-radius: 8px; width: 22em; }}
input {{ width: 100%; box-sizing: border-box; padding: .6em; margin: .5em 0 1em; }}
button {{ padding: .6em 1.5em; }} .error {{ color: #ff9b9b; }}
</style></head>
<body><form method="post" action="/login">
<h1>radserve</h1>
<p>AI results require review by a qualified physician.</p>
{error}
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button>
</form></body></html>
"""


@router.get("/login")
def login_form(next: str = VIEWER_PATH + "/") -> HTMLResponse:
    """The login form."""
    return _page(_local_path(next))


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    """Check a token and open a browser session; back to the form if it is not valid."""
    form = await _read_form(request)
    target = _local_path(form.get("next", VIEWER_PATH + "/"))
    try:
        principal, cookie = state.authenticator.open_session(form.get("token", ""), state.sessions)
    except AuthenticationError:
        logger.info("login refused: not a configured token")
        return _page(target, error="That token is not valid.", status_code=401)
    if Role.READ not in principal.roles:
        logger.info("login refused: token %s lacks the read role", principal.name)
        return _page(target, error="That token may not read studies.", status_code=403)
    logger.info("browser session opened for token %s", principal.name)
    response = RedirectResponse(target, status_code=303, headers=_NO_STORE)
    secure = state.settings.session_cookie_secure
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(state.sessions.ttl_s),
        path="/",
        secure=request.url.scheme == "https" if secure is None else secure,
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    """End the browser session."""
    response = RedirectResponse("/login", status_code=303, headers=_NO_STORE)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _page(target: str, *, error: str = "", status_code: int = 200) -> HTMLResponse:
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    body = _PAGE.format(error=message, next=html.escape(target, quote=True))
    return HTMLResponse(body, status_code=status_code, headers=_NO_STORE)


def _local_path(target: str) -> str:
    """``target`` if it is a path on this server, else the viewer (no open redirect)."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 for c in target)
    ):
        return VIEWER_PATH + "/"
    return target


async def _read_form(request: Request) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise UnsupportedMediaTypeError(f"the login form is sent as {FORM_TYPE}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLargeError(f"a login form has at most {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=8)
    except ValueError as exc:
        raise MalformedRequestError("the login form has too many fields") from exc
    return {name: values[0] for name, values in fields.items() if values}
