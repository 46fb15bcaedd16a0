"""A few shared queries for many requests, read ahead by a thread and spilled by request.

A ClickHouse server answers one query for many bucket groups faster than one query per group:
a group's mints are hashed, so they are spread over the whole table, and each group's query
reads the granules around its mints, many of them again for the next group (measured in
benchmarks/README.md). :class:`RoutedStream` runs the shared queries (one per *chunk* of
consecutive requests) in a background thread on its own connection, splits what arrives by
request into Arrow IPC files in a temporary directory, and hands each request its file once
its chunk's query has ended. The server streams rows as it reads them (no sort), and memory
holds one batch of ``CHUNK_ROWS`` rows at a time.

At most about ``budget_rows`` spilled rows wait unread before the next chunk's query starts;
the export's in-order group threads always read them (an executor running groups out of order
costs disk after ``stall_s``, never a deadlock).

>>> import pyarrow as pa, polars as pl
>>> keys = [pl.DataFrame({"k": [i]}) for i in range(3)]
>>> rows = lambda i, n: pa.record_batch({"x": [i] * n})
>>> def stream(chunk):  # request 1 gets no row
...     return iter([(i, rows(i, i + 1)) for i in chunk if i != 1])
>>> routed = RoutedStream(keys, [[0, 1], [2]], stream)
>>> [[b.to_pydict() for b in routed.take(k)] for k in keys]
[[{'x': [0]}], [], [{'x': [2, 2, 2]}]]
>>> routed.take(keys[0]) is None  # each request is handed out once
True
>>> routed.close()
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa

from ..errors import RunError, one_line
from .base import take_prepared

log = logging.getLogger("lakeslice")

__all__ = ["RoutedStream", "StreamBroken"]

Stream = Callable[[list[int]], Iterator[tuple[int, pa.RecordBatch]]]


class StreamBroken(RunError):
    """The shared query broke before a request it holds was complete: retryable, and the
    retry asks the source for that request on its own (a request is handed out once)."""

    retryable = True


class RoutedStream:
    """The ``(request index, batch)`` pairs of ``stream(chunk)`` for each chunk in turn, spilled
    by request; the requests are identified by their ranges ``keys``."""

    def __init__(
        self,
        keys: list[pl.DataFrame],
        chunks: list[list[int]],
        stream: Stream,
        *,
        on_close: Callable[[], None] | None = None,
        budget_rows: int = 4_000_000,
        stall_s: float = 30.0,
    ) -> None:
        self._keys: list[pl.DataFrame | None] = list(keys)
        self._rows = [0] * len(keys)  # spilled, not yet read
        self._complete = [False] * len(keys)
        self._error: BaseException | None = None
        self._closed = False
        self._budget, self._stall_s = budget_rows, stall_s
        self._cond = threading.Condition()
        self._on_close = on_close
        self._dir = Path(tempfile.mkdtemp(prefix="lakeslice-prefetch-"))
        self._thread = threading.Thread(
            target=self._run, args=(chunks, stream), name="lakeslice-prefetch", daemon=True
        )
        self._thread.start()

    # -- the producer thread ----------------------------------------------------------------

    def _run(self, chunks: list[list[int]], stream: Stream) -> None:
        try:
            for chunk in chunks:
                if not self._wait_for_readers():
                    return
                self._spill(chunk, stream)
        except BaseException as exc:  # handed to the readers: they ask on their own
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        finally:
            if self._on_close is not None:
                self._on_close()

    def _wait_for_readers(self) -> bool:
        """Wait while the spilled rows not yet read exceed the budget; False once closed."""
        with self._cond:
            deadline = time.monotonic() + self._stall_s
            while sum(self._rows) > self._budget and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.debug("prefetch: %d rows unread; the next query starts anyway", sum(self._rows))
                    break
                self._cond.wait(min(left, 0.5))
            return not self._closed

    def _spill(self, chunk: list[int], stream: Stream) -> None:
        writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        rows = dict.fromkeys(chunk, 0)
        try:
            for index, batch in stream(chunk):
                if self._closed:
                    return
                if index not in writers:
                    writers[index] = pa.ipc.new_stream(str(self._path(index)), batch.schema)
                writers[index].write_batch(batch)
                rows[index] += batch.num_rows
        finally:
            for writer in writers.values():
                writer.close()
        with self._cond:
            for index in chunk:
                self._rows[index] += rows[index]
                self._complete[index] = True
            self._cond.notify_all()

    def _path(self, index: int) -> Path:
        return self._dir / f"{index}.arrow"

    # -- the readers ------------------------------------------------------------------------

    def take(self, key: pl.DataFrame) -> Iterator[pa.RecordBatch] | None:
        """The batches of the request whose ranges are ``key``, or None: not one of this
        stream's, already taken, or its query failed before it was complete (the caller then
        asks for it on its own)."""
        with self._cond:
            index = take_prepared(self._keys, key)
            if index is None or (self._error is not None and not self._complete[index]):
                return None
        return self._read(index)

    def _read(self, index: int) -> Iterator[pa.RecordBatch]:
        with self._cond:
            while not self._complete[index] and self._error is None and not self._closed:
                self._cond.wait()
            if not self._complete[index] or self._closed:
                raise StreamBroken(
                    f"shared query stopped: {one_line(self._error) if self._error else 'closed'}"
                )
        path = self._path(index)
        try:
            if path.exists():  # no file: the request has no row
                with pa.OSFile(str(path)) as source:
                    yield from pa.ipc.open_stream(source)
        finally:
            path.unlink(missing_ok=True)
            with self._cond:
                self._rows[index] = 0
                self._cond.notify_all()

    def close(self) -> None:
        """Stop the producer (``on_close`` ends its query) and remove the spill."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close()
        self._thread.join(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)
