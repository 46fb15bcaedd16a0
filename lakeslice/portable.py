"""Sources and stores that travel to other processes as descriptions, never as open handles.

An executor that runs bucket groups in other processes (Dask, Ray) sends each task a
:class:`PortableSource` (the source URL(s) and table, plus what the coordinator already knows:
label, group size, shard starts) and a :class:`PortableStore` (the data root). Where the task
runs, the real source and store are opened on first use and cached per process and thread
(clickhouse-driver connections are not thread-safe), so a worker opens one connection per
thread for the whole run, not one per task.

Nothing secret travels: a URL that carries a password is refused here; workers read credentials
from their own environment (``LAKESLICE_CLICKHOUSE_USER``/``LAKESLICE_CLICKHOUSE_PASSWORD``).

>>> import pickle
>>> spec = SourceSpec(url="parquet://fixtures/candles.parquet")
>>> src = PortableSource.of(spec)
>>> src.label, pickle.loads(pickle.dumps(src)).label
('parquet:candles.parquet', 'parquet:candles.parquet')
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from .errors import InputError, split_credentials
from .sources.base import CandleRequest, Retry, Source, SourceInfo

__all__ = ["SourceSpec", "PortableSource", "PortableStore", "per_thread"]

_CACHE: dict[tuple[int, int, Hashable], Any] = {}
_LOCK = threading.Lock()


def per_thread(key: Hashable, factory: Callable[[], Any]) -> Any:
    """``factory()``, made once per (process, thread, key) and kept for the process's life.

    >>> per_thread("doc", object) is per_thread("doc", object)
    True
    """
    slot = (os.getpid(), threading.get_ident(), key)
    with _LOCK:
        found = _CACHE.get(slot)
    if found is None:
        found = factory()  # outside the lock: opening a source may take a while
        with _LOCK:
            found = _CACHE.setdefault(slot, found)
    return found


@dataclass(frozen=True)
class SourceSpec:
    """What opens a source: ``open_source(url, table=, data_root=, shards=)``'s arguments."""

    url: str | None = None
    table: str = "ohlcv_candles"
    shards: str | None = None
    data_root: str = "data"

    def __post_init__(self) -> None:
        for what, text in (("--source", self.url), ("--source-shards", self.shards)):
            if text and _has_password(text, what):
                raise InputError(
                    f"{what}: a password in the URL would travel to every worker; remove it and set"
                    " LAKESLICE_CLICKHOUSE_PASSWORD in the workers' environment"
                )

    def open(self) -> Source:
        from .sources import open_source

        return open_source(self.url, table=self.table, data_root=self.data_root, shards=self.shards)


def _has_password(text: str, what: str) -> bool:
    """A password in the URL ``text``, or in any URL of a ``--source-shards`` list."""
    from .sources.sharded import parse_shards

    urls = [s.url for s in parse_shards(text)] if what == "--source-shards" else [text]
    return any(split_credentials(url).password is not None for url in urls)


class PortableSource:
    """A :class:`~lakeslice.sources.base.Source` that opens ``spec`` where it is used.

    ``portable = True`` tells a remote executor that this object may be sent to workers as it
    is (a source of one's own may say the same, and must then hold no secret).
    """

    portable = True

    def __init__(
        self,
        spec: SourceSpec,
        *,
        label: str,
        snapshot: SourceInfo,
        group_rows: int | None = None,
        shard_starts: Sequence[str] = (),
    ):
        self.spec = spec
        self.label = label
        self._snapshot = snapshot
        self.group_rows = group_rows
        self.shard_starts = list(shard_starts)

    @classmethod
    def of(cls, spec: SourceSpec, opened: Source | None = None) -> PortableSource:
        """Describe ``spec`` with what ``opened`` (or a source opened here for a moment) knows."""
        src = opened if opened is not None else spec.open()
        try:
            return cls(
                spec,
                label=src.label,
                snapshot=src.snapshot(),
                group_rows=getattr(src, "group_rows", None),
                shard_starts=getattr(src, "shard_starts", ()),
            )
        finally:
            if opened is None:
                src.close()

    def _here(self) -> Source:
        return per_thread(("source", self.spec), self.spec.open)

    def snapshot(self) -> SourceInfo:
        return self._snapshot

    def fetch(self, request: CandleRequest) -> Iterator[pa.RecordBatch]:
        return self._here().fetch(request)

    def mint_counts(self, *, chain: str, interval_s: int, start_ms: int, end_ms: int) -> pl.DataFrame:
        return self._here().mint_counts(chain=chain, interval_s=interval_s, start_ms=start_ms, end_ms=end_ms)

    def holdings(self) -> pl.DataFrame:
        return self._here().holdings()

    @property
    def retry(self) -> Retry:
        """The retry policy of the source where the task runs (its URL options)."""
        return getattr(self._here(), "retry", Retry())

    def close(self) -> None:
        """Nothing: the sources opened where tasks ran live as long as their worker."""


class PortableStore:
    """A lake store (:mod:`lakeslice.lake.store`) that travels as its data root.

    Where it is used, ``open_store(root)`` is opened once per process and thread; credentials
    and endpoint come from that process's ``AWS_*`` environment, never from the coordinator.
    A local root is made absolute here: every worker must see it at the same path (a shared
    file system).
    """

    def __init__(self, root: str):
        self.root = root

    @classmethod
    def of(cls, store: Any) -> PortableStore:
        local = getattr(store, "local", False)
        return cls(str(Path(store.root).resolve()) if local else str(store.root))

    def _here(self) -> Any:
        from .lake.store import open_store

        return per_thread(("store", self.root), lambda: open_store(self.root))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "root":
            raise AttributeError(name)
        return getattr(self._here(), name)

    def __getstate__(self) -> dict:
        return {"root": self.root}

    def __setstate__(self, state: dict) -> None:
        self.root = state["root"]


def portable_source(
    source: str | Source | None,
    *,
    table: str,
    data_root: str | Path,
    shards: str | None = None,
) -> Source:
    """The source to send to the workers of a remote executor.

    A URL (or ``LAKESLICE_SOURCE``) becomes a :class:`PortableSource`; a source object is sent
    only when it says it is ``portable`` (a ClickHouse source object may hold a password).
    """
    if source is not None and not isinstance(source, str):
        if getattr(source, "portable", False):
            return source
        raise InputError(
            f"source {type(source).__name__}: a source object cannot be sent to remote workers; pass its URL"
        )
    # Resolved here, not on the workers: their environment and working directory may differ.
    url = source or os.environ.get("LAKESLICE_SOURCE")
    root = str(data_root) if "://" in str(data_root) else str(Path(data_root).resolve())
    if not url and not shards and "://" not in root:
        url = f"chdb://{Path(root) / 'chdb'}"
    return PortableSource.of(SourceSpec(url=url, table=table, shards=shards, data_root=root))
