"""Workers on real parts (store, queue, tiny ONNX model), one job at a time with run_next."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import JPEGLSLossless, RLELossless

from radserve.dicom_io import read_image_series, read_seg, read_sr_measurements
from radserve.inference import CPU, RuntimeSettings
from radserve.radiomics import RadiomicsOptions, load_parameter_set
from radserve.server import (
    ExportPolicy,
    GateMode,
    InstanceStore,
    Job,
    JobFeatures,
    JobQueue,
    JobSpec,
    JobState,
    ModelRegistry,
    RemoteSettings,
    ServerMetrics,
    WorkerOptions,
    WorkerPool,
)
from tests.live_server import free_port
from tests.onnx_models import (
    SMALL_SET_FILE,
    manifest_dict,
    threshold_model,
    write_package,
)
from tests.radiomics_sets import bone_package

from .conftest import STUDY_UID, TINY_MODEL, ModelPackageCase, models_dir_with

MakePool = Callable[..., tuple[WorkerPool, JobQueue, InstanceStore]]


@pytest.fixture
def make_pool(
    tmp_path: Path, tiny_package: ModelPackageCase, demo_study: Path
) -> Iterator[MakePool]:
    closing: list[Callable[[], None]] = []

    def make(
        *,
        models_dir: Path | None = None,
        timeout_s: float = 600,
        max_attempts: int = 3,
        radiomics: RadiomicsOptions | None = None,
        metrics: ServerMetrics | None = None,
        overlay_transfer_syntax_uid: str = JPEGLSLossless,
        conformance_gate: GateMode = GateMode.BLOCK,
    ) -> tuple[WorkerPool, JobQueue, InstanceStore]:
        registry = ModelRegistry(
            models_dir or models_dir_with(tmp_path, tiny_package),
            runtime=RuntimeSettings(providers=(CPU,)),
            # Radiomics (the small set of the test packages) is tested on its own.
            radiomics=radiomics or RadiomicsOptions(enabled=False),
        )
        store = InstanceStore(tmp_path / "data")
        queue = JobQueue(tmp_path / "data", lease_s=60, max_attempts=max_attempts)
        closing.extend([registry.close, store.close, queue.close])
        files = [*sorted((demo_study / "image").glob("*.dcm")), demo_study / "mask" / "RS.dcm"]
        for path in files:
            store.store(path)
        pool = WorkerPool(
            queue=queue,
            registry=registry,
            store=store,
            pull_sources=[RemoteSettings(name="down", url=f"http://127.0.0.1:{free_port()}/x")],
            options=WorkerOptions(
                workers=1,
                job_timeout_s=timeout_s,
                retry=ExportPolicy(backoff_s=0.05),
                overlay_transfer_syntax_uid=overlay_transfer_syntax_uid,
                conformance_gate=conformance_gate,
            ),
            metrics=metrics or ServerMetrics(),
        )
        return pool, queue, store

    yield make
    for close in reversed(closing):
        close()


def _run(pool: WorkerPool, queue: JobQueue, spec: JobSpec) -> Job:
    job = queue.submit(spec)
    assert pool.run_next()
    return queue.get(job.id)


def test_a_study_job_runs_on_the_accepted_series_and_stores_its_results(
    make_pool: MakePool, demo_study: Path
) -> None:
    pool, queue, store = make_pool()
    job = _run(pool, queue, JobSpec(STUDY_UID, None, TINY_MODEL, "1.0.0"))
    assert job.state is JobState.DONE, job.error
    source = read_image_series(demo_study / "image").volume
    assert job.spec.series_instance_uid == source.series_instance_uid  # CT, not the RTSTRUCT
    assert {"queued_s", "fetch_s", "inference_s", "results_s", "store_s"} <= set(job.timings_s)
    [seg] = [r for r in job.results if r.kind == "SEG"]
    [stored] = store.get_instances(STUDY_UID, seg.series_instance_uid)
    labels = read_seg(stored.path, reference=source).volume.array
    assert ((labels == 1) == (source.array > 300.5)).all()
    overlay = {r.series_instance_uid for r in job.results if r.kind == "SC"}
    [(syntax, count)] = Counter(
        str(pydicom.dcmread(i.path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        for uid in overlay
        for i in store.get_instances(STUDY_UID, uid)
    ).items()
    assert (syntax, count) == (JPEGLSLossless, int((labels == 1).any(axis=(1, 2)).sum()))
    assert not pool.run_next()  # the queue is empty


@pytest.mark.parametrize("mode", [GateMode.BLOCK, GateMode.WARN, GateMode.OFF])
def test_the_conformance_gate_checks_every_result_before_it_is_stored(
    make_pool: MakePool, mode: GateMode
) -> None:
    metrics = ServerMetrics()
    pool, queue, _ = make_pool(conformance_gate=mode, metrics=metrics)
    job = _run(pool, queue, JobSpec(STUDY_UID, None, TINY_MODEL, "1.0.0"))
    assert job.state is JobState.DONE, job.error
    exposition = metrics.render()
    if mode is GateMode.OFF:
        assert job.conformance is None and "conformance_s" not in job.timings_s
        return
    assert job.conformance is not None
    assert job.conformance["mode"] == mode.value
    assert job.conformance["passed"] is True and job.conformance["validated"] is True
    assert job.conformance["problems"] == [] and job.timings_s["conformance_s"] > 0
    assert 'radserve_job_stage_seconds_count{stage="conformance"} 1.0' in exposition
    assert "radserve_conformance_errors_total{" not in exposition  # none counted


def test_bad_input_fails_the_job_with_the_reason(make_pool: MakePool, tmp_path: Path) -> None:
    model = threshold_model(0.5)
    manifest = manifest_dict(model, name="mr-only", input={"modalities": ["MR"]})
    write_package(tmp_path / "mr", model, manifest)
    pool, queue, _ = make_pool(models_dir=tmp_path / "mr" / "models")
    refused = _run(pool, queue, JobSpec(STUDY_UID, None, "mr-only", "1.0.0"))
    assert refused.state is JobState.FAILED
    assert refused.error == (
        "no series of the study is accepted by model mr-only/1.0.0 (modality 'RTSTRUCT' is not "
        "one of ['MR']; modality 'CT' is not one of ['MR'])"
    )
    missing = _run(pool, queue, JobSpec(STUDY_UID, "1.2.3", "mr-only", "1.0.0"))
    assert (missing.state, missing.error) == (
        JobState.FAILED,
        "the job's series is not in the store",
    )
    unknown = _run(pool, queue, JobSpec(STUDY_UID, None, "gone", "1.0.0"))
    assert unknown.state is JobState.FAILED and "no model 'gone/1.0.0'" in str(unknown.error)


def test_a_job_over_its_timeout_fails(make_pool: MakePool) -> None:
    pool, queue, _ = make_pool(timeout_s=1e-6)
    job = _run(pool, queue, JobSpec(STUDY_UID, None, TINY_MODEL, "1.0.0"))
    assert job.state is JobState.FAILED
    assert job.error == "the job ran longer than job_timeout_s (1e-06 s) before the inference stage"


def test_an_unreachable_pull_source_is_retried_then_fails(make_pool: MakePool) -> None:
    pool, queue, _ = make_pool(max_attempts=2)
    job = _run(pool, queue, JobSpec(STUDY_UID, None, TINY_MODEL, "1.0.0", source="down"))
    assert job.state is JobState.QUEUED
    assert str(job.error).startswith("pull from 'down' failed: QIDO-RS at http://127.0.0.1:")
    time.sleep(0.1)  # the back-off
    assert pool.run_next()
    failed = queue.get(job.id)
    assert failed.state is JobState.FAILED and str(failed.error).endswith("(after 2 attempts)")


def test_stopping_workers_give_the_job_back(make_pool: MakePool) -> None:
    pool, queue, _ = make_pool()
    assert pool.stop()
    job = _run(pool, queue, JobSpec(STUDY_UID, None, TINY_MODEL, "1.0.0"))
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)


def test_a_series_without_findings_is_done_with_an_sr_and_a_key_image(
    make_pool: MakePool, tmp_path: Path
) -> None:
    model = threshold_model(2.0)  # above every windowed, normalised value: nothing is found
    write_package(tmp_path / "none", model, manifest_dict(model, name="finds-nothing"))
    pool, queue, store = make_pool(
        models_dir=tmp_path / "none" / "models",
        radiomics=RadiomicsOptions(workers=0),
        overlay_transfer_syntax_uid=RLELossless,
    )
    job = _run(pool, queue, JobSpec(STUDY_UID, None, "finds-nothing", "1.0.0"))
    assert job.state is JobState.DONE, job.error
    assert sorted(r.kind for r in job.results) == ["SC", "SR"]
    [sr] = [r for r in job.results if r.kind == "SR"]
    [stored] = store.get_instances(STUDY_UID, sr.series_instance_uid)
    assert read_sr_measurements(stored.path) == {"Bone": {}}
    [key_image] = [r for r in job.results if r.kind == "SC"]
    [key_file] = store.get_instances(STUDY_UID, key_image.series_instance_uid)
    assert pydicom.dcmread(key_file.path).file_meta.TransferSyntaxUID == RLELossless
    # The model has radiomics (the small set): an empty feature table, no radiomics run.
    identifier = load_parameter_set(
        tmp_path / "none" / "models" / "finds-nothing" / "1.0.0" / SMALL_SET_FILE
    ).identifier
    assert job.features == JobFeatures(parameter_set=identifier, summary=())
    assert queue.feature_table(job.id) == (identifier, [])
    assert "radiomics_s" in job.timings_s


def _bone_radiomics_pool(
    make_pool: MakePool, tmp_path: Path, demo_study: Path, radiomics: RadiomicsOptions
) -> tuple[WorkerPool, JobQueue, InstanceStore, ServerMetrics]:
    """Workers running the bone-threshold model with the small radiomics set."""
    spacing_mm = read_image_series(demo_study / "image").volume.spacing_mm
    bone_package(tmp_path / "radiomics", spacing_mm=spacing_mm)
    metrics = ServerMetrics()
    pool, queue, store = make_pool(
        models_dir=tmp_path / "radiomics" / "models", radiomics=radiomics, metrics=metrics
    )
    return pool, queue, store, metrics


def test_a_job_with_radiomics_records_its_feature_table_durably(
    make_pool: MakePool, tmp_path: Path, demo_study: Path
) -> None:
    pool, queue, store, metrics = _bone_radiomics_pool(
        make_pool,
        tmp_path,
        demo_study,
        RadiomicsOptions(workers=1),  # a real process pool
    )
    job = _run(pool, queue, JobSpec(STUDY_UID, None, "bone-radiomics", "1.0.0"))
    assert job.state is JobState.DONE, job.error
    assert {"inference_s", "radiomics_s", "results_s"} <= set(job.timings_s)
    assert metrics.stage_seconds.count(stage="radiomics") == 1

    [sr] = [r for r in job.results if r.kind == "SR"]
    [stored] = store.get_instances(STUDY_UID, sr.series_instance_uid)
    (group,) = hd.sr.srread(stored.path).content.get_volumetric_roi_measurement_groups()
    in_sr = {str(m.name.value): m.value for m in group.get_measurements()}
    assert job.features is not None
    assert job.features.parameter_set.startswith("small sha256:")
    (summary,) = job.features.summary
    assert (summary.label, summary.segment, summary.feature_count, summary.skipped) == (
        1,
        "Bone",
        32,
        (),
    )
    assert summary.volume_mm3 == in_sr["118565006"]  # SCT Volume
    parameter_set, table = queue.feature_table(job.id)
    assert parameter_set == job.features.parameter_set
    (record,) = table
    assert {f["code"]["value"]: f["value"] for f in record["features"]} == {
        code: value
        for code, value in in_sr.items()
        if code not in ("118565006", "112031")  # volume, HU
    }

    queue.close()  # the table survives a restart
    reopened = JobQueue(tmp_path / "data", lease_s=60, max_attempts=3)
    try:
        assert reopened.feature_table(job.id) == (parameter_set, table)
        assert reopened.get(job.id).features == job.features
    finally:
        reopened.close()


def test_radiomics_past_its_time_limit_leaves_the_job_done_without_features(
    make_pool: MakePool, tmp_path: Path, demo_study: Path
) -> None:
    pool, queue, store, metrics = _bone_radiomics_pool(
        make_pool,
        tmp_path,
        demo_study,
        RadiomicsOptions(workers=1, timeout_s=0.01),  # too short
    )
    job = _run(pool, queue, JobSpec(STUDY_UID, None, "bone-radiomics", "1.0.0"))
    assert job.state is JobState.DONE, job.error
    assert {r.kind for r in job.results} == {"SC", "SEG", "SR"}
    assert job.features is not None
    (summary,) = job.features.summary
    assert (summary.segment, summary.feature_count) == ("Bone", 0)
    assert summary.skipped == (
        ("*", "radiomics stopped: not finished within the time limit (0.01 s)"),
    )
    [sr] = [r for r in job.results if r.kind == "SR"]
    [stored] = store.get_instances(STUDY_UID, sr.series_instance_uid)
    assert set(read_sr_measurements(stored.path)["Bone"]) == {
        "Volume",
        *(f"Attenuation Coefficient ({d})" for d in ("Mean", "Minimum", "Maximum")),
        "Attenuation Coefficient (Standard Deviation)",
    }
    assert (
        metrics.radiomics_segments_without_features.value(
            model="bone-radiomics", reason="time_limit"
        )
        == 1
    )
