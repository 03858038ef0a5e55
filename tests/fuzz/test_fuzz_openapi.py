"""Schemathesis against our own OpenAPI description: every operation of ``/openapi.json``
called on a real server (uvicorn on loopback, the whole product: jobs, models, metrics)
with requests generated from the description, valid ones and invalid ones.

The properties, for every operation: no 5xx; every status, media type and JSON body
answered is one the description documents (schemathesis' checks, authentication required
included); a refused request, or any read, stores nothing (the store's instance count is
unchanged); and the process (server and client) holds no more than a bounded amount of
memory more at the end of a pass than at its start. The server holds the
bundled CT series, and operations on a study, series or instance are fuzzed twice: with
generated UIDs, and with that series' real UIDs (so that the query parameters and headers of
WADO-RS meet real data).

Bounded for ``make test`` (``RADSERVE_FUZZ_EXAMPLES`` examples per operation and pass,
default 15, derandomized so that a failure reproduces); set it higher for a long, random run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup

from radserve.server import hash_token
from tests.live_server import RunningServer, running_server
from tests.processes import resident_memory_mb
from tests.server.jobs.conftest import (
    DICOM_MULTIPART,
    ModelPackageCase,
    auth,
    models_dir_with,
    multipart,
    server_settings,
    tiny_package,
    token_of,
)

EXAMPLES = int(os.environ.get("RADSERVE_FUZZ_EXAMPLES", "15"))
EVERY_ROLE = "everything"
MEMORY_GROWTH_BOUND_MB = 128
__all__ = ["tiny_package"]  # the fixture, shared with the whole-server tests


@schemathesis.serializer("multipart/related")
def _one_part(context: Any, value: Any) -> bytes:
    """A generated STOW-RS body (bytes, or anything else as text) as one DICOM part."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    return multipart([data])


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="RADSERVE_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def demo_ct_files(demo_study: Path) -> list[Path]:
    return sorted((demo_study / "image").glob("*.dcm"))


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_package: ModelPackageCase,
    demo_ct_files: list[Path],
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("openapi-fuzz")
    every_role = {
        "name": EVERY_ROLE,
        "sha256": hash_token(token_of(EVERY_ROLE)),
        "roles": ["submit", "read", "admin"],
    }
    settings_ = server_settings(
        root,
        models_dir_with(root, tiny_package),
        routing_enabled=False,
        workers=1,
        tokens=[every_role],
        max_request_bytes=8 * 1024 * 1024,
    )
    with running_server(settings_) as server, server.client() as client:
        stored = client.post(
            "/dicomweb/studies",
            content=multipart([path.read_bytes() for path in demo_ct_files[:3]]),
            headers={**auth(EVERY_ROLE), "Content-Type": DICOM_MULTIPART},
        )
        assert stored.status_code == 200, stored.text
        yield server


def _instance_count(server: RunningServer) -> int:
    return sum(1 for _ in (server.lifecycle.store.data_dir / "instances").rglob("*.dcm"))


def _real_uids(demo_ct_files: list[Path]) -> dict[str, str]:
    ds = pydicom.dcmread(demo_ct_files[0], stop_before_pixels=True)
    return {
        "study": ds.StudyInstanceUID,
        "series": ds.SeriesInstanceUID,
        "instance": ds.SOPInstanceUID,
    }


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    server: RunningServer,
    statuses: Counter[int],
    path_parameters: dict[str, str] | None = None,
) -> None:
    """Call ``operation`` with generated requests; schemathesis' checks plus ours."""

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @FUZZ
    def check(case: Case) -> None:
        before = _instance_count(server)
        headers = auth(EVERY_ROLE)
        if case.media_type == "multipart/related":
            headers["Content-Type"] = DICOM_MULTIPART  # with the boundary of the serializer
        response = case.call_and_validate(
            base_url=server.url,
            headers=headers,
            # A value the schema allows may still be refused for what it means (a frame
            # beyond the last, an unknown keyword in includefield): a documented 4xx.
            excluded_checks=[positive_data_acceptance],
        )
        statuses[response.status_code] += 1
        if response.status_code >= 400 or case.method.upper() == "GET":
            assert _instance_count(server) == before, "a refused request or a read stored data"

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(
    live: RunningServer, demo_ct_files: list[Path], mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", headers=auth(EVERY_ROLE))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25, "the description lists too few operations"
    uids = _real_uids(demo_ct_files)
    memory_before = resident_memory_mb(os.getpid())
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    nothing_to_negate = []
    for operation in operations:
        names = {p.name for p in operation.iter_parameters() if p.location == "path"}
        passes: list[dict[str, str] | None] = [None]
        if names and names <= {*uids, "frames", "tag_path"}:
            passes.append({name: uids[name] for name in names if name in uids})
        for path_parameters in passes:
            try:
                _fuzz(operation, mode, live, statuses, path_parameters)
            except Unsatisfiable:
                nothing_to_negate.append(operation.label)  # no input can break its schema
            except (Exception, FailureGroup) as exc:  # every operation is tried, then reported
                failures[operation.label] = str(exc)[:2000]
    growth = resident_memory_mb(os.getpid()) - memory_before
    print(
        f"{mode.value}: {len(operations)} operations, {statuses.total()} requests, "
        f"statuses {dict(sorted(statuses.items()))}; nothing to negate in "
        f"{len(nothing_to_negate)}; resident memory {growth:+.0f} MB"
    )
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
    assert statuses.total() >= len(operations), "too few requests were made"
    assert not [status for status in statuses if status >= 500]
    assert growth < MEMORY_GROWTH_BOUND_MB, f"resident memory grew {growth:.0f} MB"


def test_the_description_needs_a_token(live: RunningServer) -> None:
    assert httpx.get(f"{live.url}/openapi.json").status_code == 401
