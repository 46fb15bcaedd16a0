"""Candle sources, named by URL (SPEC §2)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, retryable
from .base import CANDLE_SCHEMA, CandleRequest, Source

__all__ = ["open_source", "CandleRequest", "Source", "CANDLE_SCHEMA", "retryable"]

SCHEMES = ("clickhouse://", "clickhouses://", "chdb://", "parquet://", "corpus://")


def open_source(
    url: str | None,
    *,
    table: str = "ohlcv_candles",
    data_root: str | Path = "data",
    shards: str | None = None,
) -> Source:
    """Open the source a URL names; no URL means the embedded chdb at ``<data_root>/chdb``.

    ``shards`` (``--source-shards``, e.g. ``00-7f=clickhouse://h1/db,80-ff=clickhouse://h2/db``)
    reads each bucket range from its own shard; ``url`` then names the table the lake records.

    >>> open_source("parquet://fixtures/candles.parquet").label
    'parquet:candles.parquet'
    """
    if shards:
        from .sharded import open_sharded

        return open_sharded(
            url or os.environ.get("LAKESLICE_SOURCE"), shards, table=table, data_root=data_root
        )
    url = url or os.environ.get("LAKESLICE_SOURCE")
    if not url and "://" in str(data_root):
        raise InputError(f"--data-root {data_root}: give --source (the embedded chdb default is local)")
    url = url or f"chdb://{Path(data_root) / 'chdb'}"
    # Each scheme imports its module here: a run pays only for its own driver (chdb is heavy).
    if url.startswith(("clickhouse://", "clickhouses://")):
        from .clickhouse import ClickHouseSource

        return ClickHouseSource.from_url(url, table=table)
    if url.startswith("chdb://"):
        from .embedded import ChdbSource

        path = url[len("chdb://") :]
        if not Path(path).exists():
            raise InputError(f"chdb://{path}: no embedded database there (run 'make demo' to seed one)")
        return ChdbSource(path, table=table)
    if url.startswith("corpus://"):
        from .parquet import ParquetSource

        return ParquetSource(url[len("corpus://") :], corpus=True)
    if "://" in url and not url.startswith("parquet://"):
        scheme = url.split("://", 1)[0]
        raise InputError(f"source {scheme}://…: unknown scheme (use {', '.join(SCHEMES)})")
    from .parquet import ParquetSource

    path = url[len("parquet://") :] if url.startswith("parquet://") else url
    if not Path(path).exists():
        raise InputError(f"{path}: candle source not found")
    return ParquetSource(path)
