"""The viewer at /viewer: installation checks, relocation, the files, headers and login gate.

The routes are tested on a small stand-in for OHIF's ``dist/`` built here (the same strings
the real release has where relocation changes them); the real release is installed by
``make`` and opened in a real browser by ``tests/server/viewer/test_browser.py``.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from radserve.server import (
    OHIF_VERSION,
    ViewerInstallError,
    app_config_js,
    create_app,
    install_viewer,
    installed_version,
    relocate_viewer,
)

from .conftest import make_settings, token_of

pytestmark = pytest.mark.anyio

INDEX = (
    '<!doctype html><html><head><script>window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><meta name="x" content="/assets/t.png">'
    '<a href="//cdn.example/x">x</a></head><body><div id="root"></div>'
    '<script src="/app.bundle.abc.js"></script></body></html>'
)
BUNDLE = 'var x = 1;\n__webpack_require__.p = "/";\nvar y = 2;\n'


def _dist(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "index.html").write_text(INDEX)
    (folder / "app.bundle.abc.js").write_text(BUNDLE)
    (folder / "app.css").write_text("@font-face{src:url(/f.woff2)} a{background:url(//x/y)}")
    (folder / "codec.wasm").write_bytes(b"\0asm\1\0\0\0")
    (folder / "app-config.js").write_text("window.config = {upstream: true};")
    (folder / "assets").mkdir()
    (folder / "assets" / "t.png").write_bytes(b"\x89PNG")
    (folder / "RADSERVE_VIEWER_VERSION").write_text(OHIF_VERSION)
    return folder


@pytest.fixture
def viewer_dir(tmp_path: Path) -> Path:
    folder = _dist(tmp_path / "viewer")
    relocate_viewer(folder, "/viewer")
    return folder


@pytest.fixture
async def viewer_app(tmp_path: Path, viewer_dir: Path) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(tmp_path, viewer_dir=viewer_dir))
    yield app
    app.state.radserve.store.close()


@pytest.fixture
async def browser(viewer_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=viewer_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _login(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/login",
        content=f"token={token_of('reader')}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 303


def test_relocation_moves_the_public_path_and_root_links(viewer_dir: Path) -> None:
    assert installed_version(viewer_dir) == OHIF_VERSION
    index = (viewer_dir / "index.html").read_text()
    assert 'window.PUBLIC_URL="/viewer/"' in index
    assert 'href="/viewer/manifest.json"' in index and 'src="/viewer/app.bundle.abc.js"' in index
    assert 'content="/viewer/assets/t.png"' in index
    assert 'href="//cdn.example/x"' in index  # not a root link
    assert '__webpack_require__.p = "/viewer/"' in (viewer_dir / "app.bundle.abc.js").read_text()
    assert (viewer_dir / "app.css").read_text() == (
        "@font-face{src:url(/viewer/f.woff2)} a{background:url(//x/y)}"
    )


def test_a_build_that_does_not_load_from_the_root_is_refused(tmp_path: Path) -> None:
    folder = _dist(tmp_path / "other")
    (folder / "app.bundle.abc.js").write_text('__webpack_require__.p = "/somewhere/";')
    with pytest.raises(ViewerInstallError, match="site root"):
        relocate_viewer(folder, "/viewer")


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_a_tarball_that_is_not_the_pinned_release_is_refused(tmp_path: Path) -> None:
    fake = _tarball(
        tmp_path / "ohif.tgz",
        {"package/dist/index.html": INDEX.encode(), "package/dist/a.js": BUNDLE.encode()},
    )
    with pytest.raises(ViewerInstallError, match="integrity mismatch"):
        install_viewer(tmp_path / "viewer", tarball=fake)
    assert not (tmp_path / "viewer").exists()


def test_a_missing_npm_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ViewerInstallError, match="cannot run"):
        install_viewer(tmp_path / "viewer", npm=str(tmp_path / "no-such-npm"))


def test_settings_refuse_a_folder_without_a_viewer(tmp_path: Path) -> None:
    from radserve.server import SettingsError

    with pytest.raises(SettingsError, match="holds no viewer"):
        make_settings(tmp_path, viewer_dir=tmp_path)


async def test_pages_need_a_session_and_assets_do_not(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/viewer/viewer", params={"StudyInstanceUIDs": "1.2.3"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fviewer%2Fviewer%3FStudyInstanceUIDs%3D1.2.3"
    asset = await browser.get("/viewer/app.bundle.abc.js")
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    await _login(browser)
    page = await browser.get("/viewer/viewer", params={"StudyInstanceUIDs": "1.2.3"})
    assert page.status_code == 200 and 'window.PUBLIC_URL="/viewer/"' in page.text
    assert page.headers["cache-control"] == "no-store"


async def test_every_answer_is_cross_origin_isolated(browser: httpx.AsyncClient) -> None:
    await _login(browser)
    for path in (
        "/viewer/",
        "/viewer/app.bundle.abc.js",
        "/viewer/codec.wasm",
        "/viewer/app-config.js",
    ):
        response = await browser.get(path)
        assert response.status_code == 200, path
        assert response.headers["cross-origin-opener-policy"] == "same-origin"
        assert response.headers["cross-origin-embedder-policy"] == "require-corp"
    wasm = await browser.get("/viewer/codec.wasm")
    assert wasm.headers["content-type"] == "application/wasm"


async def test_the_app_config_is_radserves_own(browser: httpx.AsyncClient) -> None:
    config = await browser.get("/viewer/app-config.js")
    assert "upstream" not in config.text
    assert config.text == app_config_js()
    assert '"loadMultiframeAsPart10": false' in config.text
    assert '"routerBasename": "/viewer"' in config.text
    assert 'window.location.origin + "/dicomweb"' in config.text


async def test_spa_fallback_and_missing_files(browser: httpx.AsyncClient) -> None:
    await _login(browser)
    assert (await browser.get("/viewer/some/app/route")).text.startswith("<!doctype html>")
    assert (await browser.get("/viewer/missing.js")).status_code == 404
    assert (await browser.get("/viewer")).headers["location"] == "/viewer/"


async def test_paths_cannot_leave_the_viewer_folder(
    browser: httpx.AsyncClient, viewer_dir: Path
) -> None:
    (viewer_dir.parent / "secret.txt").write_text("secret")
    (viewer_dir / ".hidden.js").write_text("hidden")
    for path in (
        "/viewer/../secret.txt",
        "/viewer/%2e%2e/secret.txt",
        "/viewer/assets/..%2f..%2fsecret.txt",
        "/viewer/.hidden.js",
        "/viewer/%00.js",
    ):
        response = await browser.get(path)
        assert "secret" not in response.text and "hidden" not in response.text, path
        assert response.status_code in (303, 404), path


async def test_no_viewer_configured_is_a_404_that_says_so(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/viewer/")
    app.state.radserve.store.close()
    assert response.status_code == 404
    assert "radserve viewer install" in response.text
