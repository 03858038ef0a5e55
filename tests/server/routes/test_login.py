"""Browser sessions: the login form, the session cookie and where it is accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from radserve.server import SESSION_COOKIE, SessionSigner, create_app, hash_token

from .conftest import auth, make_settings, token_of

pytestmark = pytest.mark.anyio

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _login(
    client: httpx.AsyncClient, token: str, next_path: str = "/viewer/"
) -> httpx.Response:
    return await client.post(
        "/login", content=f"token={token}&next={next_path}".encode(), headers=FORM
    )


async def test_login_sets_an_httponly_strict_cookie_that_reads(browser: httpx.AsyncClient) -> None:
    response = await _login(browser, token_of("reader"), "/viewer/viewer?StudyInstanceUIDs=1.2")
    assert response.status_code == 303
    assert response.headers["location"] == "/viewer/viewer?StudyInstanceUIDs=1.2"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; set over HTTPS
    assert token_of("reader") not in cookie and hash_token(token_of("reader")) not in cookie
    studies = await browser.get("/dicomweb/studies")
    assert studies.status_code == 200


async def test_the_cookie_does_not_authorize_unsafe_methods(browser: httpx.AsyncClient) -> None:
    await _login(browser, token_of("both"))
    stow = await browser.post(
        "/dicomweb/studies",
        content=b"",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=x'},
    )
    assert stow.status_code == 401  # a cross-site form cannot store in the user's name


async def test_bad_tokens_and_roles_are_refused(browser: httpx.AsyncClient) -> None:
    refused = await _login(browser, "not-a-token")
    assert refused.status_code == 401 and SESSION_COOKIE not in refused.headers.get(
        "set-cookie", ""
    )
    assert "not valid" in refused.text
    no_read = await _login(browser, token_of("submitter"))
    assert no_read.status_code == 403 and "set-cookie" not in no_read.headers
    assert (await browser.get("/dicomweb/studies")).status_code == 401


async def test_forged_tampered_and_expired_cookies_are_refused(
    browser: httpx.AsyncClient, app: FastAPI
) -> None:
    state = app.state.radserve
    good = state.sessions.issue("reader", hash_token(token_of("reader")))
    other_key = SessionSigner(b"k" * 32, ttl_s=60).issue("reader", hash_token(token_of("reader")))
    expired = state.sessions.issue("reader", hash_token(token_of("reader")), now=0.0)
    signature = good.partition(".")[2]
    tampered = state.sessions.issue("admin", hash_token(token_of("reader"))).split(".")[0]
    for value, status in (
        (good, 200),
        (other_key, 401),
        (expired, 401),
        (f"{tampered}.{signature}", 401),
        ("garbage", 401),
        ("x" * 5000, 401),
    ):
        browser.cookies.clear()
        browser.cookies.set(SESSION_COOKIE, value)
        response = await browser.get("/dicomweb/studies")
        assert response.status_code == status, value[:40]


async def test_a_token_replaced_in_the_configuration_ends_its_sessions(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "a")
    first = create_app(settings)
    cookie = first.state.radserve.sessions.issue("reader", hash_token(token_of("reader")))
    # The same name with a new secret, and the same signing key: the old session is over.
    tokens = [
        t if t.name != "reader" else t.model_copy(update={"sha256": "ab" * 32})
        for t in settings.tokens
    ]
    second = create_app(make_settings(tmp_path / "b").model_copy(update={"tokens": tuple(tokens)}))
    object.__setattr__(second.state.radserve, "sessions", first.state.radserve.sessions)
    for app, status in ((first, 200), (second, 401)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            client.cookies.set(SESSION_COOKIE, cookie)
            assert (await client.get("/dicomweb/studies")).status_code == status
        app.state.radserve.store.close()


async def test_sessions_survive_a_restart_with_a_configured_secret(tmp_path: Path) -> None:
    apps = [
        create_app(make_settings(tmp_path / name, session_secret="s3cr3t-" * 6))
        for name in ("a", "b")
    ]
    cookie = apps[0].state.radserve.sessions.issue("reader", hash_token(token_of("reader")))
    transport = httpx.ASGITransport(app=apps[1])
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        client.cookies.set(SESSION_COOKIE, cookie)
        assert (await client.get("/dicomweb/studies")).status_code == 200
    for app in apps:
        app.state.radserve.store.close()


def test_weak_session_secrets_are_refused(tmp_path: Path) -> None:
    from radserve.server import SettingsError

    with pytest.raises(SettingsError, match="session secret"):
        make_settings(tmp_path, session_secret="short")


async def test_next_must_stay_on_this_server(browser: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil", "javascript:alert(1)"):
        response = await _login(browser, token_of("reader"), target)
        assert response.status_code == 303
        assert response.headers["location"] == "/viewer/", target
    form = await browser.get("/login", params={"next": '"><script>alert(1)</script>'})
    assert form.status_code == 200 and "<script>alert" not in form.text


async def test_hostile_login_bodies_are_bounded(browser: httpx.AsyncClient) -> None:
    big = await browser.post("/login", content=b"token=" + b"a" * 20_000, headers=FORM)
    assert big.status_code == 413
    many = await browser.post("/login", content=b"&".join([b"a=1"] * 50), headers=FORM)
    assert many.status_code == 400
    wrong_type = await browser.post(
        "/login", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415


async def test_logout_clears_the_cookie(browser: httpx.AsyncClient) -> None:
    await _login(browser, token_of("reader"))
    response = await browser.post("/logout")
    assert response.status_code == 303
    assert (
        f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
        or "Max-Age=0" in response.headers["set-cookie"]
    )
    assert (await browser.get("/dicomweb/studies")).status_code == 401


async def test_a_bearer_token_still_works_beside_a_cookie(browser: httpx.AsyncClient) -> None:
    await _login(browser, token_of("reader"))
    response = await browser.get("/dicomweb/studies", headers=auth("admin"))
    assert response.status_code == 403  # the header wins: admin lacks read
