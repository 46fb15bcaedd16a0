"""Candle sources, named by URL (SPEC §2)."""

from __future__ import annotations

import os
from pathlib import Path

from ..spec import InputError
from .base import CANDLE_SCHEMA, CandleRequest, Source

__all__ = ["open_source", "redact", "CandleRequest", "Source", "CANDLE_SCHEMA", "retryable"]

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
    url = url or os.environ.get("LAKESLICE_SOURCE") or f"chdb://{Path(data_root) / 'chdb'}"
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


def redact(url: str) -> str:
    """A URL with any password replaced, for messages."""
    if "://" not in url or "@" not in url.split("://", 1)[1].split("/", 1)[0]:
        return url
    scheme, rest = url.split("://", 1)
    auth, host = rest.split("@", 1) if "@" in rest else ("", rest)
    user = auth.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in auth else f"{scheme}://{user}@{host}"


def retryable(exc: BaseException) -> bool:
    """A failure worth retrying the bucket group for (a dropped connection)."""
    return bool(getattr(exc, "retryable", False)) or type(exc).__name__ == "SourceConnectionError"
