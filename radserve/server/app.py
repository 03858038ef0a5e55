"""The whole server: DICOMweb, models, durable jobs, workers, routing, export, metrics.

:func:`open_server` loads every model package (refusing to start on a bad one) and opens the
job queue and the instance store under ``data_dir``; :func:`create_app`, the one app factory,
builds the app on them with one state object (:class:`radserve.server.deps.ServerState`). The
:class:`ServerLifecycle` starts the workers, the exporter and the router when the app starts
(FastAPI lifespan) and stops them (and the radiomics worker processes), then closes the queue
and the store, when it shuts down. STOW-RS answers 503 with ``Retry-After`` while the queue
holds as many queued jobs as its limit (``QueueLimit``). ``/readyz`` checks the store, the
models, the queue and the workers.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio
import uvicorn
from fastapi import FastAPI

import radserve
from radserve.inference import RuntimeSettings
from radserve.radiomics import RadiomicsOptions
from radserve.server.auth import Authenticator
from radserve.server.deps import (
    Backpressure,
    JobServices,
    ReadinessCheck,
    ServerState,
    never_busy,
)
from radserve.server.http import install_error_handling, install_log_redaction, uvicorn_config
from radserve.server.jobs.conformance import GateMode
from radserve.server.jobs.export import Exporter, ExportPolicy
from radserve.server.jobs.limit import QueueLimit
from radserve.server.jobs.queue import JobQueue
from radserve.server.jobs.routing import Router, candidate_recorder
from radserve.server.jobs.worker import WorkerOptions, WorkerPool
from radserve.server.metrics import ServerMetrics
from radserve.server.registry import ModelRegistry
from radserve.server.routes import health, login, qido, stow, viewer, wado
from radserve.server.routes import jobs as jobs_api
from radserve.server.routes import metrics as metrics_api
from radserve.server.routes import models as models_api
from radserve.server.routes import openapi as openapi_api
from radserve.server.session import SessionSigner
from radserve.server.settings import ServerSettings
from radserve.server.store import InstanceStore
from radserve.server.viewer import ViewerSite

logger = logging.getLogger(__name__)

LEASE_MARGIN_S = 60.0
STOP_TIMEOUT_S = 20.0
DEFAULT_RETRY_AFTER_S = 30.0
MAX_RETRY_AFTER_S = 600.0


class QueueBackpressure:
    """The STOW-RS back-pressure: busy while the queue holds as many jobs as its limit.

    Retry-After estimates the time to drain the excess from the mean inference time seen so
    far (30 s before any job ran), between 5 s and 10 minutes.
    """

    def __init__(self, queue: JobQueue, metrics: ServerMetrics, *, limit: QueueLimit, workers: int):
        self._queue = queue
        self._metrics = metrics
        self._limit = limit
        self._workers = workers

    def __call__(self) -> float | None:
        depth = self._queue.depth()
        max_jobs = self._limit.current()
        if depth < max_jobs:
            return None
        histogram = self._metrics.stage_seconds
        runs = histogram.count(stage="inference")
        if not runs:
            return DEFAULT_RETRY_AFTER_S
        mean_s = histogram.total(stage="inference") / runs
        excess = depth - max_jobs + 1
        return float(min(MAX_RETRY_AFTER_S, max(5.0, math.ceil(mean_s * excess / self._workers))))


@dataclass
class ServerLifecycle:
    """The server's background parts; started and stopped by the app's lifespan."""

    store: InstanceStore
    queue: JobQueue
    registry: ModelRegistry
    workers: WorkerPool
    exporter: Exporter
    router: Router | None
    routing_interval_s: float
    metrics: ServerMetrics
    queue_limit: QueueLimit

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    def services(self) -> JobServices:
        """The parts the jobs, models and metrics routes use."""
        return JobServices(
            queue=self.queue,
            registry=self.registry,
            workers=self.workers,
            exporter=self.exporter,
            metrics=self.metrics,
            queue_limit=self.queue_limit,
        )

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        """The models', the queue's and the workers' readiness checks."""
        return {
            "models": self.registry.check_ready,
            "queue": self.queue.check_ready,
            "workers": self.workers.check_alive,
        }

    def start(self) -> None:
        """Start the exporter, the workers and the router."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
            self.exporter.start()
            self.workers.start()
            if self.router is not None:
                self.router.start(interval_s=self.routing_interval_s)
        logger.info(
            "radserve started: %d models, %d queued jobs",
            len(self.registry.models),
            self.queue.depth(),
        )

    def stop(self) -> None:
        """Stop the background threads, then close the queue and the store (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.router is not None:
                self.router.stop()
            if self.workers.stop(timeout_s=STOP_TIMEOUT_S):
                # The radiomics processes, once no job uses them (a job still busy keeps
                # them until the process exits; it is re-queued at the next start).
                self.registry.close()
            self.exporter.stop(timeout_s=STOP_TIMEOUT_S)
            self.queue.close()  # before the store: a late worker cannot record a failure
            self.store.close()
        logger.info("radserve stopped")


def open_server(settings: ServerSettings) -> ServerLifecycle:
    """Load the models and open the store, the job queue and the background parts (not
    started: the app's lifespan starts them).

    Raises:
        ModelRegistryError: A model package is invalid, or there is none.
        StoreError: The store cannot be opened (or another process has it).
        QueueError: The job database cannot be opened.
    """
    registry = ModelRegistry(
        settings.models_dir,
        runtime=RuntimeSettings(
            providers=settings.execution_providers,
            intra_op_threads=settings.inference_threads,
        ),
        inference_concurrency=settings.inference_concurrency,
        inference_memory_bytes=settings.inference_memory_mb * 1024**2,
        radiomics=RadiomicsOptions(
            enabled=settings.radiomics,
            workers=settings.radiomics_workers,
            timeout_s=settings.radiomics_timeout_s,
        ),
    )
    with ExitStack() as cleanup:
        cleanup.callback(registry.close)
        queue = JobQueue(
            settings.data_dir,
            lease_s=settings.job_timeout_s + LEASE_MARGIN_S,
            max_attempts=settings.job_max_attempts,
        )
        cleanup.callback(queue.close)
        store = _open_store(settings, queue if settings.routing_enabled else None)
        cleanup.callback(store.close)
        lifecycle = _assemble(settings, registry, store, queue)
        cleanup.pop_all()
    return lifecycle


def create_app(
    settings: ServerSettings,
    *,
    server: ServerLifecycle | None = None,
    backpressure: Backpressure | None = None,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """The radserve app: the one factory.

    With ``server`` (from :func:`open_server`) it is the whole product: DICOMweb, jobs,
    models and metrics, STOW-RS back-pressure from the job queue, and a lifespan that starts
    the background parts and stops them (closing the queue and the store) at shutdown.
    Without, it is a DICOMweb-only app on a store it opens on ``settings.data_dir`` and
    closes at shutdown.

    Args:
        settings: Checked server settings.
        server: The opened server parts, or ``None`` for DICOMweb only.
        backpressure: Asked before each STOW-RS request (default: the queue's, or never).
        readiness_checks: Named checks for ``/readyz`` besides the store's (and, with
            ``server``, the models', the queue's and the workers').

    Raises:
        StoreError: The store cannot be opened (DICOMweb only).
    """
    install_log_redaction()
    store = server.store if server is not None else _open_store(settings, None)
    checks = dict(readiness_checks or {})
    jobs: JobServices | None = None
    if server is not None:
        jobs = server.services()
        checks = {**server.readiness_checks(), **checks}
        backpressure = backpressure or QueueBackpressure(
            server.queue, server.metrics, limit=server.queue_limit, workers=settings.workers
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if server is not None:
            server.start()
        try:
            yield
        finally:
            if server is not None:
                await anyio.to_thread.run_sync(server.stop)
            else:
                store.close()

    app = FastAPI(
        title="radserve",
        version=radserve.__version__,
        summary="DICOMweb AI inference server for radiology",
        lifespan=lifespan,
        openapi_url=None,  # served by routes.openapi, behind the read role
        docs_url=None,  # the docs pages fetch their scripts from a public CDN
        redoc_url=None,
    )
    app.state.radserve = ServerState(
        settings=settings,
        store=store,
        authenticator=Authenticator(settings.tokens, settings.dev_token),
        sessions=_session_signer(settings),
        backpressure=backpressure or never_busy,
        readiness_checks=checks,
        jobs=jobs,
        viewer=ViewerSite(settings.viewer_dir) if settings.viewer_dir is not None else None,
    )
    for router in (
        health.router,
        stow.router,
        qido.router,
        wado.router,
        login.router,
        viewer.router,
        openapi_api.router,
    ):
        app.include_router(router)
    if jobs is not None:
        for router in (jobs_api.router, models_api.router, metrics_api.router):
            app.include_router(router)
    install_error_handling(app)
    return app


def _session_signer(settings: ServerSettings) -> SessionSigner:
    secret = settings.session_secret
    if secret is None:
        logger.info("no session_secret: browser sessions end when this process stops")
    key = secret.get_secret_value().encode() if secret is not None else None
    return SessionSigner(key, ttl_s=settings.session_ttl_s)


def _open_store(settings: ServerSettings, routing_queue: JobQueue | None) -> InstanceStore:
    return InstanceStore(
        settings.data_dir,
        overwrite=settings.overwrite_instances,
        max_instance_bytes=settings.max_request_bytes,
        max_instances_per_study=settings.max_instances_per_study,
        on_commit=candidate_recorder(routing_queue) if routing_queue is not None else None,
    )


def _assemble(
    settings: ServerSettings, registry: ModelRegistry, store: InstanceStore, queue: JobQueue
) -> ServerLifecycle:
    metrics = ServerMetrics()
    queue_limit = QueueLimit(
        metrics,
        configured=settings.queue_max_jobs,
        workers=settings.workers,
        backlog_s=settings.queue_backlog_s,
    )
    policy = ExportPolicy(
        backoff_s=settings.export_backoff_s,
        backoff_max_s=settings.export_backoff_max_s,
        timeout_s=settings.export_timeout_s,
    )
    exporter = Exporter(
        queue=queue,
        store=store,
        destinations=settings.destinations,
        policy=policy,
        metrics=metrics,
    )
    workers = WorkerPool(
        queue=queue,
        registry=registry,
        store=store,
        pull_sources=settings.pull_sources,
        options=WorkerOptions(
            workers=settings.workers,
            job_timeout_s=settings.job_timeout_s,
            retry=policy,
            overlay_transfer_syntax_uid=settings.overlay_transfer_syntax_uid,
            segmentation_type=settings.seg_type,
            conformance_gate=GateMode(settings.conformance_gate),
        ),
        metrics=metrics,
        on_exporting=lambda job: exporter.wake(),
    )
    router: Router | None = None
    if settings.routing_enabled:
        router = Router(
            queue=queue,
            registry=registry,
            store=store,
            stable_s=settings.routing_stable_s,
            destinations=[d.name for d in settings.destinations],
            max_queued=queue_limit.current,
        )
        router.on_job = lambda job: workers.wake()
    return ServerLifecycle(
        store=store,
        queue=queue,
        registry=registry,
        workers=workers,
        exporter=exporter,
        router=router,
        routing_interval_s=min(1.0, max(0.1, settings.routing_stable_s / 4)),
        metrics=metrics,
        queue_limit=queue_limit,
    )


def serve(settings: ServerSettings) -> None:
    """Run the whole server until it is stopped (SIGINT / SIGTERM).

    Raises:
        ModelRegistryError: A model package is invalid, or there is none.
        StoreError: The store cannot be opened.
        QueueError: The job database cannot be opened.
    """
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    app = create_app(settings, server=open_server(settings))
    config = uvicorn_config(
        app,
        host=settings.host,
        port=settings.port,
        header_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
    )
    uvicorn.Server(config).run()
