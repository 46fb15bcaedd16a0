"""Deterministic synthetic candles and alerts for the demo, tests and benchmarks.

Same arguments, same rows: a seeded NumPy generator, no wall time, no Python loop over rows.
Each mint's price is its own geometric random walk (it starts at the mint's own price and never
wraps or jumps to the next mint's), with outages (runs of missing candles), an optional late
listing, and optionally a few duplicate rows.

>>> c = synthetic_candles(mints=2, candles_per_mint=100, seed=1)
>>> c.columns[:4], c["token_address"].n_unique()
(['token_address', 'chain', 'timestamp', 'interval_seconds'], 2)
>>> synthetic_candles(mints=2, candles_per_mint=100, seed=1).equals(c)
True
"""

from __future__ import annotations

import numpy as np
import polars as pl

BASE_TS = 1_704_067_200  # 2024-01-01T00:00:00Z
#: Per-candle log-return volatility of the walks (about 1 % a candle).
VOLATILITY = 0.01


def synthetic_mints(n: int, *, seed: int = 7) -> list[str]:
    """Base58-looking 44-character mints (plus the SOL mint first).

    >>> synthetic_mints(2)[0]
    'So11111111111111111111111111111111111111112'
    """
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"))
    codes = rng.integers(0, len(alphabet), size=(n, 44))
    mints = ["".join(row) for row in alphabet[codes]]  # one join per mint, not per candle
    if n:
        mints[0] = "So11111111111111111111111111111111111111112"
    return mints


def outage_mask(
    rng: np.random.Generator, shape: tuple[int, int], *, gap_fraction: float, gap_length: float
) -> np.ndarray:
    """True where a candle is missing: outages of mean ``gap_length`` slots per row (mint).

    About ``gap_fraction`` of the slots fall in an outage; ``gap_length=1`` gives single
    missing candles scattered at random.

    >>> m = outage_mask(np.random.default_rng(0), (4, 10_000), gap_fraction=0.1, gap_length=20)
    >>> bool(0.07 < m.mean() < 0.13)
    True
    """
    if gap_fraction <= 0:
        return np.zeros(shape, dtype=bool)
    if gap_length <= 1:
        return rng.random(shape) < gap_fraction
    starts = rng.random(shape) < gap_fraction / gap_length
    lengths = rng.geometric(1.0 / gap_length, size=shape)
    slot = np.arange(shape[1], dtype=np.int64)
    # an outage starting at slot s covers [s, s + length): a slot is out when the furthest
    # end of the outages started at or before it lies beyond it (running max along the row)
    ends = np.where(starts, slot + lengths, -1)
    return np.maximum.accumulate(ends, axis=1) > slot


def random_walks(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Closing prices: one geometric random walk per row, each from its own starting price."""
    start = np.exp(rng.normal(-2.0, 2.0, size=(shape[0], 1)))  # prices from ~0.002 to ~7
    returns = rng.normal(0.0, VOLATILITY, size=shape)
    return start * np.exp(np.cumsum(returns, axis=1))


def synthetic_candles(
    *,
    mints: int = 50,
    candles_per_mint: int = 2_000,
    interval_s: int = 60,
    gap_fraction: float = 0.05,
    gap_length: float = 1.0,
    late_listing: float = 0.0,
    duplicate_fraction: float = 0.0,
    chain: str = "solana",
    seed: int = 7,
) -> pl.DataFrame:
    """Candles in the QuantBot source columns: per-mint random walks with gaps and duplicates.

    ``gap_length`` is the mean length of an outage (1: single missing candles);
    ``late_listing`` the largest fraction of the span before a mint's first candle (each mint
    draws its own); ``duplicate_fraction`` adds that share of rows again with other values.
    """
    rng = np.random.default_rng(seed)
    names = synthetic_mints(mints, seed=seed)
    shape = (mints, candles_per_mint)
    close = random_walks(rng, shape)
    # open = the previous close: no jump between candles of one mint
    open_ = np.concatenate([close[:, :1] * np.exp(rng.normal(0, VOLATILITY, (mints, 1))), close[:, :-1]], 1)
    wick = np.abs(rng.normal(0, VOLATILITY / 2, size=(2, *shape)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1]).clip(0.5)
    volume = np.round(rng.lognormal(6.0, 1.0, size=shape), 3)
    slot = np.broadcast_to(np.arange(candles_per_mint, dtype=np.int64), shape)
    listed = (rng.random((mints, 1)) * late_listing * candles_per_mint).astype(np.int64)
    keep = ~outage_mask(rng, shape, gap_fraction=gap_fraction, gap_length=gap_length) & (slot >= listed)
    mint_idx = np.broadcast_to(np.arange(mints)[:, None], shape)[keep]
    n = int(keep.sum())
    frame = pl.DataFrame(
        {
            "token_address": pl.Series(names).gather(mint_idx),
            "chain": pl.repeat(chain, n, eager=True),
            "timestamp": BASE_TS + slot[keep] * interval_s,
            "interval_seconds": pl.repeat(interval_s, n, dtype=pl.UInt32, eager=True),
            "open": open_[keep],
            "high": high[keep],
            "low": low[keep],
            "close": close[keep],
            "volume": volume[keep],
        }
    )
    if duplicate_fraction > 0:
        dup = frame.sample(fraction=duplicate_fraction, seed=seed).with_columns(
            pl.col("volume") * 0.5, close=(pl.col("high") + pl.col("low")) / 2
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
    """Alerts (``mint``, ``ts_ms``) spread over the candles' time span, off the boundary.

    >>> synthetic_alerts(alerts=3, mints=2).columns
    ['mint', 'ts_ms']
    """
    rng = np.random.default_rng(seed)
    names = synthetic_mints(mints)
    span_ms = candles_per_mint * interval_s * 1000
    return pl.DataFrame(
        {
            "mint": pl.Series(names).gather(rng.integers(0, mints, alerts)),
            "ts_ms": BASE_TS * 1000 + rng.integers(0, span_ms, alerts),
        }
    )
