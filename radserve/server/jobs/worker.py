"""Job workers: claim a job, fetch its series, run the pipeline, store the results.

Per job, in order (each stage recorded on the job with its time):

1. ``fetching``: the series' instances from the instance store (source ``local``) or over
   WADO-RS from a configured pull source, whose instances are then kept in the store too.
   A job without a series runs on the study's series that the model accepts (the one with
   most slices when several do).
2. ``inference``: :func:`~radserve.server.jobs.pipeline.run_pipeline` (selection check,
   prediction, radiomic features when the model names a parameter set, measurements,
   SEG + SR + overlay SC) on the model's shared predictor and radiomics runner. Timings:
   ``preprocess_s``, ``inference_s``, ``postprocess_s``, ``radiomics_s`` (models with
   radiomics) and ``results_s``.
3. ``storing``: the results go into the instance store in one batch, so that QIDO-RS and
   WADO-RS serve them; an instance stored already by an earlier run of the job is kept as it
   is (its UID is the same by construction). The feature table is recorded with the job in
   the same transaction as its result UIDs.
4. Export records are created; :class:`~radserve.server.jobs.export.Exporter` sends them.

Bad input (the series is missing, inconsistent or not accepted) fails the job with the
reason. A pull source that cannot be reached puts the job back in the queue with back-off,
until its attempts are used up. ``job_timeout_s`` is checked between stages (ONNX Runtime
cannot be interrupted inside a run); a job over it fails. Stopping the workers gives running
jobs back to the queue at the next stage boundary.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import JPEGLSLossless

from radserve.dicom_io import DicomIOError, SegmentationTypeChoice, read_image_series
from radserve.inference import InferenceError, SeriesNotAcceptedError
from radserve.radiomics import RadiomicsError, without_features
from radserve.server.jobs.conformance import (
    ConformanceError,
    ConformanceFindings,
    ConformanceGate,
    GateMode,
)
from radserve.server.jobs.export import ExportPolicy, pacs_client
from radserve.server.jobs.pipeline import PipelineResult, run_pipeline
from radserve.server.jobs.queue import Job, JobQueue, JobState, QueueError, ResultInstance, Stage
from radserve.server.jobs.records import (
    JobFeatures,
    SegmentFeatureSummary,
)
from radserve.server.jobs.selection import (
    choose_series,
    facts_of_datasets,
    mismatch,
    series_facts,
)
from radserve.server.metrics import ServerMetrics
from radserve.server.pacs import PacsError
from radserve.server.registry import ModelRegistry, RegisteredModel
from radserve.server.settings import LOCAL_SOURCE, RemoteSettings
from radserve.server.store.instances import (
    BatchOutcome,
    DuplicateInstanceError,
    InstanceNotFoundError,
    InstanceStore,
    encode_dataset,
)

logger = logging.getLogger(__name__)

_IDLE_WAIT_S = 1.0


class JobTimeoutError(InferenceError):
    """A job ran longer than ``job_timeout_s``."""


class _PullUnavailableError(Exception):
    """The pull source failed; the job is retried later."""


class _StoppingError(Exception):
    """The workers are stopping; the job goes back to the queue."""


@dataclass(frozen=True)
class WorkerOptions:
    """How jobs run.

    Attributes:
        workers: Worker threads.
        job_timeout_s: Longest run of one job (checked between stages and between the
            sliding window's batches).
        retry: Back-off (for a pull source that is down) and request timeout.
        overlay_transfer_syntax_uid: Transfer syntax of the overlay Secondary Capture
            instances (one of :data:`~radserve.dicom_io.sc.overlay.OVERLAY_TRANSFER_SYNTAXES`).
        segmentation_type: The type of the result SEG (``auto``, ``binary``, ``fractional``
            or ``labelmap``;
            see :func:`~radserve.dicom_io.choose_segmentation_type`).
        conformance_gate: What the conformance gate does with results that fail it (see
            :mod:`radserve.server.jobs.conformance`).
    """

    workers: int = 2
    job_timeout_s: float = 3600.0
    retry: ExportPolicy = field(default_factory=ExportPolicy)
    overlay_transfer_syntax_uid: str = JPEGLSLossless
    segmentation_type: SegmentationTypeChoice = "auto"
    conformance_gate: GateMode = GateMode.BLOCK


class WorkerPool:
    """Worker threads running queued jobs (:meth:`start`), or :meth:`run_next` directly.

    Args:
        queue: The job queue.
        registry: The loaded models.
        store: The instance store (input and results).
        pull_sources: The configured pull sources.
        options: Thread count, timeout, retry policy.
        metrics: Where stage times are recorded.
        on_exporting: Called with a job whose results await export.
    """

    def __init__(
        self,
        *,
        queue: JobQueue,
        registry: ModelRegistry,
        store: InstanceStore,
        pull_sources: Sequence[RemoteSettings],
        options: WorkerOptions,
        metrics: ServerMetrics,
        on_exporting: Callable[[Job], None] | None = None,
    ) -> None:
        self._queue = queue
        self._registry = registry
        self._store = store
        self._pull_sources: Mapping[str, RemoteSettings] = {s.name: s for s in pull_sources}
        self._options = options
        self._gate = ConformanceGate(options.conformance_gate)
        self._metrics = metrics
        self._on_exporting = on_exporting
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- threads -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads."""
        self._stop.clear()
        for n in range(self._options.workers):
            thread = threading.Thread(target=self._loop, name=f"radserve-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """A job was queued: look now."""
        self._wake.set()

    def stop(self, *, timeout_s: float = 30.0) -> bool:
        """Stop after the current stage of each running job; ``False`` if a thread is still
        busy (its job stays ``running`` and is re-queued at the next start)."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self._threads if t.is_alive()]
        if alive:
            logger.warning(
                "%d workers still busy at shutdown; their jobs re-run at start", len(alive)
            )
        return not alive

    def check_alive(self) -> None:
        """Raise :class:`InferenceError` when a started worker thread has died."""
        if self._threads and not self._stop.is_set():
            dead = sum(not t.is_alive() for t in self._threads)
            if dead:
                raise InferenceError(f"{dead} worker threads have stopped")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_next()
            except QueueError:  # the database failed; the job's lease or a restart recovers it
                logger.exception("job queue failed; retrying")
                ran = False
            if not ran:
                self._wake.wait(_IDLE_WAIT_S)
                self._wake.clear()

    # --- one job -----------------------------------------------------------------------

    def run_next(self) -> bool:
        """Claim and run the next due job; whether there was one."""
        job = self._queue.claim()
        if job is None:
            return False
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        started = time.monotonic()
        timings: dict[str, float] = {}
        if job.started_at is not None:
            timings["queued_s"] = max(0.0, job.started_at - job.created_at)
        logger.info("job %s running (attempt %d)", job.id, job.attempts)
        try:
            self._stages(job, started, timings)
        except _StoppingError:
            self._queue.release(job.id)
            logger.info("job %s given back to the queue (shutdown)", job.id)
        except _PullUnavailableError as exc:
            delay_s = self._options.retry.delay_s(job.attempts)
            after = self._queue.retry_later(job.id, str(exc), delay_s=delay_s)
            if after.state is JobState.FAILED:
                self._metrics.jobs_finished.inc(state=JobState.FAILED)
        except QueueError:  # the database failed: nothing can be recorded
            raise
        except ConformanceError as exc:  # nothing stored; the findings on the job, PHI-free
            self._queue.fail(
                job.id, str(exc), timings_s=timings, conformance=exc.findings.as_json()
            )
            self._metrics.jobs_finished.inc(state=JobState.FAILED)
        except (DicomIOError, InferenceError, RadiomicsError) as exc:  # messages never hold PHI
            self._failed(job, str(exc), timings)
        except Exception as exc:  # the job fails visibly; log type and frames, not the message
            frames = "".join(traceback.format_tb(exc.__traceback__))
            logger.error("job %s: unexpected %s\n%s", job.id, type(exc).__name__, frames)
            self._failed(job, f"internal error ({type(exc).__name__}); see the server log", timings)

    def _failed(self, job: Job, error: str, timings: Mapping[str, float]) -> None:
        self._queue.fail(job.id, error, timings_s=timings)
        self._metrics.jobs_finished.inc(state=JobState.FAILED)

    def _stages(self, job: Job, started: float, timings: dict[str, float]) -> None:
        model = self._registry.get(job.spec.model_name, job.spec.model_version)
        deadline = started + self._options.job_timeout_s

        begin = time.perf_counter()
        paths, series_uid = self._fetch(job, model)
        series = read_image_series(paths, max_bytes=self._store.max_instance_bytes)
        timings["fetch_s"] = self._observe("fetch", begin)
        self._next(job, Stage.INFERENCE, deadline, timings, series_instance_uid=series_uid)

        begin = time.perf_counter()
        result = run_pipeline(
            series,
            model.predictor,
            radiomics=model.radiomics,
            deadline=deadline,
            overlay_transfer_syntax_uid=self._options.overlay_transfer_syntax_uid,
            segmentation_type=self._options.segmentation_type,
        )
        total_s = time.perf_counter() - begin
        prediction = result.prediction.timings
        timings.update(
            preprocess_s=prediction.preprocess_s,
            inference_s=prediction.inference_s,
            postprocess_s=prediction.postprocess_s,
            results_s=max(0.0, total_s - prediction.total_s - result.radiomics_s),
        )
        self._metrics.stage_seconds.observe(prediction.total_s, stage="inference")
        if model.radiomics is not None:
            timings["radiomics_s"] = result.radiomics_s
            self._metrics.stage_seconds.observe(result.radiomics_s, stage="radiomics")
            for cause, count in without_features(result.features).items():
                self._metrics.radiomics_segments_without_features.inc(
                    count, model=model.name, reason=cause
                )
        self._metrics.stage_seconds.observe(timings["results_s"], stage="results")
        self._metrics.inference_seconds.observe(
            prediction.total_s,
            model=model.name,
            version=model.version,
            provider=result.prediction.provider,
        )
        self._next(job, Stage.STORING, deadline, timings, provider=result.prediction.provider)

        begin = time.perf_counter()
        findings: list[ConformanceFindings] = []

        def gate(staged: Sequence[tuple[Dataset, Path]]) -> None:
            try:
                findings.append(self._gate.check(series, staged, source_file=paths[0]))
            except ConformanceError as exc:
                self._count_conformance(model, exc.findings)
                raise
            self._count_conformance(model, findings[0])

        stored = self._store_results(result.results.datasets(), before_commit=gate)
        store_s = time.perf_counter() - begin
        if _recorded(findings) is not None:
            timings["conformance_s"] = findings[0].seconds
            self._metrics.stage_seconds.observe(findings[0].seconds, stage="conformance")
            store_s -= findings[0].seconds
        timings["store_s"] = store_s
        self._metrics.stage_seconds.observe(store_s, stage="store")
        after = self._queue.results_stored(
            job.id,
            stored,
            timings_s=timings,
            features=job_features(result),
            conformance=_recorded(findings),
        )
        logger.info("job %s: %d result instances stored", job.id, len(stored))
        if after.state is JobState.DONE:
            self._metrics.jobs_finished.inc(state=JobState.DONE)
        elif self._on_exporting is not None:
            self._on_exporting(after)

    def _observe(self, stage: str, begin: float) -> float:
        elapsed = time.perf_counter() - begin
        self._metrics.stage_seconds.observe(elapsed, stage=stage)
        return elapsed

    def _next(
        self,
        job: Job,
        stage: Stage,
        deadline: float,
        timings: Mapping[str, float],
        *,
        series_instance_uid: str | None = None,
        provider: str | None = None,
    ) -> None:
        if self._stop.is_set():
            raise _StoppingError
        if time.monotonic() > deadline:
            raise JobTimeoutError(
                f"the job ran longer than job_timeout_s ({self._options.job_timeout_s:g} s) "
                f"before the {stage} stage"
            )
        self._queue.set_stage(
            job.id,
            stage,
            timings_s=timings,
            series_instance_uid=series_instance_uid,
            provider=provider,
        )

    # --- fetching ----------------------------------------------------------------------

    def _fetch(self, job: Job, model: RegisteredModel) -> tuple[list[Path], str]:
        """The stored files of the job's series (pulled first from a remote source)."""
        spec = job.spec
        if spec.source != LOCAL_SOURCE:
            series_uid = self._pull(job, model)
        elif spec.series_instance_uid is not None:
            series_uid = spec.series_instance_uid
        else:
            series_uid = self._choose_local_series(job, model)
        try:
            instances = self._store.get_instances(spec.study_instance_uid, series_uid)
        except InstanceNotFoundError as exc:
            raise InstanceNotFoundError("the job's series is not in the store") from exc
        return [i.path for i in instances], series_uid

    def _choose_local_series(self, job: Job, model: RegisteredModel) -> str:
        facts = series_facts(self._store, job.spec.study_instance_uid)
        if not facts:
            raise InstanceNotFoundError("the job's study is not in the store")
        return choose_series(facts, model)

    def _pull(self, job: Job, model: RegisteredModel) -> str:
        spec = job.spec
        remote = self._pull_sources.get(spec.source)
        if remote is None:
            raise InferenceError(f"pull source {spec.source!r} is not configured")
        client = pacs_client(remote, timeout_s=self._options.retry.timeout_s)
        try:
            candidates = (
                [spec.series_instance_uid]
                if spec.series_instance_uid is not None
                else client.series_uids(spec.study_instance_uid)
            )
            reasons: list[str] = []
            for series_uid in candidates:
                datasets = client.retrieve_series(spec.study_instance_uid, series_uid)
                facts = facts_of_datasets(spec.study_instance_uid, series_uid, datasets)
                reason = mismatch(model.package.manifest.input, facts)
                if reason is None or spec.series_instance_uid is not None:
                    # Recorded first, so that routing does not start a second job for it.
                    self._queue.set_stage(job.id, Stage.FETCHING, series_instance_uid=series_uid)
                    self._keep(datasets)
                    return series_uid
                reasons.append(reason)
        except PacsError as exc:
            raise _PullUnavailableError(f"pull from {remote.name!r} failed: {exc}") from exc
        raise SeriesNotAcceptedError(
            f"no series of the study on {remote.name!r} is accepted by model {model.key}"
            + (f" ({'; '.join(dict.fromkeys(reasons))})" if reasons else " (it has none)")
        )

    def _keep(self, datasets: Sequence[Dataset]) -> None:
        """Store pulled instances (a copy there already stays as it is)."""
        self._store_datasets(datasets)

    # --- storing -----------------------------------------------------------------------

    def _count_conformance(self, model: RegisteredModel, findings: ConformanceFindings) -> None:
        for kind, count in findings.errors_by_kind().items():
            self._metrics.conformance_errors.inc(count, model=model.name, kind=kind)

    def _store_results(
        self,
        datasets: Sequence[Dataset],
        *,
        before_commit: Callable[[Sequence[tuple[Dataset, Path]]], None] | None = None,
    ) -> list[ResultInstance]:
        self._check_outcome(self._store.store_results(datasets, before_commit=before_commit))
        return [
            ResultInstance(
                kind=_kind(ds),
                series_instance_uid=str(ds.SeriesInstanceUID),
                sop_instance_uid=str(ds.SOPInstanceUID),
            )
            for ds in datasets
        ]

    def _store_datasets(self, datasets: Sequence[Dataset]) -> None:
        with self._store.batch() as batch:
            for ds in datasets:
                staged = self._store.staged_file()
                staged.write(encode_dataset(ds))
                batch.add(staged)
            outcome = batch.commit()
        self._check_outcome(outcome)

    @staticmethod
    def _check_outcome(outcome: BatchOutcome) -> None:
        for failure in outcome.failed:
            if isinstance(failure.error, DuplicateInstanceError):
                logger.info("an instance is stored already with other bytes; kept as it was")
                continue
            raise failure.error


def job_features(result: PipelineResult) -> JobFeatures | None:
    """What the job records of the pipeline's features (``None`` without radiomics)."""
    if result.parameter_set is None:
        return None
    volumes = {m.label: m.volume_mm3 for m in result.results.measurements}
    return JobFeatures(
        parameter_set=result.parameter_set,
        summary=tuple(
            SegmentFeatureSummary(
                label=s.label,
                segment=s.segment_name,
                volume_mm3=volumes.get(s.label),
                feature_count=len(s.features),
                skipped=tuple((k.name, k.reason) for k in s.skipped),
            )
            for s in result.features
        ),
        segments_json=json.dumps(result.feature_table(), allow_nan=False),
    )


def _recorded(findings: Sequence[ConformanceFindings]) -> dict[str, object] | None:
    """What the job records of the gate's findings (nothing when the gate is off)."""
    if not findings or findings[0].mode is GateMode.OFF:
        return None
    return findings[0].as_json()


def _kind(ds: Dataset) -> str:
    modality = str(ds.get("Modality", ""))
    return modality if modality in ("SEG", "SR") else "SC"
