"""lakeslice.transforms against the brute-force reference (tests/support) and pinned cases."""

from __future__ import annotations

import datetime as dt
import hashlib

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import reference as ref
from support.data import COVERAGE_COLUMNS, OHLCV, SLICE_COLUMNS, candle

from lakeslice.spec import InputError, parse_interval
from lakeslice.transforms import (
    bucket_table,
    coverage,
    floor_to_interval,
    merge_windows,
    mint_bucket,
    slice_windows,
)

UTC = dt.timezone.utc
SOL = "So11111111111111111111111111111111111111112"
MINTS = [SOL, 'qu"ote', "it's", "tab\there", "émoji🚀", "日本", "a,b", "0123", "m"]
INTERVALS = [1, 15, 60, 300, 3600, 86400]
# aligned to every interval above (a multiple of 1d): realistic, zero and negative epochs
BASES = [0, 1_704_067_200_000, -86_400_000 * 3]

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------------------------
# strategies


@st.composite
def scenario(draw, *, off_grid: bool = False, with_source: bool | None = None):
    """Candles (with gaps, duplicate timestamps of different values and ver), alerts (overlapping,
    off the boundary, before/after the data), interval and window."""
    interval_s = draw(st.sampled_from(INTERVALS))
    width = interval_s * 1000
    base = draw(st.sampled_from(BASES))
    mints = draw(st.lists(st.sampled_from(MINTS), min_size=1, max_size=3, unique=True))
    has_ver = draw(st.booleans())
    has_source = draw(st.booleans()) if with_source is None else with_source
    small = st.sampled_from([0.0, 1.0, 2.0, 2.5])  # few values: ties on purpose
    candle = st.fixed_dictionaries(
        {
            "mint": st.sampled_from(mints),
            "slot": st.integers(-15, 40),
            "ver": st.integers(0, 2) if has_ver else st.just(0),
            "open": small,
            "high": small,
            "low": small,
            "close": small,
            "volume": small,
            "source": st.sampled_from(["s1", "s0", "ch:db.t"]) if has_source else st.just("frame"),
            # whole seconds so that ClickHouse DateTime (seconds) can carry it
            "off_s": st.integers(0, interval_s - 1) if off_grid and interval_s > 1 else st.just(0),
        }
    )
    raw = draw(st.lists(candle, max_size=40))
    # force exact duplicates of (mint, ts) with other values sometimes
    dups = draw(st.lists(st.sampled_from(raw), max_size=6)) if raw else []
    for d in dups:
        kind = draw(st.sampled_from(["values", "source", "ver"]))
        if kind == "values":  # same key, other prices: the greatest volume, close... wins
            redraw = draw(st.lists(st.sampled_from(OHLCV), min_size=1, max_size=5, unique=True))
            raw.append({**d, **{k: draw(small) for k in redraw}})
        elif kind == "source" and has_source:  # full tie but the label: smallest wins
            raw.append({**d, "source": draw(st.sampled_from(["s1", "s0", "ch:db.t"]))})
        else:  # another version with other values
            raw.append(
                {
                    **d,
                    "ver": draw(st.integers(0, 2)) if has_ver else 0,
                    "volume": draw(small),
                    "high": draw(small),
                }
            )
    candles = []
    for c in raw:
        c = dict(c)
        c["ts_ms"] = base + c.pop("slot") * width + c.pop("off_s") * 1000
        candles.append(c)
    candles = draw(st.permutations(candles))

    pre = draw(st.integers(0, 6))
    post = draw(st.integers(0, 6))
    alert = st.tuples(
        st.sampled_from(mints + ["nomatch"]),
        st.integers(-30, 55),  # slot: before, inside and after the data
        st.integers(0, width - 1),  # offset inside the interval
    )
    araw = draw(st.lists(alert, min_size=1, max_size=8))
    alerts = [
        {"alert_id": f"id{i:02d}", "mint": m, "ts_ms": base + k * width + off}
        for i, (m, k, off) in enumerate(araw)
    ]
    return {
        "interval_s": interval_s,
        "pre": pre,
        "post": post,
        "candles": candles,
        "alerts": alerts,
        "has_ver": has_ver,
        "has_source": has_source,
    }


def slice_frame(candles, interval_s, *, has_ver=True, has_source=True) -> pl.DataFrame:
    """The lake's slice columns: mint, ts Datetime(ms, UTC), interval_s Int32, ..."""
    data = {
        "mint": [c["mint"] for c in candles],
        "ts": pl.Series([c["ts_ms"] for c in candles], dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
        "interval_s": pl.Series([interval_s] * len(candles), dtype=pl.Int32),
        **{k: pl.Series([c[k] for c in candles], dtype=pl.Float64) for k in OHLCV},
    }
    if has_source:
        data["source"] = pl.Series([c["source"] for c in candles], dtype=pl.String)
    if has_ver:
        data["ver"] = pl.Series([c["ver"] for c in candles], dtype=pl.UInt64)
    return pl.DataFrame(data)


def source_frame(candles, interval_s, *, epoch_seconds=False, has_ver=True, has_source=True):
    """QuantBot ohlcv_candles columns: token_address, chain, timestamp (seconds), interval_seconds."""
    secs = pl.Series([c["ts_ms"] // 1000 for c in candles], dtype=pl.Int64)
    data = {
        "token_address": [c["mint"] for c in candles],
        "chain": ["solana"] * len(candles),
        "timestamp": secs  # epoch seconds as Int64 (may be negative)
        if epoch_seconds
        else (secs * 1000).cast(pl.Datetime("ms")).cast(pl.Datetime("us")),  # naive = UTC
        "interval_seconds": pl.Series([interval_s] * len(candles), dtype=pl.UInt32),
        **{k: pl.Series([c[k] for c in candles], dtype=pl.Float64) for k in OHLCV},
    }
    if has_source:
        data["source"] = [c["source"] for c in candles]
    if has_ver:
        data["ver"] = pl.Series([c["ver"] for c in candles], dtype=pl.UInt32)
    return pl.DataFrame(data)


def with_other_intervals(frame: pl.DataFrame, col: str, interval_s: int) -> pl.DataFrame:
    """Append noisy rows of another interval at the same mints/timestamps with huge ver/volume:
    if they are not dropped they win the dedup and show up in the output."""
    other = 7 if interval_s != 7 else 11
    noise = frame.with_columns(
        pl.lit(other).cast(frame.schema[col]).alias(col),
        pl.lit(999.0).alias("volume"),
    )
    if "ver" in noise.columns:
        noise = noise.with_columns(pl.lit(99).cast(frame.schema["ver"]).alias("ver"))
    return pl.concat([noise, frame]).sample(fraction=1.0, shuffle=True, seed=1)


def alerts_frame(alerts) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "alert_id": [a["alert_id"] for a in alerts],
            "mint": [a["mint"] for a in alerts],
            "ts_ms": pl.Series([a["ts_ms"] for a in alerts], dtype=pl.Int64),
        }
    )


def expected_slice(sc) -> list[tuple]:
    rows = ref.slice_rows(sc["candles"], sc["alerts"], sc["interval_s"], sc["pre"], sc["post"])
    return [
        (
            c["mint"],
            c["ts_ms"],
            sc["interval_s"],
            *(c[k] for k in OHLCV),
            c["source"],
            ref.bucket(c["mint"]),
        )
        for c in rows
    ]


def got_slice(frame: pl.DataFrame) -> list[tuple]:
    return frame.with_columns(pl.col("ts").dt.epoch("ms")).rows()


SLICE_DTYPES = {
    "mint": pl.String,
    "ts": pl.Datetime("ms", "UTC"),
    "interval_s": pl.Int32,
    **{k: pl.Float64 for k in OHLCV},
    "source": pl.String,
    "mint_bucket": pl.String,
}


def check_slice_shape(out: pl.DataFrame) -> None:
    assert out.columns == [*SLICE_COLUMNS, "mint_bucket"]
    assert dict(out.schema) == SLICE_DTYPES
    keys = out.select("mint", "ts").rows()
    assert keys == sorted(keys), "rows not sorted by (mint, ts)"
    assert len(set(keys)) == len(keys), "more than one row per (mint, ts)"


# --------------------------------------------------------------------------------------------
# property tests: slice_windows


@SETTINGS
@given(sc=scenario(off_grid=True))
def test_slice_windows_slice_columns_matches_reference(sc):
    frame = slice_frame(sc["candles"], sc["interval_s"], has_ver=sc["has_ver"], has_source=sc["has_source"])
    frame = with_other_intervals(frame, "interval_s", sc["interval_s"])
    window = f"pre{sc['pre']}_post{sc['post']}"
    lf = slice_windows(frame, alerts_frame(sc["alerts"]), interval=sc["interval_s"], window=window)
    assert isinstance(lf, pl.LazyFrame)
    out = lf.collect()
    check_slice_shape(out)
    assert got_slice(out) == expected_slice(sc)


@SETTINGS
@given(sc=scenario(off_grid=True), epoch_seconds=st.booleans(), lazy=st.booleans())
def test_slice_windows_source_columns_matches_reference(sc, epoch_seconds, lazy):
    frame = source_frame(
        sc["candles"],
        sc["interval_s"],
        epoch_seconds=epoch_seconds,
        has_ver=sc["has_ver"],
        has_source=sc["has_source"],
    )
    frame = with_other_intervals(frame, "interval_seconds", sc["interval_s"])
    alerts = alerts_frame(sc["alerts"])
    if lazy:
        frame, alerts = frame.lazy(), alerts.lazy()
    out = slice_windows(
        frame, alerts, interval=ref_interval_text(sc["interval_s"]), window=f"pre{sc['pre']}_post{sc['post']}"
    ).collect()
    check_slice_shape(out)
    assert got_slice(out) == expected_slice(sc)


def ref_interval_text(seconds: int) -> str:
    for unit, w in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % w == 0:
            return f"{seconds // w}{unit}"
    return f"{seconds}s"


@SETTINGS
@given(sc=scenario(), seed=st.integers(0, 2**16))
def test_slice_windows_independent_of_row_order(sc, seed):
    frame = slice_frame(sc["candles"], sc["interval_s"])
    alerts = alerts_frame(sc["alerts"])
    w = f"pre{sc['pre']}_post{sc['post']}"
    a = slice_windows(frame, alerts, interval=sc["interval_s"], window=w).collect()
    b = slice_windows(
        frame.sample(fraction=1.0, shuffle=True, seed=seed),
        alerts.sample(fraction=1.0, shuffle=True, seed=seed),
        interval=sc["interval_s"],
        window=w,
    ).collect()
    assert a.equals(b)


# --------------------------------------------------------------------------------------------
# property tests: coverage


def ref_coverage_tuples(sc, **kw):
    rows = ref.coverage_rows(sc["candles"], sc["alerts"], sc["interval_s"], sc["pre"], sc["post"], **kw)
    return [tuple(r[c] for c in COVERAGE_COLUMNS) for r in rows]


COVERAGE_DTYPES = {
    "alert_id": pl.String,
    "mint": pl.String,
    **{c: pl.Int64 for c in COVERAGE_COLUMNS[2:13]},
    "status": pl.String,
    "kept": pl.Boolean,
}


def check_coverage_shape(out: pl.DataFrame, n_alerts: int) -> None:
    assert out.columns == COVERAGE_COLUMNS
    assert dict(out.schema) == COVERAGE_DTYPES
    assert out.height == n_alerts
    assert out["alert_id"].to_list() == sorted(out["alert_id"].to_list())


@SETTINGS
@given(sc=scenario(off_grid=True), source_cols=st.booleans())
def test_coverage_matches_reference(sc, source_cols):
    if source_cols:
        frame = source_frame(sc["candles"], sc["interval_s"], has_ver=sc["has_ver"])
        frame = with_other_intervals(frame, "interval_seconds", sc["interval_s"])
    else:
        frame = slice_frame(sc["candles"], sc["interval_s"], has_ver=sc["has_ver"])
        frame = with_other_intervals(frame, "interval_s", sc["interval_s"])
    alerts = alerts_frame(sc["alerts"]).sample(fraction=1.0, shuffle=True, seed=3)
    out = coverage(
        frame, alerts, interval=sc["interval_s"], window=f"pre{sc['pre']}_post{sc['post']}"
    ).collect()
    check_coverage_shape(out, len(sc["alerts"]))
    assert out.rows() == ref_coverage_tuples(sc)


@SETTINGS
@given(sc=scenario(), min_pre=st.integers(0, 7), target=st.integers(0, 14))
def test_coverage_strict_matches_reference(sc, min_pre, target):
    frame = slice_frame(sc["candles"], sc["interval_s"], has_ver=sc["has_ver"])
    out = coverage(
        frame,
        alerts_frame(sc["alerts"]),
        interval=sc["interval_s"],
        window=f"pre{sc['pre']}_post{sc['post']}",
        strict=True,
        min_required_pre=min_pre,
        target_total=target,
    ).collect()
    check_coverage_shape(out, len(sc["alerts"]))
    assert out.rows() == ref_coverage_tuples(sc, strict=True, min_required_pre=min_pre, target_total=target)


@SETTINGS
@given(sc=scenario())
def test_coverage_counts_agree_with_slice(sc):
    """available_total of an alert == slice rows inside its window (same dedup, same bounds)."""
    frame = slice_frame(sc["candles"], sc["interval_s"])
    alerts = alerts_frame(sc["alerts"])
    w = f"pre{sc['pre']}_post{sc['post']}"
    cov = coverage(frame, alerts, interval=sc["interval_s"], window=w).collect()
    sl = slice_windows(frame, alerts, interval=sc["interval_s"], window=w).collect()
    keys = sl.select("mint", pl.col("ts").dt.epoch("ms")).rows()
    for r in cov.iter_rows(named=True):
        n = sum(1 for m, t in keys if m == r["mint"] and r["window_start_ts_ms"] <= t < r["window_end_ts_ms"])
        assert n == r["available_total"]
        assert r["available_pre"] + r["available_post"] == r["available_total"]


# --------------------------------------------------------------------------------------------
# property tests: merge_windows


@SETTINGS
@given(
    wins=st.lists(
        st.tuples(st.sampled_from(MINTS[:3]), st.integers(-20, 20), st.integers(0, 8)),
        min_size=0,
        max_size=12,
    )
)
def test_merge_windows_disjoint_union_preserved(wins):
    rows = [(m, s, s + n) for m, s, n in wins if n > 0]
    frame = pl.DataFrame(
        {
            "mint": [r[0] for r in rows],
            "window_start_ts_ms": pl.Series([r[1] for r in rows], dtype=pl.Int64),
            "window_end_ts_ms": pl.Series([r[2] for r in rows], dtype=pl.Int64),
        },
        schema={"mint": pl.String, "window_start_ts_ms": pl.Int64, "window_end_ts_ms": pl.Int64},
    )
    out = merge_windows(frame.sample(fraction=1.0, shuffle=True, seed=7)).collect()
    assert out.columns == ["mint", "start_ms", "end_ms"]
    got = out.rows()
    assert got == sorted(got)
    for (m1, _, e1), (m2, s2, _) in zip(got, got[1:], strict=False):
        if m1 == m2:
            assert e1 < s2, "ranges overlap or touch: not merged"
    assert all(s < e for _, s, e in got)
    assert ref.union_points(got) == ref.union_points(rows)


# --------------------------------------------------------------------------------------------
# pinned: buckets


@pytest.mark.parametrize(
    "mint", [SOL, "a\"b'c\td🚀", "日本語", "", "x" * 200, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"]
)
def test_mint_bucket_matches_hashlib(mint):
    want = hashlib.sha1(mint.encode("utf-8")).hexdigest()[:2]
    assert pl.select(mint_bucket(pl.lit(mint))).item() == want


def test_mint_bucket_known_values_and_frame():
    assert hashlib.sha1(SOL.encode()).hexdigest().startswith("35")
    df = pl.DataFrame({"m": [SOL, "tab\there", SOL, 'q"', "é"]})
    got = df.select(mint_bucket("m"))["m"].to_list()
    assert got == [hashlib.sha1(m.encode()).hexdigest()[:2] for m in df["m"]]
    assert got[0] == "35"
    assert all(len(b) == 2 and b == b.lower() for b in got)


# --------------------------------------------------------------------------------------------
# pinned: window arithmetic


def test_window_pre52_post4948_at_1m():
    anchor = 1_704_067_200_000 + 17 * 60_000
    alert_ts = anchor + 42_123  # inside the anchor minute, off the boundary
    candles = slice_frame(
        [candle(SOL, anchor + k * 60_000) for k in range(-60, 5000)],
        60,
    )
    alerts = pl.DataFrame({"alert_id": ["a"], "mint": [SOL], "ts_ms": [alert_ts]})
    cov = coverage(candles, alerts, interval="1m", window="pre52_post4948").collect().row(0, named=True)
    assert cov["anchor_ts_ms"] == anchor
    assert cov["window_start_ts_ms"] == anchor - 52 * 60_000
    assert cov["window_end_ts_ms"] == anchor + 4949 * 60_000
    assert cov["expected_total"] == 5001
    assert (cov["available_pre"], cov["available_post"]) == (52, 4949)  # post has the anchor
    assert cov["status"] == "complete" and cov["missing"] == 0
    assert cov["first_ts_ms"] == anchor - 52 * 60_000
    assert cov["last_ts_ms"] == anchor + 4948 * 60_000
    sl = slice_windows(candles, alerts, interval="1m", window="pre52_post4948").collect()
    assert sl.height == 5001
    assert sl["ts"][0] == dt.datetime.fromtimestamp((anchor - 52 * 60_000) / 1000, UTC)
    assert sl["ts"][-1] == dt.datetime.fromtimestamp((anchor + 4948 * 60_000) / 1000, UTC)

    # strict mode with the defaults: 52 pre and 5001 >= 5000 keeps it; a hole before does not
    kept = coverage(candles, alerts, interval="1m", window="pre52_post4948", strict=True)
    assert kept.collect()["kept"].to_list() == [True]
    holed = candles.filter(pl.col("ts") != pl.col("ts").min().dt.offset_by("10m"))  # anchor-50m
    row = coverage(holed, alerts, interval="1m", window="pre52_post4948", strict=True).collect()
    assert row.select("available_pre", "available_total", "status", "kept", "missing").row(0) == (
        51,
        5000,
        "partial",
        False,
        1,
    )


def test_pre0_post0_is_the_anchor_candle_only():
    c = slice_frame(
        [candle("m", t, volume=float(t)) for t in (-60_000, 0, 60_000)],
        60,
    )
    a = pl.DataFrame({"alert_id": ["x", "y"], "mint": ["m", "m"], "ts_ms": [59_999, -1]})
    sl = slice_windows(c, a, interval="1m", window="pre0_post0").collect()
    assert sl["ts"].dt.epoch("ms").to_list() == [-60_000, 0]
    cov = coverage(c, a, interval="1m", window="pre0_post0").collect()
    assert cov.select(
        "alert_id",
        "anchor_ts_ms",
        "window_start_ts_ms",
        "window_end_ts_ms",
        "available_pre",
        "available_post",
        "status",
    ).rows() == [
        ("x", 0, 0, 60_000, 0, 1, "complete"),
        ("y", -60_000, -60_000, 0, 0, 1, "complete"),
    ]


def test_coverage_insufficient_has_null_first_last():
    c = slice_frame(
        [candle("m", 0)],
        60,
    )
    a = pl.DataFrame({"alert_id": ["b", "a"], "mint": ["m", "other"], "ts_ms": [10 * 60_000, 0]})
    cov = coverage(c, a, interval="1m", window="pre2_post2").collect()
    assert cov["alert_id"].to_list() == ["a", "b"]
    for r in cov.iter_rows(named=True):
        assert r["status"] == "insufficient" and r["available_total"] == 0
        assert r["first_ts_ms"] is None and r["last_ts_ms"] is None
        assert r["missing"] == 5 and r["kept"] is True


def test_coverage_empty_candles():
    c = slice_frame([], 60)
    a = pl.DataFrame({"alert_id": ["a"], "mint": ["m"], "ts_ms": [0]})
    cov = coverage(c, a, interval="1m", window="pre1_post1").collect()
    assert cov.select("available_total", "status", "missing").row(0) == (0, "insufficient", 3)
    assert slice_windows(c, a, interval="1m", window="pre1_post1").collect().height == 0


def test_alerts_without_ids_are_normalized():
    """Alerts given as mint + ts (ISO) get derived ids, as read_alerts would."""
    c = slice_frame(
        [candle("m", 60_000)],
        60,
    )
    a = pl.DataFrame({"token_address": ["m"], "ts": ["1970-01-01T00:01:30Z"]})
    cov = coverage(c, a, interval="1m", window="pre0_post0").collect()
    assert cov["alert_id"].item() == hashlib.sha256(b"m|90000").hexdigest()[:16]
    assert cov.select("anchor_ts_ms", "status").row(0) == (60_000, "complete")


def test_dedup_rule_pinned():
    rows = [
        # same (mint, ts): ver wins over volume; then volume; then source label
        {"mint": "m", "ts_ms": 0, "ver": 1, "volume": 1.0, "source": "z"},
        {"mint": "m", "ts_ms": 0, "ver": 0, "volume": 9.0, "source": "a"},
        {"mint": "m", "ts_ms": 60_000, "ver": 0, "volume": 2.0, "source": "z"},
        {"mint": "m", "ts_ms": 60_000, "ver": 0, "volume": 1.0, "source": "a"},
        {"mint": "m", "ts_ms": 120_000, "ver": 0, "volume": 1.0, "source": "b"},
        {"mint": "m", "ts_ms": 120_000, "ver": 0, "volume": 1.0, "source": "a"},
    ]
    rows = [{"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, **r} for r in rows]
    for order in (rows, rows[::-1]):
        c = slice_frame(order, 60)
        a = pl.DataFrame({"alert_id": ["a"], "mint": ["m"], "ts_ms": [0]})
        sl = slice_windows(c, a, interval="1m", window="pre0_post2").collect()
        assert sl.select("volume", "source").rows() == [(1.0, "z"), (2.0, "z"), (1.0, "a")]


def test_candles_missing_columns_raise_input_error():
    a = pl.DataFrame({"alert_id": ["a"], "mint": ["m"], "ts_ms": [0]})
    with pytest.raises(InputError, match="mint"):
        slice_windows(pl.DataFrame({"ts": [0]}), a, interval="1m", window="pre0_post0").collect()
    with pytest.raises(InputError, match="ts"):
        slice_windows(pl.DataFrame({"mint": ["m"]}), a, interval="1m", window="pre0_post0")


# --------------------------------------------------------------------------------------------
# pinned: floor_to_interval


@pytest.mark.parametrize(
    "value, interval, want",
    [
        (90_500, "1m", 60_000),
        (60_000, "1m", 60_000),
        (59_999, "1m", 0),
        (0, "1s", 0),
        (-1, "1m", -60_000),
        (-60_000, "1m", -60_000),
        (-60_001, "1m", -120_000),
        (1_704_067_230_123, "1h", 1_704_067_200_000),
        (1_704_110_400_000 + 5, "1d", 1_704_067_200_000),  # noon -> midnight UTC
        (1_704_067_230_123, 15, 1_704_067_230_000 - 0),
        (1_704_067_244_999, "15s", 1_704_067_230_000),
    ],
)
def test_floor_to_interval_ints(value, interval, want):
    assert pl.select(floor_to_interval(pl.lit(value, pl.Int64), interval)).item() == want
    assert want == ref.anchor(value, parse_interval(interval))


def test_floor_to_interval_int_column_and_other_int_types():
    df = pl.DataFrame({"t": pl.Series([90_500, -1, None], dtype=pl.Int32)})
    out = df.lazy().select(floor_to_interval("t", "1m"))
    got = out.collect()
    assert got["t"].to_list() == [60_000, -60_000, None]
    assert out.collect_schema()["t"] == got.schema["t"]


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC"])
def test_floor_to_interval_datetimes_keep_unit_and_zone(unit, tz):
    vals = [
        dt.datetime(2024, 1, 1, 10, 37, 15, 123456),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999500),
        dt.datetime(2024, 1, 1, 10, 0, 0),
    ]
    s = pl.Series("t", vals, dtype=pl.Datetime(unit))
    if tz:
        s = s.dt.replace_time_zone(tz)
    out = pl.DataFrame({"t": s}).lazy().select(floor_to_interval("t", "1h"))
    got = out.collect()["t"]
    assert got.dtype == pl.Datetime(unit, tz)
    assert out.collect_schema()["t"] == pl.Datetime(unit, tz)
    naive = got.dt.replace_time_zone(None) if tz else got
    assert naive.to_list() == [
        dt.datetime(2024, 1, 1, 10),
        dt.datetime(1969, 12, 31, 23),
        dt.datetime(2024, 1, 1, 10),
    ]
    got15 = pl.select(floor_to_interval(pl.lit(s), "15s")).to_series()
    naive = got15.dt.replace_time_zone(None) if tz else got15
    assert naive.to_list() == [
        dt.datetime(2024, 1, 1, 10, 37, 15),
        dt.datetime(1969, 12, 31, 23, 59, 45),
        dt.datetime(2024, 1, 1, 10),
    ]


def test_floor_to_interval_non_utc_zone_floors_the_instant():
    """An hour floor of 05:30 New York (10:30 UTC) is 05:00 New York, the same instant as
    10:00 UTC: epoch based, zone kept."""
    utc = pl.Series("t", [dt.datetime(2024, 1, 1, 10, 30, 15, tzinfo=UTC)])
    ny = utc.dt.convert_time_zone("America/New_York")
    got = pl.select(floor_to_interval(pl.lit(ny), "1h")).to_series()
    assert got.dtype == ny.dtype
    assert got.dt.epoch("ms").to_list() == [1_704_103_200_000]


def test_floor_to_interval_rejects_floats():
    # floats are neither epoch ms nor Datetime: an error, never a silently floored float
    with pytest.raises((InputError, pl.exceptions.PolarsError)):
        pl.select(floor_to_interval(pl.lit(1.5), "1m"))


def test_merge_windows_pinned_touching_and_nested():
    w = pl.DataFrame(
        {
            "mint": ["a", "a", "a", "a", "b", "b", "a"],
            "window_start_ts_ms": [10, 0, 21, 22, 5, 5, -5],
            "window_end_ts_ms": [20, 10, 30, 25, 6, 6, -1],
            "other": [1, 2, 3, 4, 5, 6, 7],
        }
    )
    # [0,10) and [10,20) touch: one range; [22,25) is nested in [21,30); duplicates collapse
    assert merge_windows(w).collect().rows() == [("a", -5, -1), ("a", 0, 20), ("a", 21, 30), ("b", 5, 6)]


def test_coverage_status_counts_slots_not_candles():
    """Two candles in one slot (off the interval grid) do not fill an empty slot (SPEC §4)."""
    rows = [candle("m", t) for t in (0, 30_000, 60_000)]
    a = pl.DataFrame({"alert_id": ["a"], "mint": ["m"], "ts_ms": [0]})
    cov = coverage(slice_frame(rows, 60), a, interval="1m", window="pre0_post2").collect()
    # slots [0,60s) [60s,120s) [120s,180s): the last is empty
    assert cov.select("available_total", "missing", "status").row(0) == (3, 0, "partial")
    full = rows + [{**rows[0], "ts_ms": 120_000}]
    cov = coverage(slice_frame(full, 60), a, interval="1m", window="pre0_post2").collect()
    assert cov.select("available_total", "missing", "status").row(0) == (4, -1, "complete")


def test_coverage_slot_counts_are_per_mint():
    """A mint's filled slots never borrow candles of the mint sorted before it."""
    rows = [candle(m, t) for m, t in (("a", 0), ("a", 60_000), ("b", 0))]
    a = pl.DataFrame({"alert_id": ["x"], "mint": ["b"], "ts_ms": [0]})
    cov = coverage(slice_frame(rows, 60), a, interval="1m", window="pre0_post2").collect()
    assert cov.select("available_total", "status").row(0) == (1, "partial")


def test_dedup_rule_key_order_close_before_high_before_low_before_open():
    base = {"mint": "m", "ts_ms": 0, "ver": 0, "volume": 1.0, "source": "s"}
    pairs = [  # (winner, loser): each differs from the next key on in the opposite direction
        (
            {"close": 2.0, "high": 1.0, "low": 1.0, "open": 1.0},
            {"close": 1.0, "high": 2.0, "low": 2.0, "open": 2.0},
        ),
        (
            {"close": 1.0, "high": 2.0, "low": 1.0, "open": 1.0},
            {"close": 1.0, "high": 1.0, "low": 2.0, "open": 2.0},
        ),
        (
            {"close": 1.0, "high": 1.0, "low": 2.0, "open": 1.0},
            {"close": 1.0, "high": 1.0, "low": 1.0, "open": 2.0},
        ),
        (
            {"close": 1.0, "high": 1.0, "low": 1.0, "open": 2.0},
            {"close": 1.0, "high": 1.0, "low": 1.0, "open": 1.0},
        ),
    ]
    a = pl.DataFrame({"alert_id": ["a"], "mint": ["m"], "ts_ms": [0]})
    for win, lose in pairs:
        for order in ([win, lose], [lose, win]):
            c = slice_frame([{**base, **r} for r in order], 60)
            got = slice_windows(c, a, interval="1m", window="pre0_post0").collect()
            assert got.select("open", "high", "low", "close").row(0) == (
                win["open"],
                win["high"],
                win["low"],
                win["close"],
            )
    # volume beats close; ver beats volume
    c = slice_frame(
        [
            {**base, "ver": 1, "volume": 0.0, "open": 0.0, "high": 0.0, "low": 0.0, "close": 0.0},
            {**base, "volume": 5.0, "open": 9.0, "high": 9.0, "low": 9.0, "close": 9.0},
        ],
        60,
    )
    assert slice_windows(c, a, interval="1m", window="pre0_post0").collect()["volume"].item() == 0.0


def test_slice_windows_lets_filters_reach_the_candles():
    """Hashing mints never stands between a filter and the candle scan (no barrier in the plan)."""
    c = slice_frame([candle("m", t) for t in (0, 60_000, 120_000)], 60)
    a = pl.DataFrame({"alert_id": ["a"], "mint": ["m"], "ts_ms": [65_000]})
    plan = slice_windows(c, a, interval="1m", window="pre1_post0").filter(pl.col("volume") > 0).explain()
    assert plan.index('col("volume") > 0') > plan.index("JOIN"), plan


def test_bucket_table_matches_hashlib():
    mints = ["a", SOL, "é", "tab\there", "a"]
    got = bucket_table(pl.LazyFrame({"mint": mints})).sort("mint").collect().rows()
    assert got == sorted({(m, hashlib.sha1(m.encode()).hexdigest()[:2]) for m in mints})
