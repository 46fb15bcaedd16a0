"""Column lists from the SPEC text and builders of source rows, shared by every test module."""

from __future__ import annotations

import types
import typing
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


def typed_shape_problems(value: object, tp: object, where: str = "$") -> list[str]:
    """Where a JSON value departs from a TypedDict (exactly its keys, recursively) or a type."""
    if typing.is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, expected an object"]
        hints = typing.get_type_hints(tp)
        odd = sorted(set(value) ^ set(hints))
        problems = [f"{where}: keys {odd} differ"] if odd else []
        for key in set(value) & set(hints):
            problems += typed_shape_problems(value[key], hints[key], f"{where}.{key}")
        return problems
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        items = value if isinstance(value, list) else [None]
        return [p for i, v in enumerate(items) for p in typed_shape_problems(v, args[0], f"{where}[{i}]")]
    if origin is typing.Literal:
        return [] if value in args else [f"{where}: {value!r} not in {args}"]
    if origin in (typing.Union, types.UnionType):
        fits = any(not typed_shape_problems(value, a, where) for a in args)
        return [] if fits else [f"{where}: {value!r} fits none of {args}"]
    expected = {float: (int, float), type(None): type(None)}.get(tp, origin or tp)  # type: ignore[call-overload]
    fits = isinstance(value, expected) and not (isinstance(value, bool) and tp in (int, float))
    return [] if fits else [f"{where}: {value!r}, expected {tp}"]
