"""Encode frames as Parquet parts and put them on disk durably.

File naming (layout.py), part splitting (here) and the commit (commit.py) are separate pieces.
Parts are encoded in memory first: the bytes are hashed without a re-read and a bucket that
fits one part (the common case) is encoded exactly once.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..spec import RunError
from .layout import bucket_dir, part_name

ROW_GROUP_ROWS = 128 * 1024


@dataclass(frozen=True)
class FileEntry:
    """One file of a run as the manifest lists it (path relative to the run dir)."""

    path: str
    rows: int
    bytes: int
    sha256: str


def encode_parquet(frame: pl.DataFrame, *, compression: str) -> bytes:
    """Parquet bytes of ``frame``; the same frame and library versions give the same bytes."""
    buf = io.BytesIO()
    frame.rechunk().write_parquet(
        buf,
        compression="uncompressed" if compression == "none" else compression,
        statistics=True,
        row_group_size=ROW_GROUP_ROWS,
    )
    return buf.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    """Write, flush and fsync under a temporary name, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunError(f"{path}: cannot write ({exc.strerror or exc})") from exc


class FileSink:
    """Runs file-writing jobs (encode, write, fsync, rename, hash) in worker threads.

    Polars encodes and compresses outside the GIL, so buckets encode in parallel. Each job's
    bytes depend only on its frame; results come back as futures in submission order, so the
    output never depends on which job finishes first. At most ``2 × workers`` jobs wait.
    """

    def __init__(self, root: Path, *, workers: int = 2) -> None:
        self.root = Path(root)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lakeslice-write")
        self._slots = threading.BoundedSemaphore(2 * workers)

    def submit(self, fn, *args, **kwargs) -> Future:
        self._slots.acquire()
        future = self._pool.submit(fn, self.root, *args, **kwargs)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)


def write_file(root: Path, rel: str, frame: pl.DataFrame, *, compression: str) -> FileEntry:
    """Encode ``frame`` to ``root/rel`` and describe it."""
    data = encode_parquet(frame, compression=compression)
    write_bytes(root / rel, data)
    return FileEntry(rel, frame.height, len(data), hashlib.sha256(data).hexdigest())


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
    root: Path, prefix: str, frame: pl.DataFrame, *, compression: str, target_bytes: int
) -> list[FileEntry]:
    """Write an ordered frame as ``prefix/part-0000.parquet``, ``part-0001``, ... near target size.

    Rows keep their order across parts: part N+1 continues where part N ends.
    """
    whole = encode_parquet(frame, compression=compression)
    rel0 = f"{prefix}/{part_name(0)}"
    if len(whole) <= target_bytes:
        write_bytes(root / rel0, whole)
        return [FileEntry(rel0, frame.height, len(whole), hashlib.sha256(whole).hexdigest())]
    points = split_points(frame.height, len(whole), target_bytes)
    del whole
    return [
        write_file(root, f"{prefix}/{part_name(i)}", frame.slice(off, n), compression=compression)
        for i, (off, n) in enumerate(points)
    ]


def write_buckets(
    target: Path | FileSink,
    prefix: str,
    frame: pl.DataFrame,
    *,
    compression: str,
    target_bytes: int,
    prepare: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> list[FileEntry] | list[Future]:
    """Write each ``mint_bucket`` of an ordered frame as ``prefix/mint_bucket=xx/part-NNNN``.

    ``mint_bucket`` (text, or its integer value 0..255) names the directory and is not written
    into the files. ``prepare`` turns a bucket's rows into the file's columns just before
    encoding (in the sink's threads). With a :class:`FileSink`, futures (of lists) come back.
    """
    out = []
    parts = frame.partition_by("mint_bucket", as_dict=True, maintain_order=True, include_key=False)
    for (bucket,), part in sorted(parts.items()):
        name = bucket if isinstance(bucket, str) else f"{bucket:02x}"
        where = f"{prefix}/{bucket_dir(name)}" if prefix else bucket_dir(name)
        kw = {"compression": compression, "target_bytes": target_bytes, "prepare": prepare}
        if isinstance(target, FileSink):
            out.append(target.submit(_bucket_job, where, part, **kw))
        else:
            out += _bucket_job(target, where, part, **kw)
    return out


def _bucket_job(root: Path, where: str, part: pl.DataFrame, *, prepare, **kw) -> list[FileEntry]:
    return write_parts(root, where, prepare(part) if prepare else part, **kw)
