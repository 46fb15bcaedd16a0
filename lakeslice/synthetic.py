"""Deterministic synthetic candles and alerts for the demo, tests and benchmarks.

Same arguments, same rows: a seeded NumPy generator, no wall time, no Python loop over rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl

BASE_TS = 1_704_067_200  # 2024-01-01T00:00:00Z


def synthetic_mints(n: int, *, seed: int = 7) -> list[str]:
    """Base58-looking 44-character mints (plus the SOL mint first)."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"))
    codes = rng.integers(0, len(alphabet), size=(n, 44))
    mints = ["".join(row) for row in alphabet[codes]]  # one join per mint, not per candle
    if n:
        mints[0] = "So11111111111111111111111111111111111111112"
    return mints


def synthetic_candles(
    *,
    mints: int = 50,
    candles_per_mint: int = 2_000,
    interval_s: int = 60,
    gap_fraction: float = 0.05,
    duplicate_fraction: float = 0.0,
    chain: str = "solana",
    seed: int = 7,
) -> pl.DataFrame:
    """Candles in the QuantBot source columns, with gaps and (optionally) duplicate rows."""
    rng = np.random.default_rng(seed)
    names = synthetic_mints(mints, seed=seed)
    slot = np.tile(np.arange(candles_per_mint, dtype=np.int64), mints)
    mint_idx = np.repeat(np.arange(mints), candles_per_mint)
    keep = rng.random(slot.size) >= gap_fraction
    slot, mint_idx = slot[keep], mint_idx[keep]
    n = slot.size
    price = np.exp(rng.normal(0, 0.01, n).cumsum() % 5)
    spread = np.abs(rng.normal(0, 0.005, n)) * price
    frame = pl.DataFrame(
        {
            "token_address": pl.Series(names).gather(mint_idx),
            "chain": pl.repeat(chain, n, eager=True),
            "timestamp": BASE_TS + slot * interval_s,
            "interval_seconds": pl.repeat(interval_s, n, dtype=pl.UInt32, eager=True),
            "open": price,
            "high": price + spread,
            "low": price - spread,
            "close": price + spread / 2,
            "volume": np.round(rng.exponential(1000.0, n), 3),
        }
    )
    if duplicate_fraction > 0:
        dup = frame.sample(fraction=duplicate_fraction, seed=seed).with_columns(
            pl.col("volume") * 0.5, pl.col("close") * 1.001
        )
        frame = pl.concat([frame, dup])
    return frame.with_columns(pl.from_epoch("timestamp", time_unit="s").alias("timestamp"))


def synthetic_alerts(
    *,
    alerts: int = 200,
    mints: int = 50,
    candles_per_mint: int = 2_000,
    interval_s: int = 60,
    seed: int = 11,
) -> pl.DataFrame:
    """Alerts (``mint``, ``ts_ms``) spread over the candles' time span, off the boundary."""
    rng = np.random.default_rng(seed)
    names = synthetic_mints(mints)
    span_ms = candles_per_mint * interval_s * 1000
    return pl.DataFrame(
        {
            "mint": pl.Series(names).gather(rng.integers(0, mints, alerts)),
            "ts_ms": BASE_TS * 1000 + rng.integers(0, span_ms, alerts),
        }
    )
