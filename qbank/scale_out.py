"""Where simulation tasks run: in this process (the default), on forked worker processes of this
machine (:class:`LocalProcesses`, no Dask), or on a Dask distributed cluster.

A *task* is a pure function call ``fn(*shared, *args)``: ``shared`` are the objects every task of
a run needs (pool, information index, CAT rules), sent to each worker once per run
(``Client.scatter(..., broadcast=True)``), ``args`` the task's own small inputs (its simulees'
true abilities and generators). Tasks return counts that add; the caller folds them in a fixed
order, so where a task ran never changes a result.

Without a client nothing here imports Dask: the in-process executor is a plain loop.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["LocalProcesses", "Task", "connect", "executor_for"]


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*shared, *args)``; ``shared`` objects are sent once per run."""

    fn: Callable
    shared: tuple
    args: tuple


class InProcess:
    """Run tasks one after another in this process (today's behaviour, no Dask)."""

    slots = 1

    def run(self, tasks: list[Task], progress: str | None = None) -> Iterator[tuple[int, object, float]]:
        """Yield ``(task index, result, arrival time)`` in task order."""
        bar = _bar(progress, len(tasks))
        for i, task in enumerate(tasks):
            result = task.fn(*task.shared, *task.args)
            if bar is not None:
                bar.update()
            yield i, result, time.perf_counter()
        if bar is not None:
            bar.close()


# The tasks of the run in progress on LocalProcesses: set before its workers fork, so they inherit
# the shared objects (pool, information index, rules) instead of receiving them pickled.
_FORKED_TASKS: list | None = None


def _run_forked(i: int):
    task = _FORKED_TASKS[i]
    return i, task.fn(*task.shared, *task.args)


class LocalProcesses:
    """Run tasks on ``n_workers`` worker processes of this machine, forked per run (POSIX).

    The workers inherit the run's tasks when they fork (nothing large is pickled on the way
    out); results come back in completion order and the caller folds them in task order, so a
    run gives the same result, bit for bit, as in-process. For a few cores of one machine
    without Dask's start-up; pass it wherever a ``client`` is taken.
    """

    def __init__(self, n_workers: int):
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
        if "fork" not in multiprocessing.get_all_start_methods():
            raise ValueError("LocalProcesses needs the 'fork' start method (Linux, macOS)")
        self.slots = n_workers

    def __repr__(self) -> str:
        return f"LocalProcesses({self.slots})"

    def run(self, tasks: list[Task], progress: str | None = None) -> Iterator[tuple[int, object, float]]:
        """Yield ``(task index, result, arrival time)`` in completion order."""
        global _FORKED_TASKS
        if _FORKED_TASKS is not None:
            raise RuntimeError("LocalProcesses runs one simulation at a time per process")
        bar = _bar(progress, len(tasks))
        _FORKED_TASKS = tasks
        try:
            with multiprocessing.get_context("fork").Pool(min(self.slots, max(len(tasks), 1))) as workers:
                for i, result in workers.imap_unordered(_run_forked, range(len(tasks))):
                    if bar is not None:
                        bar.update()
                    yield i, result, time.perf_counter()
        finally:
            _FORKED_TASKS = None
            if bar is not None:
                bar.close()


class DaskExecutor:
    """Run tasks on a ``distributed.Client``: shared objects scattered once, a bounded window of
    tasks in flight (bounded scheduler and client memory), results as they complete.

    A worker that dies loses only tasks; the scheduler reruns them elsewhere, and since every
    task is a pure function of its inputs the rerun returns the same counts.
    """

    def __init__(self, client):
        from qbank._dask_plugin import ReuseHeapMemory

        self.client = client
        client.register_plugin(ReuseHeapMemory(), name=ReuseHeapMemory.name)

    @property
    def slots(self) -> int:
        """Worker threads in the cluster (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def run(self, tasks: list[Task], progress: str | None = None) -> Iterator[tuple[int, object, float]]:
        """Yield ``(task index, result, arrival time)`` in completion order."""
        from distributed import as_completed

        client = self.client
        distinct = {}
        for task in tasks:
            for obj in task.shared:
                distinct.setdefault(id(obj), obj)
        ids = list(distinct)
        # hash=False: a fresh key per run, released at its end (no stale copies between runs).
        futures = client.scatter([distinct[i] for i in ids], broadcast=True, hash=False) if ids else []
        shared = dict(zip(ids, futures))
        run_id = uuid.uuid4().hex[:8]
        window = max(4 * self.slots, 8)
        pending = iter(enumerate(tasks))
        in_flight = {}  # key -> (task index, future)
        completed = as_completed()

        def submit_next() -> None:
            for i, task in pending:
                future = client.submit(
                    task.fn,
                    *(shared[id(obj)] for obj in task.shared),
                    *task.args,
                    key=f"{task.fn.__name__.strip('_')}-{run_id}-{i}",
                    pure=False,
                )
                in_flight[future.key] = (i, future)
                completed.add(future)
                return

        bar = _bar(progress, len(tasks))
        try:
            for _ in range(window):
                submit_next()
            for future in completed:
                result = future.result()
                i, _ = in_flight.pop(future.key)
                future.release()
                submit_next()
                if bar is not None:
                    bar.update()
                yield i, result, time.perf_counter()
        finally:
            if bar is not None:
                bar.close()
            if in_flight:  # an error or an abandoned generator: stop what is still queued
                client.cancel([future for _, future in in_flight.values()])
            for future in futures:
                future.release()


def executor_for(client) -> InProcess | LocalProcesses | DaskExecutor:
    """The in-process executor for ``client=None``, a :class:`LocalProcesses` as given, else one on
    the given ``distributed.Client``."""
    if client is None:
        return InProcess()
    if isinstance(client, LocalProcesses):
        return client
    if not hasattr(client, "submit") or not hasattr(client, "scatter"):
        raise TypeError(f"client must be a dask.distributed.Client or None, got {type(client).__name__}")
    return DaskExecutor(client)


@contextlib.contextmanager
def connect(scheduler: str | None, timeout: float = 10.0):
    """A ``distributed.Client`` for ``scheduler`` (``None`` yields ``None``: run in-process).

    ``scheduler`` is a scheduler address (``tcp://host:8786``), ``local:N`` for a
    ``LocalCluster`` of ``N`` single-threaded worker processes on this machine, or
    ``processes:N`` for :class:`LocalProcesses` (``N`` forked processes, no Dask); ``timeout``
    (seconds) bounds the wait for a remote scheduler.

    Raises
    ------
    ValueError
        Dask distributed is not installed, ``local:N`` is malformed, or the scheduler cannot be
        reached (the message names the address).
    """
    if scheduler is None:
        yield None
        return
    if scheduler.startswith("processes:"):
        count = scheduler.removeprefix("processes:")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"scheduler 'processes:N' needs a worker count N >= 1, got {scheduler!r}")
        yield LocalProcesses(int(count))
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError(
            f"scheduler {scheduler!r} needs Dask distributed: pip install 'qbank[dist]'"
        ) from None
    if scheduler.startswith("local:"):
        count = scheduler.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"scheduler 'local:N' needs a worker count N >= 1, got {scheduler!r}")
        with (
            LocalCluster(
                n_workers=int(count), threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
    with client:
        yield client


def _bar(progress: str | None, total: int):
    if progress is None:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=progress, unit="task")
