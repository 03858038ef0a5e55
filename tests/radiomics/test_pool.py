"""The worker pool: its size, a task's time limit, a dead worker, and shutdown."""

from __future__ import annotations

import os
import time

import pebble
import pytest

from radserve.radiomics import WorkerPool, process_pool
from tests.processes import process_alive


def test_a_task_past_its_time_limit_is_terminated_and_its_worker_replaced() -> None:
    pool = process_pool(1)
    try:
        assert pool.max_workers == 1
        first = pool.submit(os.getpid).result(timeout=120)
        late = pool.submit(time.sleep, 60, timeout_s=0.5)
        with pytest.raises(TimeoutError):
            late.result(timeout=120)
        replacement = pool.submit(os.getpid).result(timeout=120)
        assert replacement != first
        deadline = time.monotonic() + 60
        while process_alive(first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(first), "the timed-out task still runs"
    finally:
        pool.stop()


def test_a_dead_worker_fails_its_task_only() -> None:
    with WorkerPool(1) as pool:
        with pytest.raises(pebble.ProcessExpired):
            pool.submit(os._exit, 1).result(timeout=120)
        assert pool.submit(abs, -3).result(timeout=120) == 3


def test_close_cancels_the_queued_tasks_when_asked_and_lets_the_running_one_finish() -> None:
    pool = WorkerPool(1)
    pool.submit(abs, 0).result(timeout=120)  # the worker is up
    running = pool.submit(time.sleep, 1)
    while not running.running():
        time.sleep(0.01)
    queued = pool.submit(abs, -1)
    pool.close(cancel_queued=True)
    assert running.result(timeout=0) is None
    assert queued.cancelled()


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        WorkerPool(0)
