"""Encode frames as Parquet parts and put them in a store.

File naming (layout.py), part splitting (here), storage (store.py) and the commit (commit.py)
are separate pieces. Parts are encoded in memory first: the bytes are hashed without a re-read
and a bucket that fits one part (the common case) is encoded exactly once.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import polars as pl

from .layout import bucket_dir, part_name
from .manifest import FileEntry
from .store import Store, join

ROW_GROUP_ROWS = 128 * 1024
#: ``--compression`` → Polars' codec name.
CODECS: dict[str, Literal["zstd", "snappy", "uncompressed"]] = {
    "zstd": "zstd",
    "snappy": "snappy",
    "none": "uncompressed",
}


def encode_parquet(frame: pl.DataFrame, *, compression: str) -> bytes:
    """Parquet bytes of ``frame``; the same frame and library versions give the same bytes."""
    buf = io.BytesIO()
    frame.rechunk().write_parquet(
        buf,
        compression=CODECS[compression],
        statistics=True,
        row_group_size=ROW_GROUP_ROWS,
    )
    return buf.getvalue()


class Target:
    """A directory of a store that files are written under: ``store`` plus a key ``prefix``."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def put(self, rel: str, data: bytes, rows: int) -> FileEntry:
        """Put ``data`` at ``prefix/rel`` and describe it as the manifest lists it."""
        self.store.put(join(self.prefix, rel), data)
        return FileEntry(rel, rows, len(data), hashlib.sha256(data).hexdigest())


class FileSink:
    """Runs file-writing jobs (encode, put, hash) in worker threads.

    Polars encodes and compresses outside the GIL, so buckets encode in parallel. Each job's
    bytes depend only on its frame; results come back in submission order, so the output
    never depends on which job finishes first. At most ``2 × workers`` jobs wait; the first
    failed job stops the submission of more (:meth:`submit` raises its error).
    """

    def __init__(self, target: Target, *, workers: int = 2) -> None:
        self.target = target
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lakeslice-write")
        self._slots = threading.BoundedSemaphore(2 * workers)
        self._futures: list[Future] = []

    def submit(self, fn: Callable[..., list[FileEntry]], *args: Any, **kwargs: Any) -> None:
        self._raise_first_error()
        self._slots.acquire()
        future = self._pool.submit(fn, self.target, *args, **kwargs)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def entries(self) -> list[FileEntry]:
        """Every job's entries, in submission order (waits for them)."""
        return [e for f in self._futures for e in f.result()]

    def _raise_first_error(self) -> None:
        for f in self._futures:
            if f.done() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._futures:
            f.cancel()
        self._pool.shutdown(wait=True)


def write_file(target: Target, rel: str, frame: pl.DataFrame, *, compression: str) -> FileEntry:
    """Encode ``frame`` to ``rel`` under the target and describe it."""
    return target.put(rel, encode_parquet(frame, compression=compression), frame.height)


def split_points(rows: int, encoded_bytes: int, target_bytes: int) -> list[tuple[int, int]]:
    """(offset, length) of each part: equal row counts, as few parts as keep each near target.

    Depends only on the row count and the encoded size, so only on the data.

    >>> split_points(10, 250, 100)
    [(0, 4), (4, 3), (7, 3)]
    """
    parts = max(1, math.ceil(encoded_bytes / target_bytes)) if rows else 1
    parts = min(parts, max(rows, 1))
    base, extra = divmod(rows, parts)
    out, offset = [], 0
    for i in range(parts):
        length = base + (1 if i < extra else 0)
        out.append((offset, length))
        offset += length
    return out


def write_parts(
    target: Target, prefix: str, frame: pl.DataFrame, *, compression: str, target_bytes: int
) -> list[FileEntry]:
    """Write an ordered frame as ``prefix/part-0000.parquet``, ``part-0001``, ... near target size.

    Rows keep their order across parts: part N+1 continues where part N ends.
    """
    whole = encode_parquet(frame, compression=compression)
    if len(whole) <= target_bytes:
        return [target.put(join(prefix, part_name(0)), whole, frame.height)]
    points = split_points(frame.height, len(whole), target_bytes)
    del whole
    return [
        write_file(target, join(prefix, part_name(i)), frame.slice(off, n), compression=compression)
        for i, (off, n) in enumerate(points)
    ]


def write_buckets(
    sink: FileSink,
    prefix: str,
    frame: pl.DataFrame,
    *,
    compression: str,
    target_bytes: int,
    prepare: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> None:
    """Queue each ``mint_bucket`` of an ordered frame as ``prefix/mint_bucket=xx/part-NNNN``.

    ``mint_bucket`` (text, or its integer value 0..255) names the directory and is not written
    into the files. ``prepare`` turns a bucket's rows into the file's columns just before
    encoding (in the sink's threads). :meth:`FileSink.entries` gives the files written.
    """
    parts = frame.partition_by("mint_bucket", as_dict=True, maintain_order=True, include_key=False)
    for (bucket,), part in sorted(parts.items()):
        name = bucket if isinstance(bucket, str) else f"{bucket:02x}"
        where = join(prefix, bucket_dir(name))
        sink.submit(
            _bucket_job, where, part, prepare=prepare, compression=compression, target_bytes=target_bytes
        )


def _bucket_job(
    target: Target,
    where: str,
    part: pl.DataFrame,
    *,
    prepare: Callable[[pl.DataFrame], pl.DataFrame] | None,
    compression: str,
    target_bytes: int,
) -> list[FileEntry]:
    frame = prepare(part) if prepare else part
    return write_parts(target, where, frame, compression=compression, target_bytes=target_bytes)
