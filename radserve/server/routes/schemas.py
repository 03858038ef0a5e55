"""The response bodies of the jobs and models APIs, as types (``/openapi.json`` shows them).

The handlers build plain dictionaries (``job_json``, ``model_json``); FastAPI checks them
against these models and documents them.
"""

from __future__ import annotations

from pydantic import BaseModel


class ModelRef(BaseModel):
    """A model package by name and version."""

    name: str
    version: str


class ResultView(BaseModel):
    """One result instance of a job (SEG, SR or the SC overlay)."""

    kind: str
    series_instance_uid: str
    sop_instance_uid: str


class ExportView(BaseModel):
    """A job's delivery to one destination."""

    destination: str
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: str | None
    delivered_at: str | None


class SkippedFeatureView(BaseModel):
    """A feature with no value, and why."""

    name: str
    reason: str


class SegmentSummaryView(BaseModel):
    """The radiomics of one segment, in short."""

    label: int
    segment: str
    volume_mm3: float | None
    feature_count: int
    skipped: list[SkippedFeatureView]


class JobRadiomicsView(BaseModel):
    """A job's radiomics: the parameter set, where its feature table is, each segment."""

    parameter_set: str
    feature_table: str
    segments: list[SegmentSummaryView]


class ConformanceObjectView(BaseModel):
    """The validator's errors in one result object: introduced (first lines, values
    redacted) and inherited from the source (counted)."""

    kind: str
    sop_instance_uid: str
    introduced: list[str]
    introduced_count: int
    inherited: int


class ConformanceView(BaseModel):
    """The conformance gate's findings on a job's results."""

    mode: str
    passed: bool
    validated: bool
    seconds: float
    problems: list[str]
    objects: list[ConformanceObjectView]


class JobView(BaseModel):
    """A job: what it runs on, its state and stage, timings, results and exports."""

    id: str
    state: str
    stage: str
    origin: str
    study_instance_uid: str
    series_instance_uid: str | None
    model: ModelRef
    source: str
    destinations: list[str]
    attempts: int
    provider: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    updated_at: str | None
    timings_s: dict[str, float]
    error: str | None
    results: list[ResultView]
    exports: list[ExportView]
    radiomics: JobRadiomicsView | None
    conformance: ConformanceView | None


class JobList(BaseModel):
    """``GET /jobs``: the jobs matching the filters, newest first."""

    jobs: list[JobView]


class InputSelectionView(BaseModel):
    """Which series a model accepts."""

    modalities: list[str]
    body_parts: list[str]
    series_description_regex: str | None
    min_slices: int


class LabelView(BaseModel):
    """One label a model segments."""

    label: int
    name: str


class ParameterSetView(BaseModel):
    """The radiomics parameter set a model computes."""

    parameter_set: str
    sha256: str
    identifier: str


class ModelView(BaseModel):
    """A loaded model package and the execution provider its session uses."""

    name: str
    version: str
    model_sha256: str
    provider: str
    input: InputSelectionView
    labels: list[LabelView]
    intended_use: str
    validation_metrics: dict[str, float]
    radiomics: ParameterSetView | None


class ModelList(BaseModel):
    """``GET /models``: every loaded model package, by name then version."""

    models: list[ModelView]


class ErrorView(BaseModel):
    """The body of every error answer: a short, fixed message without patient data."""

    error: str
