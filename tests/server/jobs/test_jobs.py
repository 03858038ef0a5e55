"""The durable job queue on a real SQLite file: states, claims, leases, crash recovery."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from radserve.server import (
    ExportState,
    FeatureTableNotFoundError,
    JobFeatures,
    JobNotFoundError,
    JobQueue,
    JobSpec,
    JobState,
    ResultInstance,
    SegmentFeatureSummary,
    Stage,
)

SPEC = JobSpec(
    study_instance_uid="1.2.3",
    series_instance_uid="1.2.3.4",
    model_name="bone",
    model_version="1.0.0",
    destinations=("pacs-a", "pacs-b"),
)
RESULTS = [ResultInstance("SEG", "2.25.1", "2.25.11"), ResultInstance("SR", "2.25.2", "2.25.21")]


def _queue(tmp_path: Path, **options: float) -> JobQueue:
    values = {"lease_s": 60.0, "max_attempts": 3, **options}
    return JobQueue(tmp_path, lease_s=values["lease_s"], max_attempts=int(values["max_attempts"]))


def test_a_job_goes_from_queued_to_exporting_with_one_record_per_destination(
    tmp_path: Path,
) -> None:
    queue = _queue(tmp_path)
    job = queue.submit(SPEC)
    assert (job.state, job.stage, job.attempts, job.spec) == (
        JobState.QUEUED,
        Stage.QUEUED,
        0,
        SPEC,
    )
    assert queue.depth() == 1

    claimed = queue.claim()
    assert claimed is not None and claimed.id == job.id
    assert (claimed.state, claimed.stage, claimed.attempts) == (JobState.RUNNING, Stage.FETCHING, 1)
    assert queue.claim() is None  # nothing else is due
    queue.set_stage(job.id, Stage.INFERENCE, timings_s={"fetch_s": 1.5}, provider="CPU")

    after = queue.results_stored(job.id, RESULTS, timings_s={"store_s": 0.25})
    assert (after.state, after.stage, after.provider) == (
        JobState.EXPORTING,
        Stage.EXPORTING,
        "CPU",
    )
    assert after.timings_s == {"fetch_s": 1.5, "store_s": 0.25}
    assert after.results == tuple(RESULTS)
    assert [(e.destination, e.state, e.attempts) for e in after.exports] == [
        ("pacs-a", ExportState.PENDING, 0),
        ("pacs-b", ExportState.PENDING, 0),
    ]
    assert queue.counts_by_state()[JobState.EXPORTING] == 1
    assert not queue.finish_exported(job.id, export_s=1.0)  # exports still pending
    queue.close()


def test_without_destinations_a_job_is_done_when_its_results_are_stored(tmp_path: Path) -> None:
    queue = _queue(tmp_path)
    job = queue.submit(JobSpec("1.2", "1.2.5", "bone", "1.0.0"))
    assert queue.claim() is not None
    done = queue.results_stored(job.id, RESULTS, timings_s={})
    assert (done.state, done.stage, done.exports) == (JobState.DONE, Stage.DONE, ())
    assert done.finished_at is not None


def test_a_job_that_stops_the_server_while_alone_is_quarantined(
    tmp_path: Path,
) -> None:
    queue = _queue(tmp_path, max_attempts=2)
    job = queue.submit(SPEC)
    assert queue.claim() is not None
    queue.close()  # the process dies with the job running

    queue = _queue(tmp_path, max_attempts=2)
    assert queue.get(job.id).state is JobState.QUEUED
    rerun = queue.claim()
    assert rerun is not None and rerun.attempts == 2
    queue.close()

    queue = _queue(tmp_path, max_attempts=2)
    failed = queue.get(job.id)
    assert failed.state is JobState.FAILED
    assert failed.error == (
        "quarantined: the server stopped 2 times while running this job alone; not retried"
    )
    queue.close()


def test_jobs_running_together_when_the_server_stops_are_not_charged_and_rerun_alone(
    tmp_path: Path,
) -> None:
    queue = _queue(tmp_path, max_attempts=2)
    first, second, third = (queue.submit(SPEC) for _ in range(3))
    assert queue.claim() is not None and queue.claim() is not None
    queue.close()  # the server stops with two jobs running: neither is to blame

    queue = _queue(tmp_path, max_attempts=2)
    assert [queue.get(j.id).state for j in (first, second)] == [JobState.QUEUED] * 2
    assert queue.get(second.id).attempts == 0  # the interrupted claim does not count
    alone = queue.claim()
    assert alone is not None and alone.id == first.id
    assert queue.claim() is None  # an interrupted job runs alone
    queue.close()  # ... and stops the server again: now it is charged

    queue = _queue(tmp_path, max_attempts=2)
    again = queue.claim()
    assert again is not None and again.id == first.id
    queue.close()  # a second stop while it runs alone: quarantined

    queue = _queue(tmp_path, max_attempts=2)
    assert queue.get(first.id).state is JobState.FAILED
    assert "quarantined" in (queue.get(first.id).error or "")
    bystander = queue.claim()  # never charged: it runs, alone, then the others
    assert bystander is not None and bystander.id == second.id and bystander.attempts == 1
    assert queue.claim() is None
    assert queue.get(third.id).state is JobState.QUEUED
    queue.close()


def test_an_older_job_database_gains_the_crash_columns(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    db.execute(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
        "state TEXT NOT NULL, stage TEXT NOT NULL, origin TEXT NOT NULL, "
        "study_instance_uid TEXT NOT NULL, series_instance_uid TEXT, model_name TEXT NOT NULL, "
        "model_version TEXT NOT NULL, source TEXT NOT NULL, destinations TEXT NOT NULL, "
        "created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL, "
        "finished_at REAL, not_before REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
        "lease_owner TEXT, lease_expires REAL, provider TEXT, "
        "timings TEXT NOT NULL DEFAULT '{}', error TEXT, results TEXT NOT NULL DEFAULT '[]')"
    )
    db.commit()
    db.close()
    queue = _queue(tmp_path)
    job = queue.submit(SPEC)
    assert queue.claim() is not None
    queue.close()
    queue = _queue(tmp_path)
    assert queue.get(job.id).state is JobState.QUEUED
    queue.close()


def test_an_expired_lease_makes_a_running_job_claimable_by_another_process(
    tmp_path: Path,
) -> None:
    queue = _queue(tmp_path, lease_s=0.0)
    other = _queue(tmp_path, lease_s=0.0)  # another process sharing the database
    job = queue.submit(SPEC)
    assert queue.claim() is not None
    time.sleep(0.01)
    assert queue.claim() is None  # its own running job: its workers are alive
    again = other.claim()
    assert again is not None and again.id == job.id and again.attempts == 2
    other.close()
    queue.close()


def test_retry_later_delays_the_job_then_fails_it_when_attempts_are_used(
    tmp_path: Path,
) -> None:
    queue = _queue(tmp_path, max_attempts=2)
    job = queue.submit(SPEC)
    queue.claim()
    waiting = queue.retry_later(job.id, "pull failed", delay_s=3600)
    assert (waiting.state, waiting.error) == (JobState.QUEUED, "pull failed")
    assert queue.claim() is None  # not due for an hour
    queue.retry_later(job.id, "pull failed", delay_s=0)
    assert queue.claim() is not None
    failed = queue.retry_later(job.id, "pull failed", delay_s=0)
    assert (failed.state, failed.error) == (JobState.FAILED, "pull failed (after 2 attempts)")


def test_release_gives_the_job_back_without_counting_the_attempt(tmp_path: Path) -> None:
    queue = _queue(tmp_path)
    job = queue.submit(SPEC)
    queue.claim()
    queue.release(job.id)
    released = queue.get(job.id)
    assert (released.state, released.attempts) == (JobState.QUEUED, 0)


def test_submit_unless_exists_and_listing(tmp_path: Path) -> None:
    queue = _queue(tmp_path)
    first = queue.submit_unless_exists(SPEC)
    assert first is not None
    assert queue.submit_unless_exists(SPEC) is None
    other = queue.submit_unless_exists(JobSpec("1.2.3", "1.2.3.4", "bone", "2.0.0"))
    assert other is not None
    queue.submit(JobSpec("9.9", None, "lung", "1.0.0"))
    assert [j.spec.model_version for j in queue.find(study_instance_uid="1.2.3")] == [
        "2.0.0",
        "1.0.0",
    ]
    assert [j.spec.model_name for j in queue.find(model_name="lung")] == ["lung"]
    assert len(queue.find(limit=1)) == 1
    assert len(queue.find(state=JobState.QUEUED)) == 3
    assert queue.find(state=JobState.FAILED) == []
    with pytest.raises(JobNotFoundError, match="no job with this id"):
        queue.get("nope")


def test_a_feature_table_is_stored_with_the_results_and_replaced_by_a_rerun(
    tmp_path: Path,
) -> None:
    queue = _queue(tmp_path)
    job = queue.submit(JobSpec("1.2", "1.2.5", "bone", "1.0.0"))
    other = queue.submit(JobSpec("1.2", "1.2.6", "bone", "1.0.0"))
    with pytest.raises(FeatureTableNotFoundError, match="no feature table"):
        queue.feature_table(job.id)
    with pytest.raises(JobNotFoundError, match="no job with this id"):
        queue.feature_table("nope")
    features = JobFeatures(
        parameter_set="small sha256:0123456789abcdef",
        summary=(
            SegmentFeatureSummary(1, "GTV", 1234.5, 32),
            SegmentFeatureSummary(2, "Speck", 0.5, 0, (("*", "too small"),)),
        ),
        segments_json='[{"label": 1, "features": []}]',
    )
    assert queue.claim() is not None
    done = queue.results_stored(job.id, RESULTS, timings_s={}, features=features)
    summary_only = JobFeatures(features.parameter_set, features.summary)
    assert done.features == summary_only
    assert queue.feature_table(job.id) == (features.parameter_set, [{"label": 1, "features": []}])
    listed = {j.id: j.features for j in queue.find()}
    assert listed == {job.id: summary_only, other.id: None}
    queue.close()

    queue = _queue(tmp_path)  # durable; a rerun without radiomics drops the table
    assert queue.get(job.id).features == summary_only
    queue.results_stored(job.id, RESULTS, timings_s={})
    assert queue.get(job.id).features is None
    with pytest.raises(FeatureTableNotFoundError):
        queue.feature_table(job.id)
    queue.close()
