"""Where simulation tasks run: in this process (the default) or on a Dask distributed cluster.

A *task* is a pure function call ``fn(*shared, *args)``: ``shared`` are the objects every task of
a run needs (pool, information index, CAT rules), sent to each worker once per run
(``Client.scatter(..., broadcast=True)``), ``args`` the task's own small inputs (its simulees'
true abilities and generators). Tasks return counts that add; the caller folds them in a fixed
order, so where a task ran never changes a result.

Without a client nothing here imports Dask: the in-process executor is a plain loop.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Task", "connect", "executor_for"]


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


def executor_for(client) -> InProcess | DaskExecutor:
    """The in-process executor for ``client=None``, else one on the given ``distributed.Client``."""
    if client is None:
        return InProcess()
    if not hasattr(client, "submit") or not hasattr(client, "scatter"):
        raise TypeError(f"client must be a dask.distributed.Client or None, got {type(client).__name__}")
    return DaskExecutor(client)


@contextlib.contextmanager
def connect(scheduler: str | None, timeout: float = 10.0):
    """A ``distributed.Client`` for ``scheduler`` (``None`` yields ``None``: run in-process).

    ``scheduler`` is a scheduler address (``tcp://host:8786``) or ``local:N`` for a
    ``LocalCluster`` of ``N`` single-threaded worker processes on this machine; ``timeout``
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
