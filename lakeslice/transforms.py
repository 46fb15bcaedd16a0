"""Pure Polars transforms: buckets, anchors, window merge, slices, coverage (SPEC §1, §3, §4).

Frames in, lazy frames out; no Python loop over candle rows. Internally candles carry ``ts_ms``
(Int64 epoch ms); the ``ts`` Datetime column appears only in what is written or returned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import polars as pl

from .alerts import normalize_alerts
from .spec import InputError, Window, parse_interval, parse_window

__all__ = [
    "mint_bucket",
    "bucket_table",
    "floor_to_interval",
    "normalize_candles",
    "dedupe_candles",
    "alert_windows",
    "merge_windows",
    "restrict_to_ranges",
    "slice_windows",
    "coverage",
    "coverage_of",
    "to_slice_columns",
    "SLICE_COLUMNS",
    "COVERAGE_COLUMNS",
    "DEDUP_RULE",
]

FrameLike = pl.DataFrame | pl.LazyFrame

SLICE_SCHEMA: dict[str, pl.DataType] = {
    "mint": pl.String(),
    "ts": pl.Datetime("ms", "UTC"),
    "interval_s": pl.Int32(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "source": pl.String(),
}
SLICE_COLUMNS = list(SLICE_SCHEMA)

COVERAGE_SCHEMA: dict[str, pl.DataType] = {
    "alert_id": pl.String(),
    "mint": pl.String(),
    "alert_ts_ms": pl.Int64(),
    "anchor_ts_ms": pl.Int64(),
    "window_start_ts_ms": pl.Int64(),
    "window_end_ts_ms": pl.Int64(),
    "expected_total": pl.Int64(),
    "available_pre": pl.Int64(),
    "available_post": pl.Int64(),
    "available_total": pl.Int64(),
    "missing": pl.Int64(),
    "first_ts_ms": pl.Int64(),
    "last_ts_ms": pl.Int64(),
    "status": pl.String(),
    "kept": pl.Boolean(),
}
COVERAGE_COLUMNS = list(COVERAGE_SCHEMA)

OHLCV = ["open", "high", "low", "close", "volume"]

#: How one row is chosen among several for the same (mint, interval, timestamp).
DEDUP_RULE = "greatest ver, then greatest volume, close, high, low, open, then smallest source label"
# Between values the rule calls equal (-0.0 and 0.0, NaNs with different payloads) the greater
# IEEE 754 totalOrder key wins (volume, close, ..., open), so the pick never follows row order.
_DEDUP_KEYS = ["ver", "volume", "close", "high", "low", "open"]
_FLOAT_KEYS = _DEDUP_KEYS[1:]


# --------------------------------------------------------------------------------------------
# Scalar-ish expressions


def _sha1_buckets(mints: pl.Series) -> pl.Series:
    # One SHA-1 per distinct mint of the batch (Polars has no SHA-1), mapped back natively.
    distinct = mints.unique()
    buckets = pl.Series(
        [None if m is None else hashlib.sha1(m.encode("utf-8")).hexdigest()[:2] for m in distinct.to_list()],
        dtype=pl.String,
    )
    return mints.replace_strict(distinct, buckets, return_dtype=pl.String)


def mint_bucket(expr: pl.Expr | str) -> pl.Expr:
    """First byte of SHA-1 over the mint's UTF-8 bytes, as two lowercase hex characters.

    An elementwise Python function: filters and projections still pass through it. On a large
    frame, prefer a table of the distinct mints joined in (as :func:`slice_windows` does).

    >>> pl.select(mint_bucket(pl.lit("So11111111111111111111111111111111111111112"))).item()
    '35'
    >>> pl.DataFrame({"mint": ["a", "b", "a"]}).select(mint_bucket("mint")).to_series().to_list()
    ['86', 'e9', '86']
    """
    mints = (pl.col(expr) if isinstance(expr, str) else expr).cast(pl.String)
    return mints.map_batches(_sha1_buckets, pl.String, is_elementwise=True)


def bucket_table(mints: pl.LazyFrame) -> pl.LazyFrame:
    """``mint, mint_bucket`` of the distinct values of the one-column frame ``mints``: hashed in a
    small frame of its own, to be joined where rows are many.

    >>> bucket_table(pl.LazyFrame({"mint": ["a", "a"]})).collect().rows()
    [('a', '86')]
    """
    return mints.unique().with_columns(mint_bucket=mint_bucket(pl.first()))


def floor_to_interval(expr: pl.Expr | str, interval: str | int) -> pl.Expr:
    """Floor epoch-ms integers or Datetimes to the start of their interval (UTC, epoch based).

    Integers are read as epoch milliseconds; Datetimes keep their unit and time zone.

    >>> pl.select(floor_to_interval(pl.lit(90_500), "1m")).item()
    60000
    >>> pl.select(floor_to_interval(pl.lit(-1), "1m")).item()
    -60000
    """
    expr = pl.col(expr) if isinstance(expr, str) else expr
    width_ms = parse_interval(interval) * 1000
    # A Datetime's value is its UTC instant and an integer is epoch ms: both floor on one UTC
    # millisecond line, then return to the input's own dtype (integer type, or unit and zone).
    utc_ms = pl.Datetime("ms", "UTC")
    ms = expr.cast(utc_ms).cast(pl.Int64)
    floored = ((ms // width_ms) * width_ms).cast(utc_ms).cast(pl.dtype_of(expr))
    # Bitwise AND exists for integer physical types only: a float (neither epoch ms nor a
    # Datetime) makes Polars refuse the expression instead of being floored silently.
    return pl.when((expr.to_physical() & 0) == 0).then(floored)


# --------------------------------------------------------------------------------------------
# Candles


def normalize_candles(
    candles: FrameLike,
    *,
    chain: str | None = None,
    interval_s: int | None = None,
    source: str | None = None,
    keep: Sequence[str] = (),
) -> pl.LazyFrame:
    """Candles in source columns (``token_address``, ``timestamp``, ...), slice columns
    (``mint``, ``ts``, ...) or the internal ``mint, ts_ms`` form, as
    ``mint, ts_ms, interval_s, open..volume, ver, source``.

    Rows of other chains or intervals are dropped when the frame says which they are; the
    columns named in ``keep`` follow as they are.

    >>> c = pl.DataFrame({"token_address": ["m", "m"], "chain": ["solana", "eth"],
    ...     "timestamp": [60, 60], "interval_seconds": [60, 60],
    ...     "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 2.0})
    >>> normalize_candles(c, chain="solana").select("mint", "ts_ms", "ver", "source").collect().rows()
    [('m', 60000, 0, 'frame')]
    """
    lf = candles.lazy()
    names = lf.collect_schema()
    rename = {"token_address": "mint", "interval_seconds": "interval_s"}
    lf = lf.rename({k: v for k, v in rename.items() if k in names and v not in names})
    names = lf.collect_schema()
    if "mint" not in names:
        raise InputError("candles: missing column 'mint' (or 'token_address')")

    if "ts_ms" in names:
        ts_ms = pl.col("ts_ms").cast(pl.Int64)
    else:
        col = "ts" if "ts" in names else "timestamp" if "timestamp" in names else None
        if col is None:
            raise InputError("candles: missing column 'ts' (or 'timestamp', 'ts_ms')")
        ts_ms = _to_epoch_ms(pl.col(col), names[col])

    if chain is not None and "chain" in names:
        lf = lf.filter(pl.col("chain") == chain)
    if interval_s is not None and "interval_s" in names:
        lf = lf.filter(pl.col("interval_s") == interval_s)

    label = pl.col("source").cast(pl.String) if "source" in names else pl.lit(source or "frame")
    interval = (
        pl.lit(interval_s, pl.Int32)
        if interval_s is not None
        else pl.col("interval_s").cast(pl.Int32)
        if "interval_s" in names
        else pl.lit(None, pl.Int32)
    )
    ver = _ver_as_uint64(pl.col("ver"), names["ver"]) if "ver" in names else pl.lit(0, pl.UInt64)
    # Integer mints (ids assigned in string order by the exporter) stay integers: faster sorts.
    mint = pl.col("mint") if names["mint"].is_integer() else pl.col("mint").cast(pl.String)
    return lf.select(
        mint,
        ts_ms.alias("ts_ms"),
        interval.alias("interval_s"),
        *[pl.col(c).cast(pl.Float64) for c in OHLCV],
        ver.alias("ver"),
        label.alias("source"),
        *keep,
    )


def _ver_as_uint64(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Versions as UInt64 in their own order: unsigned values as they are (a UInt64 >= 2^63 must
    not wrap), signed ones with the sign bit flipped (-2^63..2^63-1 onto 0..2^64-1, in order)."""
    if dtype.is_unsigned_integer():
        return expr.cast(pl.UInt64)
    if dtype.is_integer():
        return expr.cast(pl.Int64).reinterpret(signed=False) ^ pl.lit(2**63, pl.UInt64)
    return expr.cast(pl.UInt64)


def _to_epoch_ms(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")
        return expr.dt.epoch("ms")
    if dtype.is_integer():  # ClickHouse DateTime as a number: epoch seconds
        return expr.cast(pl.Int64) * 1000
    raise InputError(f"candles: time column has type {dtype}, expected a Datetime or epoch seconds")


def _sorted_by_mint_ts(candles: pl.LazyFrame) -> pl.LazyFrame:
    """Sort by (mint, ts_ms). Integer mints (< 2^20) with a ts span < 2^43 ms (278 years) sort on
    one packed Int64 key, several times faster than a two-column sort."""
    schema = candles.collect_schema()
    if not schema["mint"].is_integer():
        return candles.sort("mint", "ts_ms", maintain_order=False)
    frame = candles.collect()
    if frame.height == 0:
        return frame.lazy()
    lo, hi, top = frame.select(
        lo=pl.col("ts_ms").min(), hi=pl.col("ts_ms").max(), top=pl.col("mint").max()
    ).row(0)
    if top >= 2**20 or hi - lo >= 2**43:
        return frame.lazy().sort("mint", "ts_ms", maintain_order=False)
    packed = pl.col("mint").cast(pl.Int64) * 2**43 + (pl.col("ts_ms") - lo)
    return frame.lazy().sort(packed, maintain_order=False)


def _total_order_batch(s: pl.Series) -> pl.Series:
    bits = s.cast(pl.Float64).to_numpy().view(np.int64)
    # IEEE 754 totalOrder: flipping the magnitude bits of negatives makes the signed integers
    # sort like the floats, with -0.0 just below 0.0 and NaNs ordered by sign and payload.
    return pl.Series(s.name, np.where(bits < 0, bits ^ np.int64(2**63 - 1), bits), pl.Int64)


def total_order(expr: pl.Expr) -> pl.Expr:
    """Float64 as Int64 keys in IEEE 754 total order (bit-exact: every float its own key).

    >>> keys = pl.select(total_order(pl.lit(pl.Series([-1.0, -0.0, 0.0, 1.0])))).to_series()
    >>> keys.is_sorted(), keys.n_unique()
    (True, 4)
    """
    return expr.map_batches(_total_order_batch, pl.Int64, is_elementwise=True)


def dedupe_candles(candles: pl.LazyFrame) -> pl.LazyFrame:
    """One row per ``(mint, ts_ms)`` chosen by :data:`DEDUP_RULE`, sorted by ``(mint, ts_ms)``.

    The choice depends on the rows' values only, never on their arrival order. Duplicates are
    rare, so only rows that share their key with a neighbour get the full tie-break sort.

    >>> c = pl.LazyFrame({"mint": ["m", "m"], "ts_ms": [0, 0], "ver": [0, 0], "open": 1.0,
    ...     "high": 1.0, "low": 1.0, "close": 1.0, "volume": [1.0, 2.0], "source": "s"})
    >>> dedupe_candles(c).select("ts_ms", "volume").collect().rows()
    [(0, 2.0)]
    """
    key = ["mint", "ts_ms"]
    ordered = _sorted_by_mint_ts(candles).with_row_index("_row")
    same = [(pl.col(c) == pl.col(c).shift(n)) for c in key for n in (1, -1)]
    shared = ((same[0] & same[2]) | (same[1] & same[3])).fill_null(False)
    # materialized once: both the duplicate subset and the final filter read it
    ordered = ordered.with_columns(_dup=shared).collect().lazy()
    # Values first (as the rule says), then the floats' bits: -0.0 == 0.0 and NaN == NaN as
    # values, so without the bits the pick between them would follow the arrival order.
    bits = [f"_bits_{c}" for c in _FLOAT_KEYS]
    source = ["source"] if "source" in ordered.collect_schema() else []
    tie_keys = [*key, *_DEDUP_KEYS, *bits, *source]
    winners = (
        ordered.filter("_dup")
        .with_columns(total_order(pl.col(c)).alias(b) for c, b in zip(_FLOAT_KEYS, bits, strict=True))
        .sort(tie_keys, descending=[c not in (*key, *source) for c in tie_keys], nulls_last=True)
        .unique(subset=key, keep="first", maintain_order=False)
        .select("_row")
    )
    return ordered.filter(~pl.col("_dup") | pl.col("_row").is_in(winners.collect()["_row"].implode())).drop(
        "_row", "_dup"
    )


# --------------------------------------------------------------------------------------------
# Windows


def alert_windows(alerts: FrameLike, *, interval: str | int, window: str | Window) -> pl.LazyFrame:
    """Alerts (``alert_id, mint, ts_ms``) with their anchor and half-open window bounds.

    >>> w = alert_windows(pl.DataFrame({"alert_id": ["a"], "mint": ["m"], "ts_ms": [90_500]}),
    ...                   interval="1m", window="pre1_post1").collect()
    >>> w.select("anchor_ts_ms", "window_start_ts_ms", "window_end_ts_ms").row(0)
    (60000, 0, 180000)
    """
    width_ms = parse_interval(interval) * 1000
    win = parse_window(window)
    _check_window_range(alerts, width_ms, win)
    anchor = (pl.col("ts_ms") // width_ms) * width_ms
    return alerts.lazy().select(
        "alert_id",
        "mint",
        pl.col("ts_ms").alias("alert_ts_ms"),
        anchor.alias("anchor_ts_ms"),
        (anchor - win.pre * width_ms).alias("window_start_ts_ms"),
        (anchor + (win.post + 1) * width_ms).alias("window_end_ts_ms"),
    )


def _check_window_range(alerts: FrameLike, width_ms: int, win: Window) -> None:
    """Refuse windows whose bounds leave Int64 milliseconds (they would wrap around)."""
    lo, hi = (
        alerts.lazy()
        .select(pl.col("ts_ms").min().alias("lo"), pl.col("ts_ms").max().alias("hi"))
        .collect()
        .row(0)
    )
    if lo is None:
        return
    start = (lo // width_ms) * width_ms - win.pre * width_ms
    end = (hi // width_ms) * width_ms + (win.post + 1) * width_ms
    if start < -(2**63) or end > 2**63 - 1:
        raise InputError(
            f"window {win.name} at interval {width_ms // 1000}s: the windows of the alerts"
            f" (ts_ms {lo} to {hi}) reach beyond Int64 milliseconds; use a shorter window or interval"
        )


def merge_windows(windows: FrameLike) -> pl.LazyFrame:
    """Union of each mint's windows as disjoint half-open ranges ``mint, start_ms, end_ms``.

    Overlapping or touching windows merge; output is sorted by ``(mint, start_ms)``.

    >>> w = pl.DataFrame({"mint": ["m", "m", "m"], "window_start_ts_ms": [0, 5, 20],
    ...                   "window_end_ts_ms": [10, 12, 30]})
    >>> merge_windows(w).collect().rows()
    [('m', 0, 12), ('m', 20, 30)]
    """
    lf = (
        windows.lazy()
        .select("mint", start_ms="window_start_ts_ms", end_ms="window_end_ts_ms")
        .sort("mint", "start_ms", "end_ms")
    )
    reach = pl.col("end_ms").cum_max().shift(1).over("mint")
    starts_new = reach.is_null() | (pl.col("start_ms") > reach)
    return (
        lf.with_columns(run=starts_new.cum_sum())
        .group_by("mint", "run")
        .agg(pl.col("start_ms").min(), pl.col("end_ms").max())
        .sort("mint", "start_ms")
        .select("mint", "start_ms", "end_ms")
    )


def restrict_to_ranges(candles: pl.LazyFrame, ranges: FrameLike) -> pl.LazyFrame:
    """Keep the candles whose ``ts_ms`` lies in one of their mint's disjoint ranges.

    One as-of lookup per candle (the range starting at or before it), so the cost follows
    candles × log(ranges), not candles × alerts. Input must be sorted by ``(mint, ts_ms)``.

    >>> c = pl.LazyFrame({"mint": ["m"] * 3, "ts_ms": [0, 60_000, 120_000]})
    >>> r = pl.DataFrame({"mint": ["m"], "start_ms": [60_000], "end_ms": [120_000]})
    >>> restrict_to_ranges(c, r).collect().rows()
    [('m', 60000)]
    """
    ranges = ranges.lazy().select("mint", "start_ms", "end_ms").sort("mint", "start_ms")
    return (
        candles.join_asof(
            ranges,
            left_on="ts_ms",
            right_on="start_ms",
            by="mint",
            strategy="backward",
            check_sortedness=False,
        )
        .filter(pl.col("ts_ms") < pl.col("end_ms"))
        .drop("start_ms", "end_ms")
    )


def _prepared(
    candles: FrameLike, alerts: FrameLike, interval: str | int, window: str | Window, chain: str
) -> tuple[pl.LazyFrame, pl.LazyFrame, int]:
    """Normalized alerts' windows and the deduplicated candles of ``chain`` inside their union."""
    interval_s = parse_interval(interval)
    if isinstance(alerts, pl.LazyFrame):
        alerts = alerts.collect()
    if not {"alert_id", "mint", "ts_ms"} <= set(alerts.columns) or alerts["ts_ms"].dtype != pl.Int64:
        alerts = normalize_alerts(alerts)
    windows = alert_windows(alerts, interval=interval_s, window=window)
    cands = dedupe_candles(normalize_candles(candles, chain=chain, interval_s=interval_s))
    cands = restrict_to_ranges(cands, merge_windows(windows))
    return windows, cands, interval_s


def to_slice_columns(candles: pl.LazyFrame, *, interval_s: int, source: str | None = None) -> pl.LazyFrame:
    """Internal candles as the lake's slice columns (SPEC §3), order preserved.

    ``source`` labels every row (instead of the frame's own ``source`` column).
    """
    label = pl.lit(source, pl.String).alias("source") if source is not None else pl.col("source")
    return candles.select(
        "mint",
        pl.col("ts_ms").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC").alias("ts"),
        pl.lit(interval_s, pl.Int32).alias("interval_s"),
        *OHLCV,
        label,
    )


def slice_windows(
    candles: FrameLike,
    alerts: FrameLike,
    *,
    interval: str | int,
    window: str | Window,
    chain: str = "solana",
) -> pl.LazyFrame:
    """The deduplicated candles inside the union of each mint's alert windows.

    Columns of SPEC §3 plus ``mint_bucket``; one row per ``(mint, ts)``, sorted by it. When the
    candles have a ``chain`` column only rows of ``chain`` count (as in the export); rows of other
    intervals are dropped likewise.

    >>> c = pl.DataFrame({"mint": ["m"] * 3, "ts_ms": [0, 60_000, 120_000],
    ...     "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})
    >>> a = pl.DataFrame({"mint": ["m"], "ts_ms": [65_000]})
    >>> slice_windows(c, a, interval="1m", window="pre1_post0").collect().height
    2
    """
    windows, cands, interval_s = _prepared(candles, alerts, interval, window, chain)
    # The bucket of each alert mint (few) joins the candles (many): no Python over their rows.
    buckets = bucket_table(windows.select(pl.col("mint").cast(pl.String)))
    return to_slice_columns(cands, interval_s=interval_s).join(
        buckets, on="mint", how="left", maintain_order="left"
    )


# --------------------------------------------------------------------------------------------
# Coverage


def coverage_of(
    candles: pl.LazyFrame,
    windows: pl.LazyFrame,
    *,
    expected_total: int,
    strict: bool = False,
    min_required_pre: int = 52,
    target_total: int = 5000,
) -> pl.LazyFrame:
    """Coverage rows (SPEC §4) of ``windows`` over deduplicated candles sorted by (mint, ts_ms).

    Counts come from as-of lookups of each window bound into a per-mint running rank, so the
    cost follows (candles + alerts) × log, never candles × alerts.
    """
    # SPEC §4: `complete` when every slot has a candle; counting candles would let two off-grid
    # candles in one slot hide an empty slot. `srank` is a per-mint running count of distinct
    # interval slots; windows start and end on slot boundaries, so differences of srank count
    # the filled slots of a window.
    names = candles.collect_schema()
    slot = pl.col("ts_ms")
    if "interval_s" in names:
        slot = (pl.col("ts_ms") // (pl.col("interval_s").cast(pl.Int64) * 1000)).fill_null(slot)
    base = _packing_base(candles, windows)
    if base is None:
        w = _window_counts_by_mint(candles, windows, slot)
    else:
        w = _window_counts_packed(candles, windows, slot, base)
    pre = pl.col("_n_anchor") - pl.col("_n_start")
    post = pl.col("_n_end") - pl.col("_n_anchor")
    total = pl.col("available_total")
    out = w.with_columns(
        expected_total=pl.lit(expected_total, pl.Int64),
        available_pre=pre,
        available_post=post,
        available_total=pre + post,
    ).with_columns(
        missing=pl.col("expected_total") - total,
        first_ts_ms=pl.when(total > 0).then(pl.col("_first")),
        last_ts_ms=pl.when(total > 0).then(pl.col("_last")),
        # filled slots, not candles, decide `complete` (see srank above)
        status=pl.when(pl.col("_n_end_slots") - pl.col("_n_start_slots") == pl.col("expected_total"))
        .then(pl.lit("complete"))
        .when(total > 0)
        .then(pl.lit("partial"))
        .otherwise(pl.lit("insufficient")),
        kept=(
            (pl.col("available_pre") >= min_required_pre) & (total >= target_total)
            if strict
            else pl.lit(True)
        ),
    )
    return out.select([pl.col(c).cast(t) for c, t in COVERAGE_SCHEMA.items()]).sort("alert_id")


def _window_counts_by_mint(candles: pl.LazyFrame, windows: pl.LazyFrame, slot: pl.Expr) -> pl.LazyFrame:
    """The windows with their as-of counts (``_n_start``, ``_n_anchor``, ``_n_end`` and their
    ``_slots``) and the first/last candle (``_first``, ``_last``), by per-mint as-of joins."""
    ranked = candles.select(
        "mint",
        "ts_ms",
        rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("mint"),
        srank=(slot != slot.shift(1)).fill_null(True).cast(pl.Int64).cum_sum().over("mint"),
    )

    def count_before(frame: pl.LazyFrame, bound: str, name: str) -> pl.LazyFrame:
        # number of candles with ts_ms < bound  ==  rank of the last candle at or before bound-1
        probe = frame.with_columns((pl.col(bound) - 1).alias("_probe")).sort("_probe")
        return (
            probe.join_asof(
                ranked.select("mint", _probe="ts_ms", rank="rank", srank="srank"),
                on="_probe",
                by="mint",
                strategy="backward",
                check_sortedness=False,
            )
            .with_columns(
                pl.col("rank").fill_null(0).alias(name),
                pl.col("srank").fill_null(0).alias(name + "_slots"),
            )
            .drop("_probe", "rank", "srank")
        )

    w = windows
    w = count_before(w, "window_start_ts_ms", "_n_start")
    w = count_before(w, "anchor_ts_ms", "_n_anchor")
    w = count_before(w, "window_end_ts_ms", "_n_end")
    # first candle at or after the start; last candle before the end
    w = w.sort("window_start_ts_ms").join_asof(
        ranked.select("mint", window_start_ts_ms="ts_ms", _first="ts_ms"),
        on="window_start_ts_ms",
        by="mint",
        strategy="forward",
        check_sortedness=False,
    )
    w = (
        w.with_columns((pl.col("window_end_ts_ms") - 1).alias("_probe"))
        .sort("_probe")
        .join_asof(
            ranked.select("mint", _probe="ts_ms", _last="ts_ms"),
            on="_probe",
            by="mint",
            strategy="backward",
            check_sortedness=False,
        )
    )
    return w


#: Packed keys: mint ids below 2^20 and times within 2^43 ms (278 years) of the base.
_MINT_BITS, _TIME_BITS = 20, 43


def _packing_base(candles: pl.LazyFrame, windows: pl.LazyFrame) -> int | None:
    """The time base of packed ``(mint, ts)`` keys, or None when they do not apply (string
    mints, ids or a time span too wide)."""
    if not candles.collect_schema()["mint"].is_integer() or not windows.collect_schema()["mint"].is_integer():
        return None
    c = candles.select(lo=pl.col("ts_ms").min(), hi=pl.col("ts_ms").max(), top=pl.col("mint").max())
    w = windows.select(
        lo=pl.col("window_start_ts_ms").min() - 1,
        hi=pl.col("window_end_ts_ms").max(),
        top=pl.col("mint").max(),
    )
    lo, hi, top = pl.concat([c, w]).select(pl.min("lo"), pl.max("hi"), pl.max("top")).collect().row(0)
    if lo is None or hi is None or top is None:
        return None
    if top >= 2**_MINT_BITS or hi - lo >= 2**_TIME_BITS:
        return None
    return int(lo)


def _window_counts_packed(
    candles: pl.LazyFrame, windows: pl.LazyFrame, slot: pl.Expr, base: int
) -> pl.LazyFrame:
    """As :func:`_window_counts_by_mint`, with as-of joins on one packed ``(mint, ts)`` key.

    Counts are running totals over all rows (in ``(mint, ts)`` order) instead of per mint: the
    coverage uses only their differences within one window of one mint, which are the same.
    A backward lookup that finds no candle of the window's mint lands on the row just before
    the mint's first one, whose running total is the mint's own zero; ``_first`` and ``_last``
    are used only when the window holds a candle, so they are always the window's mint's.
    """

    def key(ts: pl.Expr) -> pl.Expr:
        return pl.col("mint").cast(pl.Int64) * 2**_TIME_BITS + (ts - base)

    mint = pl.col("mint")
    ranked = candles.select(
        _key=key(pl.col("ts_ms")),
        _ts=pl.col("ts_ms"),
        rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        srank=((slot != slot.shift(1)) | (mint != mint.shift(1))).fill_null(True).cast(pl.Int64).cum_sum(),
    )

    def lookup(frame: pl.LazyFrame, probe: pl.Expr, strategy: str, **found: str) -> pl.LazyFrame:
        return (
            frame.with_columns(_probe=probe)
            .sort("_probe")
            .join_asof(
                ranked.select(_probe="_key", **found),
                on="_probe",
                strategy=strategy,  # type: ignore[arg-type]
                check_sortedness=False,
            )
            .drop("_probe")
        )

    w = windows
    for bound, name in (
        ("window_start_ts_ms", "_n_start"),
        ("anchor_ts_ms", "_n_anchor"),
        ("window_end_ts_ms", "_n_end"),
    ):
        # candles with ts < bound: the running count at the last candle at or before bound - 1
        w = lookup(w, key(pl.col(bound) - 1), "backward", **{name: "rank", name + "_slots": "srank"})
        w = w.with_columns(pl.col(name).fill_null(0), pl.col(name + "_slots").fill_null(0))
    w = lookup(w, key(pl.col("window_start_ts_ms")), "forward", _first="_ts")
    return lookup(w, key(pl.col("window_end_ts_ms") - 1), "backward", _last="_ts")


def coverage(
    candles: FrameLike,
    alerts: FrameLike,
    *,
    interval: str | int,
    window: str | Window,
    chain: str = "solana",
    strict: bool = False,
    min_required_pre: int = 52,
    target_total: int = 5000,
) -> pl.LazyFrame:
    """One coverage row per alert (SPEC §4 columns), sorted by ``alert_id``.

    Counts only candles of ``chain`` when the candles have a ``chain`` column (as the export).

    >>> c = pl.DataFrame({"mint": ["m"] * 2, "ts_ms": [0, 60_000],
    ...     "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})
    >>> a = pl.DataFrame({"alert_id": ["x"], "mint": ["m"], "ts_ms": [60_000]})
    >>> coverage(c, a, interval="1m", window="pre1_post1").collect()["status"].item()
    'partial'
    """
    windows, cands, _ = _prepared(candles, alerts, interval, window, chain)
    return coverage_of(
        cands,
        windows,
        expected_total=parse_window(window).slots,
        strict=strict,
        min_required_pre=min_required_pre,
        target_total=target_total,
    )
