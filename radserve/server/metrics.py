"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

Counters and histograms live in this process (since its start); the job and export gauges
are read from the job queue when scraped, so they survive restarts. Label values are model
names, versions, providers, destination names and stage names only: never UIDs or other
data about patients.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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

Labels = tuple[tuple[str, str], ...]


def _labels(values: Mapping[str, str]) -> Labels:
    return tuple(sorted(values.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_labels(labels: Iterable[tuple[str, str]]) -> str:
    body = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
    return "{" + body + "}" if body else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help_text = help_text
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (not negative) to the count of ``labels``."""
        if amount < 0:
            raise ValueError("a counter only increases")
        key = _labels(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        """The current count of ``labels``."""
        with self._lock:
            return self._values.get(_labels(labels), 0.0)

    def render(self) -> list[str]:
        """Exposition lines."""
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} counter"]
        with self._lock:
            for key, value in sorted(self._values.items()):
                lines.append(f"{self.name}{_format_labels(key)} {_number(value)}")
        return lines


@dataclass
class _Series:
    buckets: list[int]
    total: float = 0.0
    count: int = 0


class Histogram:
    """Observations counted into cumulative buckets per label set."""

    def __init__(
        self, name: str, help_text: str, *, buckets: Sequence[float] = STAGE_BUCKETS_S
    ) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("histogram buckets must be increasing")
        self.name = name
        self.help_text = help_text
        self._bounds = tuple(float(b) for b in buckets)
        self._series: dict[Labels, _Series] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        """Count one observation of ``labels``."""
        key = _labels(labels)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series([0] * len(self._bounds))
            index = bisect.bisect_left(self._bounds, value)
            if index < len(self._bounds):
                series.buckets[index] += 1
            series.total += value
            series.count += 1

    def count(self, **labels: str) -> int:
        """Observations of ``labels`` so far."""
        with self._lock:
            series = self._series.get(_labels(labels))
            return series.count if series else 0

    def total(self, **labels: str) -> float:
        """Sum of the observations of ``labels`` so far."""
        with self._lock:
            series = self._series.get(_labels(labels))
            return series.total if series else 0.0

    def render(self) -> list[str]:
        """Exposition lines (``_bucket`` cumulative, ``_sum``, ``_count``)."""
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for key, series in sorted(self._series.items()):
                running = 0
                for bound, in_bucket in zip(self._bounds, series.buckets, strict=True):
                    running += in_bucket
                    bucket = _format_labels((*key, ("le", _number(bound))))
                    lines.append(f"{self.name}_bucket{bucket} {running}")
                inf = _format_labels((*key, ("le", "+Inf")))
                lines.append(f"{self.name}_bucket{inf} {series.count}")
                lines.append(f"{self.name}_sum{_format_labels(key)} {_number(series.total)}")
                lines.append(f"{self.name}_count{_format_labels(key)} {series.count}")
        return lines


def gauge_lines(
    name: str, help_text: str, values: Iterable[tuple[Mapping[str, str], float]]
) -> list[str]:
    """Exposition lines of a gauge whose values are read now."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in values:
        lines.append(f"{name}{_format_labels(_labels(labels))} {_number(value)}")
    return lines


class ServerMetrics:
    """The metrics the server's components record."""

    def __init__(self) -> None:
        self.stage_seconds = Histogram(
            "radserve_job_stage_seconds", "Seconds jobs spent in each stage."
        )
        self.inference_seconds = Histogram(
            "radserve_model_inference_seconds",
            "Seconds of one prediction (preprocessing, sliding window, postprocessing).",
        )
        self.jobs_finished = Counter(
            "radserve_jobs_finished_total", "Jobs that reached done or failed since start."
        )
        self.radiomics_segments_without_features = Counter(
            "radserve_radiomics_segments_without_features_total",
            "Segments that got no radiomic features: rejected by PyRadiomics (too small) or "
            "stopped at radiomics_timeout_s.",
        )
        self.export_attempts = Counter(
            "radserve_export_attempts_total", "STOW-RS export attempts per destination."
        )
        self.export_failures = Counter(
            "radserve_export_failures_total", "Failed STOW-RS export attempts per destination."
        )

    def render(self, gauges: Sequence[list[str]] = ()) -> str:
        """The whole exposition: ``gauges`` (read by the caller) then the recorded metrics."""
        lines: list[str] = []
        for block in gauges:
            lines.extend(block)
        for metric in (
            self.stage_seconds,
            self.inference_seconds,
            self.jobs_finished,
            self.radiomics_segments_without_features,
            self.export_attempts,
            self.export_failures,
        ):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
