"""Routing: a stable received series that a model accepts gets exactly one job."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from radserve.inference import CPU, RuntimeSettings
from radserve.server import (
    InstanceStore,
    JobQueue,
    JobState,
    ModelRegistry,
    Router,
    SeriesFacts,
    candidate_recorder,
    mismatch,
    series_facts,
)

from .conftest import STUDY_UID, ModelPackageCase, models_dir_with


@pytest.fixture
def parts(
    tmp_path: Path, tiny_package: ModelPackageCase
) -> Iterator[tuple[InstanceStore, JobQueue, ModelRegistry]]:
    registry = ModelRegistry(
        models_dir_with(tmp_path, tiny_package), runtime=RuntimeSettings(providers=(CPU,))
    )
    queue = JobQueue(tmp_path / "data", lease_s=60, max_attempts=3)
    store = InstanceStore(tmp_path / "data", on_commit=candidate_recorder(queue))
    yield store, queue, registry
    queue.close()
    store.close()


def _store_all(store: InstanceStore, files: list[Path]) -> None:
    with store.batch() as batch:
        for path in files:
            staged = store.staged_file()
            staged.write(path.read_bytes())
            batch.add(staged)
        assert not batch.commit().failed


def test_a_stable_accepted_series_gets_one_job(
    parts: tuple[InstanceStore, JobQueue, ModelRegistry], demo_study: Path
) -> None:
    store, queue, registry = parts
    waiting = Router(queue=queue, registry=registry, store=store, stable_s=3600, destinations=[])
    router = Router(queue=queue, registry=registry, store=store, stable_s=0, destinations=["a"])
    files = [*sorted((demo_study / "image").glob("*.dcm")), demo_study / "mask" / "RS.dcm"]
    _store_all(store, files)

    assert waiting.run_due() == []  # not stable for an hour yet
    [job] = router.run_due()
    ct = next(f for f in series_facts(store, STUDY_UID) if f.modality == "CT")
    assert job.spec.series_instance_uid == ct.series_instance_uid
    assert (job.spec.origin, job.spec.destinations, job.state) == (
        "routing",
        ("a",),
        JobState.QUEUED,
    )
    assert router.run_due() == []  # the candidates are consumed

    _store_all(store, files)  # the same study again: a candidate, but routed already
    assert router.run_due() == []
    assert len(queue.find()) == 1


def test_a_full_queue_keeps_series_as_candidates_until_it_has_room(
    parts: tuple[InstanceStore, JobQueue, ModelRegistry], demo_study: Path
) -> None:
    store, queue, registry = parts
    router = Router(
        queue=queue, registry=registry, store=store, stable_s=0, destinations=[], max_queued=1
    )
    files = sorted((demo_study / "image").glob("*.dcm"))
    _store_all(store, files)
    _store_copies(store, files)
    [job] = router.run_due()  # the second series waits: one job is queued
    assert router.run_due() == []
    assert queue.claim() is not None  # a worker takes the first job: room again
    [later] = router.run_due()
    assert later.spec.series_instance_uid != job.spec.series_instance_uid
    assert len(queue.find()) == 2


def _store_copies(store: InstanceStore, files: list[Path]) -> None:
    """Store ``files`` again as another series of the same study."""
    with store.batch() as batch:
        for path in files:
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
            uid = generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            staged = store.staged_file()
            staged.write(buffer.getvalue())
            batch.add(staged)
        assert not batch.commit().failed


def test_results_stored_without_notice_are_never_candidates(
    parts: tuple[InstanceStore, JobQueue, ModelRegistry], demo_study: Path
) -> None:
    store, queue, registry = parts
    router = Router(queue=queue, registry=registry, store=store, stable_s=0, destinations=[])
    files = sorted((demo_study / "image").glob("*.dcm"))
    outcome = store.store_results([pydicom.dcmread(path) for path in files])  # the worker's way
    assert len(outcome.stored) == 48 and not outcome.failed
    assert len(store.get_instances(STUDY_UID)) == 48  # stored and indexed
    with store.batch(notify=False) as batch:
        staged = store.staged_file()
        staged.write(files[0].read_bytes())
        batch.add(staged)
        assert not batch.commit().stored[0].created  # an identical copy: a no-op
    assert router.run_due() == []
    assert queue.find() == []


def test_series_facts_and_selection(
    parts: tuple[InstanceStore, JobQueue, ModelRegistry], demo_study: Path
) -> None:
    store, _, registry = parts
    _store_all(
        store, [*sorted((demo_study / "image").glob("*.dcm")), demo_study / "mask" / "RS.dcm"]
    )
    facts = {f.modality: f for f in series_facts(store, STUDY_UID)}
    assert facts["CT"].number_of_slices == 48 and facts["RTSTRUCT"].number_of_slices == 1
    selection = registry.models[0].package.manifest.input
    assert mismatch(selection, facts["CT"]) is None
    assert mismatch(selection, facts["RTSTRUCT"]) == "modality 'RTSTRUCT' is not one of ['CT']"
    ours = SeriesFacts(**{**facts["CT"].__dict__, "manufacturer": "radserve"})
    assert mismatch(selection, ours) == "the series holds radserve's own results"
    assert series_facts(store, "1.2.3.4") == []
