"""Jobs: the durable queue (one owner of its database), workers, routing, export and the job
pipeline.
"""

from radserve.server.jobs.conformance import (
    ConformanceError,
    ConformanceFindings,
    ConformanceGate,
    GateMode,
    ObjectFindings,
)
from radserve.server.jobs.export import (
    ExportPolicy,
)
from radserve.server.jobs.pipeline import (
    PipelineResult,
    algorithm_identity,
    run_pipeline,
)
from radserve.server.jobs.queue import (
    JobQueue,
)
from radserve.server.jobs.records import (
    ExportState,
    FeatureTableNotFoundError,
    Job,
    JobFeatures,
    JobNotFoundError,
    JobSpec,
    JobState,
    QueueError,
    QueueFullError,
    ResultInstance,
    SegmentFeatureSummary,
    Stage,
)
from radserve.server.jobs.routing import (
    Router,
    candidate_recorder,
)
from radserve.server.jobs.selection import (
    SeriesFacts,
    check_selection,
    choose_series,
    facts_of_datasets,
    mismatch,
    series_facts,
)
from radserve.server.jobs.worker import (
    WorkerOptions,
    WorkerPool,
)

__all__ = [
    "ConformanceError",
    "ConformanceFindings",
    "ConformanceGate",
    "ExportPolicy",
    "ExportState",
    "FeatureTableNotFoundError",
    "GateMode",
    "Job",
    "JobFeatures",
    "JobNotFoundError",
    "JobQueue",
    "JobSpec",
    "JobState",
    "ObjectFindings",
    "PipelineResult",
    "QueueError",
    "QueueFullError",
    "ResultInstance",
    "Router",
    "SegmentFeatureSummary",
    "SeriesFacts",
    "Stage",
    "WorkerOptions",
    "WorkerPool",
    "algorithm_identity",
    "candidate_recorder",
    "check_selection",
    "choose_series",
    "facts_of_datasets",
    "mismatch",
    "run_pipeline",
    "series_facts",
]
