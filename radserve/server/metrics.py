"""Prometheus metrics in the text exposition format (version 0.0.4), on ``prometheus_client``.

Counters and histograms live in this process (since its start), in one
:class:`~prometheus_client.CollectorRegistry` per :class:`ServerMetrics` (never the global
one); the job and export gauges are read from the job queue when scraped, so they survive
restarts. Label values are model names, versions, providers, destination names, stage names,
HTTP methods, route templates (``/dicomweb/studies/{study}``, never the path itself) and
statuses only: never UIDs or other data about patients.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# What generate_latest writes (CONTENT_TYPE_LATEST names another version of the format).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

STAGE_BUCKETS_S: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)


HTTP_BUCKETS_S: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


class _WithoutCreated:
    """The metrics of ``sources``, less the ``_created`` timestamps.

    This exposition never carried them, and turning them off with
    ``prometheus_client.disable_created_metrics`` would change every registry of the process.
    """

    def __init__(self, *sources: Collector) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            for metric in source.collect():
                created = f"{metric.name}_created"
                metric.samples = [s for s in metric.samples if s.name != created]
                yield metric


class _Families:
    """Metric families made by the caller, as a collector."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def _text(collector: Collector) -> str:
    return generate_latest(collector).decode("utf-8")


def _sample(collector: Collector, name: str, labels: Mapping[str, str]) -> float | None:
    """The value of sample ``name`` with exactly ``labels``, or None when it has none yet."""
    wanted = {key: str(value) for key, value in labels.items()}
    for metric in collector.collect():
        for sample in metric.samples:
            if sample.name == name and sample.labels == wanted:
                return float(sample.value)
    return None


class Counter:
    """A monotonically increasing count per label set.

    Args:
        name: The metric name (with its ``_total`` suffix).
        help_text: The ``# HELP`` text.
        label_names: The labels every increment names.
        registry: Where the counter is registered.
    """

    def __init__(
        self,
        name: str,
        help_text: str,
        *,
        label_names: Sequence[str] = (),
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.help_text = help_text
        self._counter = prometheus_client.Counter(
            name, help_text, labelnames=tuple(label_names), registry=registry
        )
        self._sample_name = name if name.endswith("_total") else f"{name}_total"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (not negative) to the count of ``labels``."""
        if amount < 0:
            raise ValueError("a counter only increases")
        (self._counter.labels(**labels) if labels else self._counter).inc(amount)

    def value(self, **labels: str) -> float:
        """The current count of ``labels``."""
        return _sample(self._counter, self._sample_name, labels) or 0.0

    def render(self) -> list[str]:
        """Exposition lines."""
        return _text(_WithoutCreated(self._counter)).splitlines()


class Histogram:
    """Observations counted into cumulative buckets per label set.

    Args:
        name: The metric name.
        help_text: The ``# HELP`` text.
        label_names: The labels every observation names.
        registry: Where the histogram is registered.
        buckets: Upper bounds of the buckets, increasing (``+Inf`` is added).
    """

    def __init__(
        self,
        name: str,
        help_text: str,
        *,
        label_names: Sequence[str] = (),
        registry: CollectorRegistry,
        buckets: Sequence[float] = STAGE_BUCKETS_S,
    ) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("histogram buckets must be increasing")
        self.name = name
        self.help_text = help_text
        self._histogram = prometheus_client.Histogram(
            name,
            help_text,
            labelnames=tuple(label_names),
            registry=registry,
            buckets=tuple(float(b) for b in buckets),
        )

    def observe(self, value: float, **labels: str) -> None:
        """Count one observation of ``labels``."""
        (self._histogram.labels(**labels) if labels else self._histogram).observe(value)

    def count(self, **labels: str) -> int:
        """Observations of ``labels`` so far."""
        return int(_sample(self._histogram, f"{self.name}_count", labels) or 0)

    def total(self, **labels: str) -> float:
        """Sum of the observations of ``labels`` so far."""
        return _sample(self._histogram, f"{self.name}_sum", labels) or 0.0

    def render(self) -> list[str]:
        """Exposition lines (``_bucket`` cumulative, ``_sum``, ``_count``)."""
        return _text(_WithoutCreated(self._histogram)).splitlines()


def gauge_lines(
    name: str, help_text: str, values: Iterable[tuple[Mapping[str, str], float]]
) -> list[str]:
    """Exposition lines of a gauge whose values are read now.

    Every entry of ``values`` must name the same labels.
    """
    entries = [(dict(labels), value) for labels, value in values]
    label_names = sorted(entries[0][0]) if entries else []
    family = GaugeMetricFamily(name, help_text, labels=label_names)
    for labels, value in entries:
        family.add_metric([labels[key] for key in label_names], value)
    return _text(_Families([family])).splitlines()


class ServerMetrics:
    """The metrics the server's components record, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "radserve_job_stage_seconds",
            "Seconds jobs spent in each stage.",
            label_names=("stage",),
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "radserve_model_inference_seconds",
            "Seconds of one prediction (preprocessing, sliding window, postprocessing).",
            label_names=("model", "version", "provider"),
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "radserve_jobs_finished_total",
            "Jobs that reached done or failed since start.",
            label_names=("state",),
            registry=self.registry,
        )
        self.radiomics_segments_without_features = Counter(
            "radserve_radiomics_segments_without_features_total",
            "Segments that got no radiomic features: rejected by PyRadiomics (too small) or "
            "stopped at radiomics_timeout_s.",
            label_names=("model", "reason"),
            registry=self.registry,
        )
        self.conformance_errors = Counter(
            "radserve_conformance_errors_total",
            "Errors the conformance gate found in job results: validator errors radserve "
            "introduced, by object kind (SEG, SR, SC), and structural problems (structure).",
            label_names=("model", "kind"),
            registry=self.registry,
        )
        self.export_attempts = Counter(
            "radserve_export_attempts_total",
            "STOW-RS export attempts per destination.",
            label_names=("destination",),
            registry=self.registry,
        )
        self.export_failures = Counter(
            "radserve_export_failures_total",
            "Failed STOW-RS export attempts per destination.",
            label_names=("destination",),
            registry=self.registry,
        )
        self.http_requests = Counter(
            "radserve_http_requests_total",
            "HTTP requests answered, by method, route template (unmatched for unknown paths) "
            "and status.",
            label_names=("method", "route", "status"),
            registry=self.registry,
        )
        self.http_request_seconds = Histogram(
            "radserve_http_request_seconds",
            "Seconds from a request's arrival to the end of its answer, by method and route.",
            label_names=("method", "route"),
            registry=self.registry,
            buckets=HTTP_BUCKETS_S,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request (``route``: the matched route's path template)."""
        self.http_requests.inc(method=method, route=route, status=str(status))
        self.http_request_seconds.observe(seconds, method=method, route=route)

    def render(self, gauges: Sequence[list[str]] = ()) -> str:
        """The whole exposition: ``gauges`` (read by the caller) then the recorded metrics."""
        lines = [line for block in gauges for line in block]
        recorded = _text(_WithoutCreated(self.registry))
        return "".join(f"{line}\n" for line in lines) + recorded
