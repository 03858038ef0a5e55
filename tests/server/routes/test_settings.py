"""Server settings: sources and their precedence, and failing fast on bad settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from radserve.dicom_io import OVERLAY_TRANSFER_SYNTAXES
from radserve.server import (
    Role,
    SettingsError,
    hash_token,
    load_settings,
)

GOOD_HASH = hash_token("a-long-random-token-for-the-tests-0123456789")


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "models").mkdir()
    return tmp_path / "data", tmp_path / "models"


def test_environment_overrides_yaml_and_overrides_win(
    tmp_path: Path, folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, models_dir = folders
    config = _yaml(
        tmp_path,
        f"port: 9000\nhost: 0.0.0.0\ndata_dir: {data_dir}\nmodels_dir: {models_dir}\n"
        f"tokens:\n  - name: pacs\n    sha256: {GOOD_HASH}\n    roles: [submit, read]\n",
    )
    monkeypatch.setenv("RADSERVE_PORT", "9100")
    settings = load_settings(config)
    assert (settings.port, settings.host, settings.data_dir) == (9100, "0.0.0.0", data_dir)
    assert settings.tokens[0].roles == {Role.SUBMIT, Role.READ}
    assert data_dir.is_dir()  # created
    monkeypatch.setenv("RADSERVE_CONFIG", str(config))
    assert load_settings(port=9200).port == 9200


def test_tokens_from_the_environment_as_json(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, models_dir = folders
    tokens = [{"name": "reader", "sha256": GOOD_HASH.upper(), "roles": ["read"]}]
    monkeypatch.setenv("RADSERVE_TOKENS", json.dumps(tokens))
    monkeypatch.setenv("RADSERVE_DESTINATIONS", json.dumps([{"name": "pacs", "url": "http://p/x"}]))
    settings = load_settings(data_dir=data_dir, models_dir=models_dir)
    assert settings.tokens[0].sha256 == GOOD_HASH  # normalised to lower case
    assert settings.destinations[0].url == "http://p/x"


def test_every_problem_is_reported_without_secrets(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SettingsError) as info:
        load_settings(
            data_dir=blocker / "data",
            models_dir=tmp_path / "missing",
            dev_token="changeme",
            tokens=[{"name": "weak", "sha256": hash_token("secret"), "roles": ["read"]}],
            destinations=[{"name": "pacs", "url": "http://p", "auth_header": "Bearer changeme"}],
        )
    message = str(info.value)
    for problem in (
        "token 'weak' is a default or weak secret",
        "dev token is a default or weak secret",
        "auth header of 'pacs' is a default or weak secret",
        "is not a writable folder",
        "is not an existing folder",
    ):
        assert problem in message
    assert "changeme" not in message and hash_token("secret") not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_no_token_at_all_is_refused(folders: tuple[Path, Path]) -> None:
    data_dir, models_dir = folders
    with pytest.raises(SettingsError, match="no API token configured"):
        load_settings(data_dir=data_dir, models_dir=models_dir)
    long_dev = "d" * 40
    assert load_settings(data_dir=data_dir, models_dir=models_dir, dev_token=long_dev).dev_token


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus: 1\n", "bogus: Extra inputs are not permitted"),
        ("- a\n- b\n", "must hold a mapping"),
        ("port: [\n", "not valid YAML"),
        ("port: 70000\n", "port: Input should be less than or equal to 65535"),
        (
            "tokens:\n  - name: x\n    sha256: abc\n    roles: [read]\n",
            "tokens.0.sha256: String should match pattern",
        ),
        (
            f"tokens:\n  - name: x\n    sha256: {GOOD_HASH}\n    roles: [root]\n",
            "tokens.0.roles",
        ),
        ("overlay_transfer_syntax: jpeg\n", "overlay_transfer_syntax: Input should be"),
        ("radiomics_timeout_s: 0\n", "radiomics_timeout_s: Input should be greater than 0"),
    ],
)
def test_bad_yaml_is_refused_clearly(
    tmp_path: Path, folders: tuple[Path, Path], text: str, message: str
) -> None:
    data_dir, models_dir = folders
    config = _yaml(tmp_path, text)
    with pytest.raises(SettingsError, match=message.replace("[", r"\[")):
        load_settings(config, data_dir=data_dir, models_dir=models_dir, dev_token="d" * 40)


@pytest.mark.parametrize(
    ("name", "uid"),
    [("jpeg-ls", JPEGLSLossless), ("rle", RLELossless), ("uncompressed", ExplicitVRLittleEndian)],
)
def test_overlay_transfer_syntax_names_a_lossless_syntax(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, name: str, uid: str
) -> None:
    data_dir, models_dir = folders
    monkeypatch.setenv("RADSERVE_OVERLAY_TRANSFER_SYNTAX", name)
    settings = load_settings(data_dir=data_dir, models_dir=models_dir, dev_token="d" * 40)
    assert settings.overlay_transfer_syntax_uid == uid
    assert uid in OVERLAY_TRANSFER_SYNTAXES


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(tmp_path / "nope.yaml")


def test_example_config_is_valid(folders: tuple[Path, Path]) -> None:
    data_dir, models_dir = folders
    example = Path(__file__).resolve().parents[3] / "configs" / "server.yaml"
    settings = load_settings(example, data_dir=data_dir, models_dir=models_dir)
    assert settings.tokens and all(t.roles for t in settings.tokens)
    assert os.fspath(settings.data_dir) == os.fspath(data_dir)
