"""The radiomics worker processes: creation, size, time limits and shutdown.

:class:`WorkerPool` runs extraction tasks in spawned worker processes (safe next to threads),
one ITK thread each so that ``workers`` processes use ``workers`` cores. It is built on
``pebble.ProcessPool``, whose tasks can be given a time limit and whose running tasks can be
cancelled: the worker running a cancelled or timed-out task is terminated and replaced.

:func:`bounded_map` runs a function over many items with few in flight, and stops at a
deadline. :class:`RadiomicsPool` is the server's pool: started on first use, shared by every
model, replaced when a worker dies or a job's tasks run out of time.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from types import TracebackType
from typing import Any, TypeVar

import pebble
import SimpleITK as sitk

from radserve.radiomics.errors import RadiomicsStepError, WorkerStoppedError

T = TypeVar("T")


class DeadlinePassedError(Exception):
    """A :func:`bounded_map` deadline passed (callers turn it into their own error)."""


class WorkerPool:
    """Worker processes for extraction.

    Args:
        workers: Processes (at least 1).

    Use it as a context manager, or call :meth:`close` (lets running tasks finish) or
    :meth:`stop` (terminates them) when done.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a radiomics pool needs at least one worker")
        self._workers = workers
        self._pool = pebble.ProcessPool(
            max_workers=workers,
            initializer=_init_worker,
            context=multiprocessing.get_context("spawn"),
        )
        self._futures: set[Future[Any]] = set()
        self._futures_lock = threading.Lock()

    @property
    def max_workers(self) -> int:
        """The number of worker processes."""
        return self._workers

    def submit(
        self, function: Callable[..., T], *args: Any, timeout_s: float | None = None
    ) -> Future[T]:
        """Run ``function(*args)`` in a worker.

        Args:
            function: A module-level function (it is pickled).
            args: Its arguments (pickled).
            timeout_s: Longest run; past it the worker is terminated and the future's
                ``result()`` raises :class:`TimeoutError`.

        Returns:
            The result's future; cancelling it while it runs terminates its worker.
        """
        future: Future[T] = self._pool.schedule(function, args=args, timeout=timeout_s)
        with self._futures_lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def close(self, *, cancel_queued: bool = False) -> None:
        """Take no more tasks, let the running ones finish, and wait for them.

        Args:
            cancel_queued: Cancel the tasks that have not started (else they run too).
        """
        if cancel_queued:
            with self._futures_lock:
                queued = [f for f in self._futures if not f.running()]
            for future in queued:
                future.cancel()
        self._pool.close()
        self._pool.join()

    def stop(self) -> None:
        """Shut down at once, terminating the running tasks (the pool cannot be used
        afterwards)."""
        self._pool.stop()
        self._pool.join()

    def _forget(self, future: Future[Any]) -> None:
        with self._futures_lock:
            self._futures.discard(future)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def process_pool(workers: int) -> WorkerPool:
    """A :class:`WorkerPool` of ``workers`` processes for extraction."""
    return WorkerPool(workers)


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def bounded_map(
    pool: WorkerPool,
    function: Callable[[Any], Any],
    items: Iterator[Any],
    *,
    limit: int,
    deadline: float | None = None,
) -> Iterator[Any]:
    """Run ``function`` over ``items`` on ``pool`` with at most ``limit`` items in flight
    (so memory stays bounded), yielding results as they complete.

    Raises:
        DeadlinePassedError: ``deadline`` (:func:`time.monotonic`) passed; the items in
            flight are cancelled (the running ones are terminated).
        WorkerStoppedError: A worker process died while running an item.
    """
    pending: set[Future[Any]] = set()

    def timeout_s() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def completed() -> set[Future[Any]]:
        nonlocal pending
        done, pending = wait(pending, timeout=timeout_s(), return_when=FIRST_COMPLETED)
        if not done:
            raise DeadlinePassedError
        return done

    try:
        for item in items:
            pending.add(pool.submit(function, item, timeout_s=timeout_s()))
            if len(pending) >= limit:
                for future in completed():
                    yield _result(future, timed=deadline is not None)
        while pending:
            for future in completed():
                yield _result(future, timed=deadline is not None)
    except DeadlinePassedError:
        for future in pending:
            future.cancel()
        raise
    finally:
        # Stopped early (an error, or the caller stopped iterating): drop what has not started.
        for future in pending:
            if not future.running():
                future.cancel()


def _result(future: Future[Any], *, timed: bool) -> Any:
    try:
        return future.result()
    except pebble.ProcessExpired as exc:
        raise WorkerStoppedError(
            f"a radiomics worker process stopped (exit code {exc.exitcode})"
        ) from exc
    except TimeoutError as exc:
        if timed:  # the item's time limit: the deadline
            raise DeadlinePassedError from exc
        raise


def _init_worker() -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with_parent, args=(parent.sentinel,), name="parent-watch", daemon=True
        ).start()


def _exit_with_parent(sentinel: int) -> None:
    """Stop this worker when the process that started it is gone.

    A killed server (SIGKILL, out of memory) cannot shut its pool down, and a worker that
    waits for its next task would otherwise live on, holding memory, until the machine
    restarts. The sentinel becomes ready when the parent process ends.
    """
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


class RadiomicsPool:
    """Worker processes for extraction, started on first use and shared by every model.

    Args:
        workers: Processes (at least 1).
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a radiomics pool needs at least one worker")
        self.workers = workers
        self._lock = threading.Lock()
        self._pool: WorkerPool | None = None
        self._closed = False

    def executor(self) -> WorkerPool:
        """The pool (started now if it is not yet).

        Raises:
            RadiomicsStepError: The pool was shut down.
        """
        with self._lock:
            if self._closed:
                raise RadiomicsStepError("the radiomics pool is shut down")
            if self._pool is None:
                self._pool = WorkerPool(self.workers)
            return self._pool

    def discard(self, broken: WorkerPool) -> None:
        """Drop a pool whose worker died, or whose tasks ran out of time (they are
        terminated); the next :meth:`executor` starts a new one."""
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.stop()

    def shutdown(self) -> None:
        """Stop the worker processes (at server stop); waits for running extractions."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(cancel_queued=True)
