"""Where the bucket groups of an export run: the executor seam.

An :class:`Executor` maps a function over tasks and yields the results **in task order**,
stopping at the first error (it is raised; tasks not yet started are not started). The export
is ``plan_run → executor.map(run_group, tasks) → seal``: the tasks and results are plain,
picklable data, so an executor may run them in threads (:class:`LocalExecutor`, the default)
or on other machines.

>>> list(LocalExecutor().map(lambda x: x * x, [1, 2, 3]))
[1, 4, 9]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from .errors import InputError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``tasks``; results in task order; the first error stops the run."""

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]: ...


class LocalExecutor:
    """Threads of this process; at most ``workers`` tasks (bucket groups) in memory at once.

    With the default two workers, one group is fetched while the other is transformed and
    written, so the source and the disk stay busy; results still come back in task order, so
    nothing written depends on which thread finishes first.

    >>> def boom(x):
    ...     if x == 2:
    ...         raise ValueError("task 2")
    ...     return x
    >>> out = []
    >>> try:
    ...     for r in LocalExecutor().map(boom, range(100)):
    ...         out.append(r)
    ... except ValueError as e:
    ...     print(e, out[:1], len(out) <= 2)
    task 2 [0] True
    """

    def __init__(self, *, workers: int = 2) -> None:
        self.workers = max(1, int(workers))

    def close(self) -> None:
        """Nothing to release: the threads end with each ``map``."""

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        todo = iter(tasks)
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="lakeslice-group")
        running: deque[Future[R]] = deque()
        finished = False
        try:
            for task in _take(todo, self.workers):
                running.append(pool.submit(fn, task))
            while running:
                _raise_any_error(running)
                head = running.popleft()
                result = head.result()
                for task in _take(todo, 1):
                    running.append(pool.submit(fn, task))
                yield result
            finished = True
        finally:
            # After an error or a stop signal, do not wait for a task that may hang on a silent
            # server: the caller closes the source, which ends it.
            pool.shutdown(wait=finished, cancel_futures=True)


def _take(it: Iterator[T], n: int) -> list[T]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def _raise_any_error(running: deque[Future]) -> None:
    """Wait until the head is done, raising at once if any running task fails first."""
    while True:
        for f in running:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        if running[0].done():
            return
        wait([f for f in running if not f.done()], return_when=FIRST_COMPLETED)


def open_executor(executor: Any = None) -> Any:
    """The executor ``--executor``/``executor=`` names: ``local`` (or None), ``dask://HOST:PORT``,
    a ``dask.distributed.Client``, or any object with ``map`` (returned as it is).

    An executor made here from a URL is the caller's to ``close()``.

    >>> type(open_executor("local")).__name__
    'LocalExecutor'
    """
    if executor is None or executor == "local":
        return LocalExecutor()
    if isinstance(executor, str):
        if executor.startswith(("dask://", "tcp://", "tls://")):
            from .dask_executor import DaskExecutor

            return DaskExecutor.from_url(executor)
        raise InputError(f"--executor {executor!r}: expected local or dask://HOST:PORT")
    if type(executor).__module__.startswith("distributed") and hasattr(executor, "submit"):
        from .dask_executor import DaskExecutor

        return DaskExecutor(executor)
    if callable(getattr(executor, "map", None)):
        return executor
    raise InputError(f"executor {type(executor).__name__}: expected local, dask://HOST:PORT or a Dask Client")


__all__ = ["Executor", "LocalExecutor", "open_executor"]
