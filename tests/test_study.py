"""lakeslice.study against brute-force references in plain Python over lists (hypothesis).

scan_windows is checked on real sealed runs exported from a Parquet source; event_returns and
event_profile on small frames. The references below restate the docstrings' rules slot by slot.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import reference as ref

import lakeslice as ls
from lakeslice.spec import InputError
from lakeslice.study import event_profile, event_returns, scan_windows

UTC = dt.timezone.utc
BASE_MS = 1_704_067_200_000  # 2024-01-01, a multiple of every interval used here
MINTS = ["So11111111111111111111111111111111111111112", "it's", "émoji🚀", "0123"]
OHLCV = ("open", "high", "low", "close", "volume")

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --------------------------------------------------------------------------------------------
# scan_windows on sealed runs


@st.composite
def lakes(draw):
    interval_s = draw(st.sampled_from([60, 300]))
    width = interval_s * 1000
    slots = st.tuples(st.sampled_from(MINTS), st.integers(0, 40))
    keys = draw(st.sets(slots, min_size=0, max_size=60))
    candles = [
        {
            "mint": m,
            "ts_ms": BASE_MS + i * width,
            "open": 1.0 + i,
            "high": 2.0 + i,
            "low": 0.5 + i,
            "close": 1.5 + i + len(m),
            "volume": float(i * 10 + len(m)),
        }
        for m, i in sorted(keys)
    ]
    n_alerts = draw(st.integers(1, 6))
    alerts = [
        {
            "alert_id": f"a{j}",
            "mint": draw(st.sampled_from([*MINTS, "NoCandlesMint"])),
            "ts_ms": BASE_MS + draw(st.integers(-3 * width, 43 * width)),
        }
        for j in range(n_alerts)
    ]
    pre, post = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    return interval_s, pre, post, candles, alerts


def _export(tmp: Path, interval_s, pre, post, candles, alerts, **kwargs):
    source = tmp / "candles.parquet"
    pl.DataFrame(
        {
            "token_address": [c["mint"] for c in candles],
            "chain": ["solana"] * len(candles),
            "timestamp": [dt.datetime.fromtimestamp(c["ts_ms"] / 1000, UTC) for c in candles],
            "interval_seconds": [interval_s] * len(candles),
            **{k: [c[k] for c in candles] for k in OHLCV},
        },
        schema_overrides={
            "timestamp": pl.Datetime("us", "UTC"),
            "interval_seconds": pl.UInt32,
            **{k: pl.Float64 for k in OHLCV},
        },
    ).write_parquet(source)
    alerts_file = tmp / "alerts.csv"
    pl.DataFrame(alerts, schema={"alert_id": pl.String, "mint": pl.String, "ts_ms": pl.Int64}).write_csv(
        alerts_file
    )
    interval = {60: "1m", 300: "5m"}[interval_s]
    return ls.export_run_slices(
        str(alerts_file),
        interval=interval,
        window=f"pre{pre}_post{post}",
        source=f"parquet://{source}",
        run_id="study",
        data_root=tmp / "root",
        overwrite=True,
        **kwargs,
    )


def ref_windows(candles, alerts, interval_s, pre, post, *, dense, statuses=None, kept=None):
    """Slot by slot: every k of every (kept) alert, the candle at that slot or nothing."""
    width = interval_s * 1000
    cov = {c["alert_id"]: c for c in ref.coverage_rows(candles, alerts, interval_s, pre, post)}
    at = {(c["mint"], c["ts_ms"]): c for c in candles}
    rows = []
    for a in sorted(alerts, key=lambda a: a["alert_id"]):
        status = cov[a["alert_id"]]["status"]
        if statuses is not None and status not in statuses:
            continue
        if kept is not None and a["alert_id"] not in kept:
            continue
        anchor = ref.anchor(a["ts_ms"], interval_s)
        for k in range(-pre, post + 1):
            slot = anchor + k * width
            c = at.get((a["mint"], slot))
            if c is None and not dense:
                continue
            rows.append(
                (a["alert_id"], a["mint"], status, a["ts_ms"], anchor, k, slot)
                + tuple(c[x] if c else None for x in OHLCV)
            )
    return rows


def got_windows(lf: pl.LazyFrame) -> list[tuple]:
    df = lf.collect()
    assert df.columns == [
        "alert_id",
        "mint",
        "status",
        "alert_ts_ms",
        "anchor_ts_ms",
        "k",
        "ts",
        *OHLCV,
    ]
    return [
        r[:6] + (int(r[6].timestamp() * 1000),) + r[7:]
        for r in df.rows()  # test-side conversion of a small result
    ]


@SETTINGS
@given(lake=lakes(), dense=st.booleans())
def test_scan_windows_matches_slot_by_slot_reference(tmp_path_factory, lake, dense):
    interval_s, pre, post, candles, alerts = lake
    tmp = tmp_path_factory.mktemp("sw")
    run = _export(tmp, interval_s, pre, post, candles, alerts)
    want = ref_windows(candles, alerts, interval_s, pre, post, dense=dense)
    assert got_windows(scan_windows(run.run_dir, dense=dense)) == want
    if dense:
        assert len(want) == len(alerts) * (pre + 1 + post)


@SETTINGS
@given(lake=lakes(), statuses=st.sets(st.sampled_from(["complete", "partial", "insufficient"]), min_size=1))
def test_scan_windows_status_filter(tmp_path_factory, lake, statuses):
    interval_s, pre, post, candles, alerts = lake
    run = _export(tmp_path_factory.mktemp("st"), interval_s, pre, post, candles, alerts)
    chosen = sorted(statuses)
    want = ref_windows(candles, alerts, interval_s, pre, post, dense=True, statuses=statuses)
    assert got_windows(scan_windows(run, dense=True, status=chosen)) == want
    if len(chosen) == 1:
        assert got_windows(scan_windows(run, dense=True, status=chosen[0])) == want


def test_scan_windows_strict_run_shows_kept_alerts_only(tmp_path):
    width = 60_000
    candles = [{"mint": "m", "ts_ms": BASE_MS + i * width, **{k: 1.0 + i for k in OHLCV}} for i in range(20)]
    alerts = [
        {"alert_id": "full", "mint": "m", "ts_ms": BASE_MS + 10 * width},
        {"alert_id": "edge", "mint": "m", "ts_ms": BASE_MS + 1 * width},  # 1 candle before
    ]
    run = _export(
        tmp_path, 60, 3, 3, candles, alerts, strict_coverage=True, min_required_pre=3, target_total=7
    )
    got = scan_windows(run, dense=True).collect()
    assert got["alert_id"].unique().to_list() == ["full"]
    want = ref_windows(candles, alerts, 60, 3, 3, dense=True, kept={"full"})
    assert got_windows(scan_windows(run, dense=True)) == want


def test_scan_windows_refuses_unknown_status_and_unsealed(tmp_path):
    with pytest.raises(InputError, match="'done'"):
        scan_windows("fixtures", status=["complete", "done"])
    with pytest.raises(ls.RunError, match="unsealed"):
        scan_windows(tmp_path)


def test_scan_windows_is_the_public_one():
    assert ls.scan_windows is scan_windows
    assert {"scan_windows", "event_returns", "event_profile"} <= set(ls.__all__)


# --------------------------------------------------------------------------------------------
# event_returns


PRICES = st.one_of(
    st.none(),
    st.sampled_from([0.0, -1.0, math.nan, math.inf]),
    st.floats(0.01, 1000.0, allow_nan=False),
)


@st.composite
def window_frames(draw):
    rows = []
    for alert in ("a", "b", "c", "d")[: draw(st.integers(1, 4))]:
        ks = draw(st.sets(st.integers(-5, 5), max_size=8))
        rows += [(alert, k, draw(PRICES)) for k in sorted(ks)]
    return rows


def ref_returns(rows, base_k, kind):
    """Per alert: the usable price at the greatest k <= base_k; each row's return against it."""

    def usable(p):
        return p is not None and math.isfinite(p) and p > 0

    base = {}
    for alert, k, p in rows:
        if usable(p) and k <= base_k and (alert not in base or k > base[alert][0]):
            base[alert] = (k, p)
    out = []
    for alert, k, p in rows:
        bk, bp = base.get(alert, (None, None))
        if bp is None or not usable(p):
            r = None
        else:
            r = math.log(p / bp) if kind == "log" else p / bp - 1.0
        out.append((alert, k, bk, bp, r))
    return out


def frame(rows):
    return pl.LazyFrame(
        rows, schema={"alert_id": pl.String, "k": pl.Int32, "close": pl.Float64}, orient="row"
    )


def close(a, b, rel=1e-9, abs_=1e-12):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


@settings(max_examples=200, deadline=None)
@given(rows=window_frames(), base_k=st.integers(-3, 3), kind=st.sampled_from(["log", "simple"]))
def test_event_returns_matches_reference(rows, base_k, kind):
    got = event_returns(frame(rows), base_k=base_k, kind=kind).collect()
    assert got.columns == ["alert_id", "k", "close", "base_k", "base_price", "ret"]
    want = ref_returns(rows, base_k, kind)
    assert len(got) == len(want)  # no alert is dropped, with or without a base price
    for g, w in zip(got.select("alert_id", "k", "base_k", "base_price", "ret").rows(), want, strict=True):
        assert g[:4] == w[:4]
        assert close(g[4], w[4]), (g, w)


def test_event_returns_other_price_column_and_errors():
    w = pl.DataFrame({"alert_id": ["x", "x"], "k": [0, 3], "open": [2.0, 3.0]})
    assert event_returns(w, price="open", kind="simple").collect()["ret"].to_list() == [0.0, 0.5]
    with pytest.raises(InputError, match="'close'"):
        event_returns(w)
    with pytest.raises(InputError, match="'pct'"):
        event_returns(w, price="open", kind="pct")


# --------------------------------------------------------------------------------------------
# event_profile


def quantile_linear(xs, q):
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ref_profile(rows, by):
    """rows: (label, alert_id, k, ret or None, has_base)."""
    out = {}
    groups = sorted({(r[0] if by else None, r[2]) for r in rows}, key=lambda g: (g[0] or "", g[1]))
    for label, k in groups:
        xs = [r[3] for r in rows if (not by or r[0] == label) and r[2] == k and r[3] is not None]
        alerts = {r[1] for r in rows if not by or r[0] == label}
        no_base = sum(1 for a in alerts if not any(r[4] for r in rows if r[1] == a))
        n = len(xs)
        std = statistics.stdev(xs) if n > 1 else None
        out[(label, k)] = {
            "n": n,
            "mean": statistics.fmean(xs) if n else None,
            "median": statistics.median(xs) if n else None,
            "std": std,
            "se": std / math.sqrt(n) if std is not None else None,
            **{
                f"q{round(q * 100):02d}": quantile_linear(xs, q) if n else None
                for q in (0.05, 0.25, 0.75, 0.95)
            },
            "n_no_base": no_base,
        }
    return out


@st.composite
def return_frames(draw):
    rows = []
    for i in range(draw(st.integers(1, 8))):
        alert = f"a{i}"
        label = draw(st.sampled_from(["x", "y"]))  # a column of the alert
        has_base = draw(st.booleans())
        for k in sorted(draw(st.sets(st.integers(-2, 2), min_size=1, max_size=5))):
            value = draw(st.one_of(st.none(), st.floats(-1.0, 1.0))) if has_base else None
            rows.append((label, alert, k, value, has_base))
    return rows


@settings(max_examples=150, deadline=None)
@given(rows=return_frames(), by=st.booleans())
def test_event_profile_matches_reference(rows, by):
    lf = pl.LazyFrame(
        [(lab, a, k, r, 1.0 if hb else None) for lab, a, k, r, hb in rows],
        schema={
            "label": pl.String,
            "alert_id": pl.String,
            "k": pl.Int32,
            "ret": pl.Float64,
            "base_price": pl.Float64,
        },
        orient="row",
    )
    got = event_profile(lf, by="label" if by else None).collect()
    want = ref_profile(rows, by)
    keys = [((r["label"] if by else None), r["k"]) for r in got.iter_rows(named=True)]
    assert keys == list(want)  # sorted by label then k, one row per group
    for r in got.iter_rows(named=True):
        w = want[((r["label"] if by else None), r["k"])]
        assert r["n"] == w["n"] and r["n_no_base"] == w["n_no_base"]
        for stat in ("mean", "median", "std", "se", "q05", "q25", "q75", "q95"):
            assert close(r[stat], w[stat], rel=1e-9, abs_=1e-12), (stat, r, w)


def test_event_profile_on_a_run_counts_alerts_without_base(tmp_path):
    """End to end: an alert whose window starts after base_k has no base and is reported."""
    width = 60_000
    candles = [{"mint": "m", "ts_ms": BASE_MS + i * width, **{k: 10.0 + i for k in OHLCV}} for i in range(10)]
    alerts = [
        {"alert_id": "early", "mint": "m", "ts_ms": BASE_MS - 5 * width},  # candles only from k=5
        {"alert_id": "mid", "mint": "m", "ts_ms": BASE_MS + 4 * width},
    ]
    run = _export(tmp_path, 60, 2, 6, candles, alerts)
    profile = event_profile(event_returns(scan_windows(run, dense=True), kind="simple")).collect()
    assert profile["k"].to_list() == list(range(-2, 7))
    assert set(profile["n_no_base"].to_list()) == {1}
    assert profile["n"].to_list() == [1] * 8 + [0]  # "mid" has candles up to i=9 (k=5), none at k=6
    assert profile.filter(pl.col("k") == 2)["mean"].item() == pytest.approx(2 / 14)
    # with base_k=6 'early' (candles at k=5, 6) has a base too
    later = event_profile(event_returns(scan_windows(run), kind="simple", base_k=6)).collect()
    assert set(later["n_no_base"].to_list()) == {0}


@settings(max_examples=60, deadline=None)
@given(rows=return_frames(), seed=st.randoms(use_true_random=False))
def test_event_profile_bits_do_not_depend_on_row_order(rows, seed):
    schema = {
        "label": pl.String,
        "alert_id": pl.String,
        "k": pl.Int32,
        "ret": pl.Float64,
        "base_price": pl.Float64,
    }
    data = [(lab, a, k, r, 1.0 if hb else None) for lab, a, k, r, hb in rows]
    shuffled = list(data)
    seed.shuffle(shuffled)
    one = event_profile(pl.LazyFrame(data, schema=schema, orient="row"), by="label").collect()
    two = event_profile(pl.LazyFrame(shuffled, schema=schema, orient="row"), by="label").collect()
    assert one.equals(two)
