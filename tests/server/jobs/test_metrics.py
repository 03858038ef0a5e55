"""The Prometheus text exposition, written by prometheus_client."""

from __future__ import annotations

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from radserve.server import Counter, Histogram, ServerMetrics, gauge_lines


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    histogram = Histogram(
        "h_seconds",
        "Help.",
        label_names=("stage",),
        registry=CollectorRegistry(),
        buckets=(0.5, 1.0),
    )
    assert histogram.count(stage="fetch") == 0 and histogram.total(stage="fetch") == 0.0
    histogram.observe(0.5, stage="fetch")
    histogram.observe(0.75, stage="fetch")
    histogram.observe(3.0, stage="fetch")
    assert histogram.render() == [
        "# HELP h_seconds Help.",
        "# TYPE h_seconds histogram",
        'h_seconds_bucket{le="0.5",stage="fetch"} 1.0',
        'h_seconds_bucket{le="1.0",stage="fetch"} 2.0',
        'h_seconds_bucket{le="+Inf",stage="fetch"} 3.0',
        'h_seconds_count{stage="fetch"} 3.0',
        'h_seconds_sum{stage="fetch"} 4.25',
    ]
    assert histogram.count(stage="fetch") == 3 and histogram.total(stage="fetch") == 4.25
    assert histogram.count(stage="other") == 0


def test_histogram_buckets_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Histogram("h_seconds", "Help.", registry=CollectorRegistry(), buckets=(1.0, 0.5))


def test_counter_and_gauge_escape_label_values() -> None:
    counter = Counter(
        "c_total", "Help.", label_names=("destination",), registry=CollectorRegistry()
    )
    counter.inc(destination='a"b\\c')
    counter.inc(2, destination='a"b\\c')
    assert counter.render()[-1] == 'c_total{destination="a\\"b\\\\c"} 3.0'
    assert counter.value(destination='a"b\\c') == 3 and counter.value(destination="x") == 0
    with pytest.raises(ValueError):
        counter.inc(-1, destination="x")
    assert gauge_lines("g", "Help.", [({"state": "queued"}, 7), ({"state": "done"}, 1.5)])[2:] == [
        'g{state="queued"} 7.0',
        'g{state="done"} 1.5',
    ]
    assert gauge_lines("g", "Help.", [({}, 7)])[2:] == ["g 7.0"]


def test_server_metrics_render_every_family() -> None:
    metrics = ServerMetrics()
    metrics.export_failures.inc(destination="pacs")
    text = metrics.render([gauge_lines("radserve_queue_depth", "Queued.", [({}, 2)])])
    assert text.endswith("\n")
    assert "radserve_queue_depth 2.0\n" in text
    assert 'radserve_export_failures_total{destination="pacs"} 1.0\n' in text
    for family in ("radserve_job_stage_seconds", "radserve_model_inference_seconds"):
        assert f"# TYPE {family} histogram" in text
    assert "_created" not in text  # this exposition never carried creation timestamps


def test_every_server_metrics_has_its_own_registry() -> None:
    first, second = ServerMetrics(), ServerMetrics()
    first.stage_seconds.observe(2.0, stage="inference")
    first.jobs_finished.inc(state="done")
    assert second.stage_seconds.count(stage="inference") == 0
    assert (
        first.registry.get_sample_value("radserve_job_stage_seconds_count", {"stage": "inference"})
        == 1
    )
    assert (
        prometheus_client.REGISTRY.get_sample_value(
            "radserve_jobs_finished_total", {"state": "done"}
        )
        is None
    )


def test_exposition_parses_back() -> None:
    metrics = ServerMetrics()
    metrics.inference_seconds.observe(3.25, model="bone", version="1.0.0", provider="CPU")
    metrics.radiomics_segments_without_features.inc(2, model="bone", reason="time_limit")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
    assert families["radserve_model_inference_seconds"].type == "histogram"
    [counted] = families["radserve_radiomics_segments_without_features"].samples
    assert counted.labels == {"model": "bone", "reason": "time_limit"} and counted.value == 2
