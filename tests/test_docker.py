"""The deployment files: Docker cannot run here, so check what can be checked without it.

The compose file's radserve environment must be settings the server accepts, and every file
the images copy must exist in the build context.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from radserve.server import load_settings

DOCKER = Path(__file__).resolve().parent.parent / "docker"
REPO = DOCKER.parent


def test_compose_environment_is_accepted_by_the_server_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    environment = compose["services"]["radserve"]["environment"]
    for name, value in environment.items():
        if "${" in str(value):  # supplied by the operator at run time
            value = "a-development-token-of-sufficient-length"
        monkeypatch.setenv(name, str(value))
    models = tmp_path / "models"
    models.mkdir()
    settings = load_settings(data_dir=tmp_path / "data", models_dir=models)
    assert [d.name for d in settings.destinations] == ["orthanc"]
    assert settings.destinations[0].url == "http://orthanc:8042/dicom-web"
    assert settings.routing_stable_s == 10


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfiles_copy_files_that_exist(dockerfile: str) -> None:
    text = (DOCKER / dockerfile).read_text()
    sources = [
        source
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE)
        for source in line.split()[:-1]
    ]
    assert "radserve" in sources
    for source in sources:
        assert (REPO / source).exists(), f"{dockerfile} copies {source}, which is missing"
    assert "USER radserve" in text
    assert "HEALTHCHECK" in text


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_images_install_the_pinned_viewer(dockerfile: str) -> None:
    from radserve.server import OHIF_VERSION

    text = (DOCKER / dockerfile).read_text()
    assert f"npm pack @ohif/app@{OHIF_VERSION} " in text
    assert f"ohif-app-{OHIF_VERSION}.tgz" in text
    assert "radserve viewer install /opt/radserve-viewer --tarball" in text  # integrity checked
    assert "RADSERVE_VIEWER_DIR=/opt/radserve-viewer" in text
