"""Installing the prebuilt OHIF viewer from npm: pinned version, integrity checked.

:func:`install_viewer` runs ``npm pack @ohif/app@<version>`` (which downloads only the
package's tarball, none of its build dependencies), checks the tarball against the pinned
Subresource Integrity hash, the one the npm registry publishes for that version, and
extracts its prebuilt ``dist/`` folder. Nothing is fetched when the server runs.

The prebuilt viewer expects to live at the site root: its webpack public path (where it
loads its code chunks, workers and codecs from), its ``PUBLIC_URL``, the links of
``index.html`` and the stylesheets' font URLs are ``/``. :func:`relocate_viewer` moves them
under the path radserve serves the viewer at (:data:`VIEWER_PATH`), the exact, known strings
of this release, and fails if they are not found (a release built otherwise).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
OHIF_INTEGRITY = (
    "sha512-"
    "WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
VIEWER_PATH = "/viewer"
VERSION_FILE = "RADSERVE_VIEWER_VERSION"
_WEBPACK_PUBLIC_PATH = '__webpack_require__.p = "/"'
_PUBLIC_URL = 'window.PUBLIC_URL="/"'
_CSS_ROOT_URL = re.compile(r"url\(/(?!/)")
_ROOT_LINK = re.compile(r'\b(href|src|content)="/(?!/)')
_DIST_PREFIX = "package/dist/"
NPM_TIMEOUT_S = 600.0


class ViewerInstallError(RuntimeError):
    """The viewer could not be downloaded, verified or extracted."""


def installed_version(viewer_dir: Path) -> str | None:
    """The OHIF version installed in ``viewer_dir``, or ``None``."""
    marker = viewer_dir / VERSION_FILE
    if not (viewer_dir / "index.html").is_file() or not marker.is_file():
        return None
    return marker.read_text().strip() or None


def install_viewer(viewer_dir: Path, *, tarball: Path | None = None, npm: str = "npm") -> Path:
    """Install OHIF :data:`OHIF_VERSION` into ``viewer_dir`` (replacing what is there).

    Args:
        viewer_dir: Where the viewer's files go (``index.html`` at its top).
        tarball: An already downloaded package tarball (offline install); it is verified
            against the pinned integrity hash like a downloaded one.
        npm: The npm executable.

    Returns:
        ``viewer_dir``.

    Raises:
        ViewerInstallError: npm failed, the tarball's hash is not the pinned one, or the
            tarball holds no viewer.
    """
    viewer_dir = viewer_dir.resolve()
    if installed_version(viewer_dir) == OHIF_VERSION:
        logger.info("OHIF %s is already installed in %s", OHIF_VERSION, viewer_dir)
        return viewer_dir
    viewer_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=viewer_dir.parent, prefix=".viewer-") as work:
        work_dir = Path(work)
        package = tarball if tarball is not None else _npm_pack(work_dir, npm)
        _verify(package)
        staged = work_dir / "dist"
        _extract_dist(package, staged)
        relocate_viewer(staged, VIEWER_PATH)
        (staged / VERSION_FILE).write_text(OHIF_VERSION + "\n")
        if viewer_dir.exists():
            shutil.rmtree(viewer_dir)
        staged.rename(viewer_dir)
    logger.info("installed OHIF %s into %s", OHIF_VERSION, viewer_dir)
    return viewer_dir


def _npm_pack(work_dir: Path, npm: str) -> Path:
    spec = f"{OHIF_PACKAGE}@{OHIF_VERSION}"
    logger.info("downloading %s with npm", spec)
    try:
        done = subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(work_dir), "--silent"],
            cwd=work_dir,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ViewerInstallError(f"cannot run {npm} pack: {exc}") from exc
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise ViewerInstallError(f"{npm} pack {spec} failed: {output}")
    found = sorted(work_dir.glob("*.tgz"))
    if len(found) != 1:
        raise ViewerInstallError(f"{npm} pack {spec} left no single tarball")
    return found[0]


def _verify(tarball: Path) -> None:
    algorithm, _, expected = OHIF_INTEGRITY.partition("-")
    digest = hashlib.new(algorithm)
    with tarball.open("rb") as fp:
        while chunk := fp.read(1024 * 1024):
            digest.update(chunk)
    actual = base64.b64encode(digest.digest()).decode()
    if actual != expected:
        raise ViewerInstallError(
            f"{tarball.name}: integrity mismatch ({algorithm}-{actual} is not the pinned "
            f"{OHIF_INTEGRITY} of {OHIF_PACKAGE}@{OHIF_VERSION})"
        )


def _extract_dist(tarball: Path, target: Path) -> None:
    """Extract ``package/dist/*`` into ``target``: regular files and folders only."""
    target.mkdir()
    count = 0
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:
                if not member.name.startswith(_DIST_PREFIX) or not (
                    member.isfile() or member.isdir()
                ):
                    continue
                member.name = member.name[len(_DIST_PREFIX) :]
                if not member.name:
                    continue
                archive.extract(member, target, filter="data")
                count += member.isfile()
    except (tarfile.TarError, OSError) as exc:
        raise ViewerInstallError(f"cannot extract {tarball.name}: {exc}") from exc
    if count == 0 or not (target / "index.html").is_file():
        raise ViewerInstallError(f"{tarball.name} holds no prebuilt viewer (no dist/index.html)")


def relocate_viewer(dist: Path, prefix: str) -> None:
    """Make the viewer in ``dist`` load itself from ``prefix`` instead of the site root.

    Raises:
        ViewerInstallError: The release's public path or ``PUBLIC_URL`` is not where this
            release has it.
    """
    patched = 0
    for script in sorted(dist.glob("*.js")):
        text = script.read_text(encoding="utf-8")
        if _WEBPACK_PUBLIC_PATH in text:
            script.write_text(
                text.replace(_WEBPACK_PUBLIC_PATH, f'__webpack_require__.p = "{prefix}/"'),
                encoding="utf-8",
            )
            patched += 1
    for stylesheet in sorted(dist.glob("*.css")):
        text = stylesheet.read_text(encoding="utf-8")
        stylesheet.write_text(_CSS_ROOT_URL.sub(f"url({prefix}/", text), encoding="utf-8")
    index = dist / "index.html"
    text = index.read_text(encoding="utf-8")
    if not patched or _PUBLIC_URL not in text:
        raise ViewerInstallError("this viewer build does not load itself from the site root")
    text = text.replace(_PUBLIC_URL, f'window.PUBLIC_URL="{prefix}/"')
    index.write_text(_ROOT_LINK.sub(rf'\1="{prefix}/', text), encoding="utf-8")
