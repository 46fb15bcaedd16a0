"""Column lists from the SPEC text and builders of source rows, shared by every test module."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
ALERTS_CSV = FIXTURES / "alerts.csv"
CANDLES_PQ = FIXTURES / "candles.parquet"

OHLCV = ("open", "high", "low", "close", "volume")
#: SPEC §3: the columns of a slice file, in order.
SLICE_COLUMNS = ["mint", "ts", "interval_s", *OHLCV, "source"]
#: SPEC §4: the columns of coverage.parquet, in order.
COVERAGE_COLUMNS = [
    "alert_id",
    "mint",
    "alert_ts_ms",
    "anchor_ts_ms",
    "window_start_ts_ms",
    "window_end_ts_ms",
    "expected_total",
    "available_pre",
    "available_post",
    "available_total",
    "missing",
    "first_ts_ms",
    "last_ts_ms",
    "status",
    "kept",
]

#: SPEC §8: the keys of a successful ``--format json`` result.
RESULT_KEYS = {
    "run_dir",
    "manifest_path",
    "coverage_path",
    "total_rows",
    "total_files",
    "total_bytes",
    "kept_events",
    "dropped_events",
    "manifest",
}

HOSTILE = "O'Brien\\'); DROP TABLE ohlcv_candles; --"
SOL = "So11111111111111111111111111111111111111112"


def quantbot_row(
    mint: str,
    ts: int,
    *,
    chain: str = "solana",
    interval: int = 60,
    px: float = 1.0,
    vol: float = 10.0,
    ver: int = 1,
) -> dict:
    """One source-table row (``timestamp`` in epoch seconds); high/low/close derive from ``px``."""
    return {
        "token_address": mint,
        "chain": chain,
        "timestamp": ts,
        "interval_seconds": interval,
        "open": px,
        "high": px + 0.5,
        "low": px - 0.25,
        "close": px + 0.125,
        "volume": vol,
        "ver": ver,
    }


def candle(
    mint: str, ts_ms: int, *, px: float = 1.0, volume: float = 1.0, ver: int = 0, source: str = "s"
) -> dict:
    """One reference candle (the form of tests/support/reference.py): flat prices at ``px``."""
    return {
        "mint": mint,
        "ts_ms": ts_ms,
        "ver": ver,
        "open": px,
        "high": px,
        "low": px,
        "close": px,
        "volume": volume,
        "source": source,
    }
