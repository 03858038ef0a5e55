"""Server settings: ``RADSERVE_*`` environment variables over an optional YAML file.

Precedence (highest first): keyword overrides (the command line), environment variables,
the YAML file (``--config`` or ``RADSERVE_CONFIG``), defaults. List settings (``tokens``,
``destinations``, ``pull_sources``) come from the environment as JSON, e.g.
``RADSERVE_TOKENS='[{"name": "pacs", "sha256": "<hex>", "roles": ["submit"]}]'``.

:func:`load_settings` fails fast with :class:`SettingsError`, whose message lists every
problem and never a secret: no token and no dev token, a default or weak secret, a data
folder that cannot be written, a models folder that does not exist. There is no module-level
settings object: the command line loads settings once and passes them to the app factory.
"""

from __future__ import annotations

import enum
import hashlib
import os
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from radserve.inference import InferenceError

CONFIG_ENV = "RADSERVE_CONFIG"
LOCAL_SOURCE = "local"  # the job source that is the server's own store
MIN_DEV_TOKEN_CHARS = 24
MIN_SESSION_SECRET_CHARS = 32
WEAK_SECRETS = frozenset(
    {
        "",
        "admin",
        "changeme",
        "change-me",
        "changethis",
        "default",
        "dev",
        "password",
        "radserve",
        "secret",
        "test",
        "token",
    }
)
_WEAK_HASHES = frozenset(hashlib.sha256(s.encode()).hexdigest() for s in WEAK_SECRETS)
_YAML_DATA: ContextVar[Mapping[str, Any]] = ContextVar("_YAML_DATA", default=MappingProxyType({}))


class SettingsError(InferenceError):
    """The server settings are invalid; the message lists every problem."""


class Role(enum.StrEnum):
    """What a token may do."""

    SUBMIT = "submit"  # STOW-RS, create jobs
    READ = "read"  # QIDO-RS, WADO-RS, read jobs
    ADMIN = "admin"  # administration


class TokenSettings(BaseModel):
    """One API token: its name (for logs), the SHA-256 of the token, and its roles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    roles: frozenset[Role] = Field(min_length=1)

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class RemoteSettings(BaseModel):
    """A DICOMweb service: a PACS to export results to, or to pull studies from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    url: str = Field(pattern=r"^https?://\S+$")
    auth_header: SecretStr | None = None


OVERLAY_TRANSFER_SYNTAX_UIDS = {
    "jpeg-ls": JPEGLSLossless,
    "rle": RLELossless,
    "uncompressed": ExplicitVRLittleEndian,
}


class ServerSettings(BaseSettings):
    """Settings of ``radserve serve``; see the module docstring for the sources.

    Attributes:
        host: Address to listen on.
        port: Port to listen on.
        data_dir: The instance store and job state (created if missing; must be writable).
        models_dir: Model packages (``<name>/<version>/``); must exist.
        max_request_bytes: Largest request body (STOW-RS), also the largest instance.
        max_instances_per_study: Refuse instances beyond this many in one study.
        overwrite_instances: Replace a stored instance by a different one with the same SOP
            Instance UID instead of refusing it (409).
        job_timeout_s: Longest run of one job.
        queue_max_jobs: Queued jobs beyond which STOW-RS and ``POST /jobs`` answer 503 and
            routing waits. Unset: derived from the measured mean job time, the jobs the
            workers get through in ``queue_backlog_s`` (100 before any job has run).
        queue_backlog_s: The work, in seconds, a derived queue limit allows to wait.
        tokens: The API tokens.
        dev_token: A token with every role, for development only (logged as such).
        destinations: PACS to send results to.
        pull_sources: PACS to fetch studies from.
        workers: Job worker threads.
        inference_concurrency: Model runs at once, over all models (each session uses every
            core, or the GPU; more would oversubscribe them).
        inference_threads: ONNX Runtime intra-op threads per session (0: one per core).
        inference_memory_mb: The memory one prediction may use (network grid, logits,
            blending); a series whose grid on the model's spacing would need more fails
            its job before anything is resampled. Default: a quarter of the machine's
            physical memory.
        execution_providers: ONNX Runtime providers in priority order (unavailable ones are
            skipped).
        routing_enabled: Create jobs for received series that a model's selection rules
            accept.
        routing_stable_s: Seconds without a new instance before a received series is routed.
        job_max_attempts: Runs of one job before it is failed: tries against a pull source
            that is down, and crashes of the server while the job ran alone (then it is
            quarantined); jobs interrupted together are not charged and rerun one at a time.
        export_backoff_s: First delay before an export (or a pull) is retried; doubled per
            attempt.
        export_backoff_max_s: Longest delay between export attempts.
        export_timeout_s: Timeout of one request to a destination or pull source.
        radiomics: Compute radiomic features (into the SR and the job's feature table) for
            models whose manifest names a ``radiomics_parameter_set``.
        radiomics_workers: Worker processes for feature extraction, shared by every model
            (0: in the job's worker thread); default ``min(2, cores)``.
        radiomics_timeout_s: Longest feature extraction of one job. Segments not finished
            by then get no features (the SR and the feature table say why) and the job goes
            on, so a very large segment cannot hold back its SEG, SR and overlay.
        overlay_transfer_syntax: Encoding of the overlay Secondary Capture instances, all
            lossless: ``jpeg-ls`` (smallest; OHIF, Orthanc and current PACS viewers decode
            it), ``rle`` (decoded by every DICOM toolkit) or ``uncompressed``.
        seg_type: Segmentation Type of the result SEG: ``binary`` (1 bit a pixel),
            ``fractional`` (a byte a pixel, OCCUPANCY 0 or 255: the same mask, same SOP
            Class), ``labelmap`` (Label Map Segmentation Storage, 2024, which older PACS
            and validators do not know), or ``auto``: BINARY unless its frames would start
            mid-byte (Rows x Columns not a multiple of 8), which OHIF's default SEG loading
            draws as stripes, then FRACTIONAL.
        conformance_gate: What happens to a job's results that fail the conformance gate
            (``dciodvfy`` errors radserve introduced, or structural problems against the
            source): ``block`` (nothing stored or exported, the job fails with the
            validator's lines), ``warn`` (stored and exported, the job shows the findings)
            or ``off`` (not checked).
        header_timeout_s: Seconds a connection has to send its request line and headers
            (from opening, or from the previous response); then it is closed.
        body_idle_timeout_s: Seconds a request body may pause; then the request fails
            (408) and nothing of it is stored.
        max_connections: Open connections beyond which new ones are closed unread (keep it
            below the process's file descriptor limit).
        public_url: The URL clients reach this server by (``https://radserve.example.org``,
            or with a path prefix behind a proxy); Retrieve URLs and BulkDataURIs are built
            from it. Unset: from the request (its ``Host`` header), which a client can set
            to anything; set it in production.
        viewer_dir: The installed OHIF viewer (``radserve viewer install``), served at
            ``/viewer``; unset: no viewer.
        session_secret: Key that signs browser session cookies (at least 32 characters;
            the same on every replica). Unset: a random key per process, so sessions end
            with a restart.
        session_ttl_s: How long a browser session lasts after login.
        session_cookie_secure: Mark the session cookie ``Secure`` (HTTPS only). Unset: when
            the request came over HTTPS.
    """

    model_config = SettingsConfigDict(env_prefix="RADSERVE_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    max_request_bytes: int = Field(default=2 * 1024**3, gt=0)
    header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    body_idle_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_connections: int = Field(default=2048, ge=16)
    max_instances_per_study: int = Field(default=20_000, gt=0)
    overwrite_instances: bool = False
    job_timeout_s: float = Field(default=3600.0, gt=0)
    queue_max_jobs: int | None = Field(default=None, gt=0)
    queue_backlog_s: float = Field(default=1800.0, gt=0)
    tokens: tuple[TokenSettings, ...] = ()
    dev_token: SecretStr | None = None
    destinations: tuple[RemoteSettings, ...] = ()
    pull_sources: tuple[RemoteSettings, ...] = ()
    workers: int = Field(default=2, ge=1, le=64)
    inference_concurrency: int = Field(default=1, ge=1, le=64)
    inference_threads: int = Field(default=0, ge=0)
    inference_memory_mb: int = Field(default_factory=lambda: default_inference_memory_mb(), ge=16)
    execution_providers: tuple[str, ...] = Field(
        default=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
        min_length=1,
    )  # runtime.DEFAULT_PROVIDERS, spelled out so that settings need no onnxruntime import
    routing_enabled: bool = True
    routing_stable_s: float = Field(default=30.0, ge=0)
    job_max_attempts: int = Field(default=3, ge=1)
    export_backoff_s: float = Field(default=5.0, gt=0)
    export_backoff_max_s: float = Field(default=600.0, gt=0)
    export_timeout_s: float = Field(default=60.0, gt=0)
    radiomics: bool = True
    radiomics_workers: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=0, le=64)
    radiomics_timeout_s: float = Field(default=600.0, gt=0)
    overlay_transfer_syntax: Literal["jpeg-ls", "rle", "uncompressed"] = "jpeg-ls"
    seg_type: Literal["auto", "binary", "fractional", "labelmap"] = "auto"
    conformance_gate: Literal["block", "warn", "off"] = "block"
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$", max_length=512)
    viewer_dir: Path | None = None
    session_secret: SecretStr | None = None
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0, le=7 * 24 * 3600.0)
    session_cookie_secure: bool | None = None

    @property
    def overlay_transfer_syntax_uid(self) -> str:
        """The UID of :attr:`overlay_transfer_syntax`."""
        return OVERLAY_TRANSFER_SYNTAX_UIDS[self.overlay_transfer_syntax]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_settings = InitSettingsSource(settings_cls, init_kwargs=dict(_YAML_DATA.get()))
        return init_settings, env_settings, yaml_settings

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        problems = [*_secret_problems(self), *_folder_problems(self), *_remote_problems(self)]
        if problems:
            raise ValueError("; ".join(problems))
        return self


def default_inference_memory_mb() -> int:
    """A quarter of the machine's physical memory, in MiB (4096 where it is unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4096
    return max(256, total // 4 // 1024**2)


def _secret_problems(settings: ServerSettings) -> list[str]:
    problems = []
    if not settings.tokens and settings.dev_token is None:
        problems.append(
            "no API token configured: set tokens (name, sha256, roles) or, for development "
            "only, RADSERVE_DEV_TOKEN"
        )
    for token in settings.tokens:
        if token.sha256 in _WEAK_HASHES:
            problems.append(f"token {token.name!r} is a default or weak secret")
    names = [token.name for token in settings.tokens]
    if len(set(names)) != len(names):
        problems.append("token names must be unique")
    hashes = [token.sha256 for token in settings.tokens]
    if len(set(hashes)) != len(hashes):
        problems.append("two tokens have the same secret")
    if settings.dev_token is not None:
        dev = settings.dev_token.get_secret_value()
        if dev.lower() in WEAK_SECRETS or len(dev) < MIN_DEV_TOKEN_CHARS:
            problems.append(
                f"dev token is a default or weak secret (use at least {MIN_DEV_TOKEN_CHARS} "
                "random characters)"
            )
    if settings.session_secret is not None:
        session_secret = settings.session_secret.get_secret_value()
        if session_secret.lower() in WEAK_SECRETS or len(session_secret) < MIN_SESSION_SECRET_CHARS:
            problems.append(
                f"session secret is a default or weak secret (use at least "
                f"{MIN_SESSION_SECRET_CHARS} random characters)"
            )
    for remote in (*settings.destinations, *settings.pull_sources):
        if remote.auth_header is not None:
            secret = remote.auth_header.get_secret_value().split(" ")[-1]
            if secret.lower() in WEAK_SECRETS:
                problems.append(f"auth header of {remote.name!r} is a default or weak secret")
    return problems


def _remote_problems(settings: ServerSettings) -> list[str]:
    problems = []
    for kind, remotes in (
        ("destination", settings.destinations),
        ("pull source", settings.pull_sources),
    ):
        names = [remote.name for remote in remotes]
        if len(set(names)) != len(names):
            problems.append(f"{kind} names must be unique")
    if any(remote.name == LOCAL_SOURCE for remote in settings.pull_sources):
        problems.append(f"{LOCAL_SOURCE!r} is reserved: it names the local store as a job source")
    if settings.export_backoff_max_s < settings.export_backoff_s:
        problems.append("export_backoff_max_s must not be less than export_backoff_s")
    return problems


def _folder_problems(settings: ServerSettings) -> list[str]:
    problems = []
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        problems.append(f"data_dir {data_dir} is not a writable folder ({exc.strerror or exc})")
    if not settings.models_dir.is_dir():
        problems.append(f"models_dir {settings.models_dir} is not an existing folder")
    if settings.viewer_dir is not None and not (settings.viewer_dir / "index.html").is_file():
        problems.append(
            f"viewer_dir {settings.viewer_dir} holds no viewer (run `radserve viewer install`)"
        )
    return problems


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> ServerSettings:
    """Load and check the server settings.

    Args:
        config_file: A YAML file of settings; default: ``$RADSERVE_CONFIG`` if set.
        **overrides: Settings that take precedence over every source (command-line options).

    Raises:
        SettingsError: Lists every problem found; never a secret value.
    """
    path = config_file if config_file is not None else os.environ.get(CONFIG_ENV)
    data = _read_yaml(Path(path)) if path else {}
    token = _YAML_DATA.set(data)
    try:
        return ServerSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None  # the cause would quote input values
    finally:
        _YAML_DATA.reset(token)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"settings file {path} cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a mapping of settings")
    return data


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "invalid server settings: " + "; ".join(lines)


def hash_token(token: str) -> str:
    """The SHA-256 (hex) of a token, as ``tokens[].sha256`` expects it."""
    return hashlib.sha256(token.encode()).hexdigest()
