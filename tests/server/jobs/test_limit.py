"""The queue limit: configured, or derived from the mean job time the workers measured."""

from __future__ import annotations

from radserve.server import QueueLimit, ServerMetrics


def _metrics(job_seconds: list[tuple[float, float]]) -> ServerMetrics:
    """Metrics after jobs of (inference s, store s)."""
    metrics = ServerMetrics()
    for inference_s, store_s in job_seconds:
        metrics.stage_seconds.observe(inference_s, stage="inference")
        metrics.stage_seconds.observe(store_s, stage="store")
    return metrics


def test_a_configured_limit_is_kept() -> None:
    limit = QueueLimit(_metrics([(60.0, 0.0)]), configured=7, workers=2, backlog_s=1800)
    assert limit.current() == 7


def test_before_any_job_the_limit_is_the_unmeasured_default() -> None:
    limit = QueueLimit(ServerMetrics(), configured=None, workers=2, backlog_s=1800)
    assert limit.mean_job_s() is None
    assert limit.current() == 100


def test_the_derived_limit_is_the_work_the_workers_do_in_the_backlog() -> None:
    # Two jobs of 9 s + 1 s: a 10 s mean; 2 workers do 360 jobs in 1800 s.
    limit = QueueLimit(
        _metrics([(8.0, 1.0), (10.0, 1.0)]), configured=None, workers=2, backlog_s=1800
    )
    assert limit.mean_job_s() == 10.0
    assert limit.current() == 360


def test_the_derived_limit_stays_between_its_bounds() -> None:
    slow = QueueLimit(_metrics([(3600.0, 0.0)]), configured=None, workers=1, backlog_s=60)
    fast = QueueLimit(_metrics([(0.001, 0.0)]), configured=None, workers=8, backlog_s=3600)
    assert slow.current() == 10
    assert fast.current() == 10_000
