"""One stream of batches for many requests, read ahead by a thread and routed to each request.

A ClickHouse server answers one query for many bucket groups faster than one query per group:
a group's mints are spread over the whole table (they are hashed), so each group's query reads
the granules around its mints, and neighbouring groups read many of the same granules again.
:class:`RoutedStream` runs the one query in a background thread and hands each group's
batches to that group's :meth:`~RoutedStream.take` as they arrive.

The producer yields ``(request index, batch)`` in non-decreasing request order (the query
sorts by group), so a request is complete once a later one starts. At most ``budget_rows``
rows wait unread; the producer then waits for the readers, which the export's in-order group
threads always are (and it stops waiting after ``stall_s``, so an executor running groups out
of order costs memory, never a deadlock).

>>> import pyarrow as pa, polars as pl
>>> keys = [pl.DataFrame({"k": [i]}) for i in range(3)]
>>> batch = pa.record_batch({"x": [1, 2]})
>>> routed = RoutedStream(keys, lambda: iter([(0, batch), (2, batch), (2, batch)]))
>>> [sum(b.num_rows for b in routed.take(k)) for k in keys]
[2, 0, 4]
>>> routed.take(keys[0]) is None  # each request is handed out once
True
>>> routed.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

import polars as pl
import pyarrow as pa

from ..errors import RunError, one_line

log = logging.getLogger("lakeslice")

__all__ = ["RoutedStream", "StreamBroken"]


class RoutedStream:
    """Batches of ``produce()`` routed to the requests (identified by their ranges ``keys``)."""

    def __init__(
        self,
        keys: list[pl.DataFrame],
        produce: Callable[[], Iterator[tuple[int, pa.RecordBatch]]],
        *,
        on_close: Callable[[], None] | None = None,
        budget_rows: int = 400_000,
        stall_s: float = 30.0,
    ) -> None:
        self._keys: list[pl.DataFrame | None] = list(keys)
        self._queues: list[deque[pa.RecordBatch]] = [deque() for _ in keys]
        self._complete = 0  # requests [0, _complete) have all their batches queued
        self._error: BaseException | None = None
        self._closed = False
        self._waiting = 0
        self._budget, self._stall_s = budget_rows, stall_s
        self._cond = threading.Condition()
        self._on_close = on_close
        self._thread = threading.Thread(
            target=self._run, args=(produce,), name="lakeslice-prefetch", daemon=True
        )
        self._thread.start()

    # -- the producer thread ----------------------------------------------------------------

    def _run(self, produce: Callable[[], Iterator[tuple[int, pa.RecordBatch]]]) -> None:
        try:
            for index, batch in produce():
                if not self._put(index, batch):
                    return
            self._finish(len(self._queues))
        except BaseException as exc:  # handed to the readers: they fall back or report it
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        finally:
            if self._on_close is not None:
                self._on_close()

    def _put(self, index: int, batch: pa.RecordBatch) -> bool:
        """Queue ``batch`` for request ``index``; False once closed."""
        with self._cond:
            deadline = time.monotonic() + self._stall_s
            while self._waiting >= self._budget and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.debug("prefetch: readers out of order; buffering %d rows", self._waiting)
                    break
                self._cond.wait(min(left, 0.5))
            if self._closed:
                return False
            self._complete = max(self._complete, index)
            self._queues[index].append(batch)
            self._waiting += batch.num_rows
            self._cond.notify_all()
            return True

    def _finish(self, complete: int) -> None:
        with self._cond:
            self._complete = complete
            self._cond.notify_all()

    # -- the readers ------------------------------------------------------------------------

    def take(self, key: pl.DataFrame) -> Iterator[pa.RecordBatch] | None:
        """The batches of the request whose ranges are ``key``, or None: not one of this
        stream's, already taken, or the stream failed before the request was complete (the
        caller then asks for it on its own)."""
        with self._cond:
            index = self._index(key)
            if index is None or (self._error is not None and index >= self._complete):
                return None
            self._keys[index] = None
        return self._read(index)

    def _index(self, key: pl.DataFrame) -> int | None:
        for i, k in enumerate(self._keys):
            if k is not None and (k is key or (k.height == key.height and k.equals(key))):
                return i
        return None

    def _read(self, index: int) -> Iterator[pa.RecordBatch]:
        queue = self._queues[index]
        while True:
            with self._cond:
                while not queue and index >= self._complete and self._error is None and not self._closed:
                    self._cond.wait()
                if queue:
                    batch = queue.popleft()
                    self._waiting -= batch.num_rows
                    self._cond.notify_all()
                elif index < self._complete:
                    return
                else:
                    raise _failed(self._error)
            yield batch

    def close(self) -> None:
        """Stop the producer (``on_close`` ends its query) and drop what it read."""
        with self._cond:
            self._closed = True
            for queue in self._queues:
                queue.clear()
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close()
        self._thread.join(timeout=10)


class StreamBroken(RunError):
    """The shared stream broke while a request read it: retryable, and the retry of that
    request asks the source on its own (a request is handed out once)."""

    retryable = True


def _failed(error: BaseException | None) -> StreamBroken:
    return StreamBroken(f"shared query stopped: {one_line(error) if error else 'closed'}")
