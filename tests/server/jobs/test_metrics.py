"""The Prometheus text exposition, written by hand."""

from __future__ import annotations

import pytest

from radserve.server import Counter, Histogram, ServerMetrics, gauge_lines


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    histogram = Histogram("h_seconds", "Help.", buckets=(0.5, 1.0))
    histogram.observe(0.5, stage="fetch")
    histogram.observe(0.75, stage="fetch")
    histogram.observe(3.0, stage="fetch")
    assert histogram.render() == [
        "# HELP h_seconds Help.",
        "# TYPE h_seconds histogram",
        'h_seconds_bucket{stage="fetch",le="0.5"} 1',
        'h_seconds_bucket{stage="fetch",le="1"} 2',
        'h_seconds_bucket{stage="fetch",le="+Inf"} 3',
        'h_seconds_sum{stage="fetch"} 4.25',
        'h_seconds_count{stage="fetch"} 3',
    ]
    assert histogram.count(stage="fetch") == 3 and histogram.total(stage="fetch") == 4.25


def test_counter_and_gauge_escape_label_values() -> None:
    counter = Counter("c_total", "Help.")
    counter.inc(destination='a"b\\c')
    counter.inc(2, destination='a"b\\c')
    assert counter.render()[-1] == 'c_total{destination="a\\"b\\\\c"} 3'
    with pytest.raises(ValueError):
        counter.inc(-1)
    assert gauge_lines("g", "Help.", [({}, 7), ({"state": "done"}, 1.5)])[2:] == [
        "g 7",
        'g{state="done"} 1.5',
    ]


def test_server_metrics_render_every_family() -> None:
    metrics = ServerMetrics()
    metrics.export_failures.inc(destination="pacs")
    text = metrics.render([gauge_lines("radserve_queue_depth", "Queued.", [({}, 2)])])
    assert text.endswith("\n")
    assert "radserve_queue_depth 2\n" in text
    assert 'radserve_export_failures_total{destination="pacs"} 1\n' in text
    for family in ("radserve_job_stage_seconds", "radserve_model_inference_seconds"):
        assert f"# TYPE {family} histogram" in text
