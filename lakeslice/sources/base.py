"""What every candle source provides.

A source answers a :class:`CandleRequest` (a chain, an interval and a table of disjoint
half-open time ranges per mint) with Arrow record batches in :data:`CANDLE_SCHEMA`. It may
return rows outside the ranges (the pipeline filters exactly), duplicates (the pipeline
deduplicates) and rows in any order (the pipeline sorts); it must not miss a row inside them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypedDict

import polars as pl
import pyarrow as pa

#: The QuantBot ``ohlcv_candles`` columns a SQL source table must have (SPEC §2).
QUANTBOT_COLUMNS = (
    "token_address",
    "chain",
    "timestamp",
    "interval_seconds",
    "open",
    "high",
    "low",
    "close",
    "volume",
)


def quantbot_ddl(
    target: str,
    *,
    timestamp_type: str = "DateTime",
    order_by: str = "(token_address, interval_seconds, timestamp)",
    with_ver: bool = False,
) -> str:
    """``CREATE TABLE`` of the QuantBot candle table at ``target`` (ClickHouse and chdb).

    Every argument is trusted DDL text (a quoted name, a type, an ``ORDER BY``), never user data.

    >>> print(quantbot_ddl("`db`.`t`", timestamp_type="DateTime64(3)", with_ver=True))
    CREATE TABLE IF NOT EXISTS `db`.`t` (token_address String, chain String, timestamp DateTime64(3),
    interval_seconds UInt32, open Float64, high Float64, low Float64, close Float64, volume Float64,
    ver UInt64) ENGINE = MergeTree() ORDER BY (token_address, interval_seconds, timestamp)
    """
    ver = ", ver UInt64" if with_ver else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {target} (token_address String, chain String,"
        f" timestamp {timestamp_type}, interval_seconds UInt32, open Float64, high Float64,"
        f" low Float64, close Float64, volume Float64{ver}) ENGINE = MergeTree() ORDER BY {order_by}"
    )


# Columns a source yields. ``ver`` is the optional version column (ReplacingMergeTree's `ver`);
# sources without one yield 0. ``mint`` may also arrive dictionary-encoded.
CANDLE_SCHEMA = pa.schema(
    [
        ("mint", pa.string()),
        ("ts_ms", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("ver", pa.int64()),
    ]
)


@dataclass(frozen=True)
class CandleRequest:
    """Candles of ``chain`` at ``interval_s`` whose timestamp lies in one of ``ranges``.

    ``ranges`` has columns ``mint`` (String), ``start_ms`` and ``end_ms`` (Int64 epoch ms,
    half-open), disjoint per mint and sorted by ``(mint, start_ms)``. ``None`` means every
    candle of the chain and interval (corpus mode uses ``start_ms``/``end_ms`` of the request).
    """

    chain: str
    interval_s: int
    ranges: pl.DataFrame | None
    start_ms: int | None = None
    end_ms: int | None = None


class SourceInfo(TypedDict):
    """What a source says about itself in a seal; never a secret (``host`` null for files)."""

    kind: str
    host: str | None
    database: str | None
    table: str


class Source(Protocol):
    """A place candles come from."""

    #: Value of the ``source`` column, e.g. ``clickhouse:db.ohlcv_candles``; never a secret.
    label: str

    def snapshot(self) -> SourceInfo:
        """``{kind, host, database, table}`` for the manifest (export adds chain, as_of); no secrets."""
        ...

    def fetch(self, request: CandleRequest) -> Iterator[pa.RecordBatch]:
        """Yield batches in :data:`CANDLE_SCHEMA` covering every requested candle."""
        ...

    def mint_counts(self, *, chain: str, interval_s: int, start_ms: int, end_ms: int) -> pl.DataFrame:
        """``mint`` (String), ``rows`` (Int64): candles per mint in ``[start_ms, end_ms)``.

        Used by corpus mode to plan bucket groups; counts may include duplicates.
        """
        ...

    def close(self) -> None: ...
