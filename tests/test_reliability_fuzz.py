"""Fuzz the alerts reader (issue 7): whatever the bytes or column types, ``read_alerts`` and
``normalize_alerts`` either return a normalized frame or raise ``InputError``; nothing else.

A normalized frame: exactly ``alert_id`` (String), ``mint`` (String), ``ts_ms`` (Int64), no
nulls, no empty mint or id, unique ids, sorted by ``alert_id``; and an InputError is one line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeslice.alerts import normalize_alerts, read_alerts
from lakeslice.spec import InputError

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,  # the same examples on every run: a CI failure reproduces locally
)
COLUMN_NAMES = ["mint", "token_address", "ts_ms", "ts", "timestamp", "alert_id", "id", "other", "MINT", ""]


def check(call) -> pl.DataFrame | None:
    """Run ``call``: a normalized frame, or an InputError; anything else fails the test."""
    try:
        out = call()
    except InputError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, repr(message)
        return None
    assert out.columns == ["alert_id", "mint", "ts_ms"]
    assert out.schema == pl.Schema({"alert_id": pl.String, "mint": pl.String, "ts_ms": pl.Int64})
    assert out.null_count().row(0) == (0, 0, 0)
    assert out["alert_id"].is_unique().all()
    assert (out["mint"].str.len_bytes() > 0).all() and (out["alert_id"].str.len_bytes() > 0).all()
    assert out["alert_id"].to_list() == sorted(out["alert_id"].to_list())
    return out


def read_written(data: bytes, suffix: str = ".csv") -> pl.DataFrame:
    """``read_alerts`` of ``data`` in a file of its own, removed afterwards (hypothesis reuses a
    function's tmp_path across examples, so each example gets its own directory)."""
    with tempfile.TemporaryDirectory(prefix="lakeslice-fuzz-") as tmp:
        path = Path(tmp) / f"alerts{suffix}"
        path.write_bytes(data)
        return read_alerts(path)


# --------------------------------------------------------------------------------------------
# raw bytes


@FUZZ
@given(st.binary(max_size=400))
def test_csv_random_bytes(data):
    check(lambda: read_written(data))


@FUZZ
@given(st.binary(max_size=400))
def test_parquet_random_bytes(data):
    check(lambda: read_written(b"PAR1" + data + b"PAR1", ".parquet"))


# --------------------------------------------------------------------------------------------
# CSV with plausible headers and hostile cells

SOL = "So11111111111111111111111111111111111111112"
cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", SOL, "0123", "NaN", "inf", "-inf", "1e400", "null", '"', "a,b", "é☃\t"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.datetimes(
        min_value=dt.datetime(1, 1, 1),
        max_value=dt.datetime(9999, 12, 31),
        timezones=st.one_of(
            st.none(), st.just(dt.timezone.utc), st.just(dt.timezone(dt.timedelta(hours=-5)))
        ),
    ).map(lambda d: d.isoformat()),
    st.sampled_from(["2024-01-01", "2024-01-01 00:00", "2024-02-30T00:00:00Z", "2024-01-01T25:00:00"]),
)


@st.composite
def csv_files(draw) -> bytes:
    names = draw(st.lists(st.sampled_from(COLUMN_NAMES), min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(cells, min_size=len(names), max_size=len(names)), max_size=8))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(names)
    writer.writerows(rows)
    text = buf.getvalue()
    if draw(st.booleans()):  # a ragged last line
        text += draw(cells)
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1"])), errors="replace")


@FUZZ
@given(csv_files())
def test_csv_structured(data):
    check(lambda: read_written(data))


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from([SOL, "m2", "0123"]), st.integers(0, 2**45)), min_size=1, max_size=20)
)
def test_good_csv_always_normalizes(rows):
    """Valid alerts (distinct mint|ts) are never refused, and the ids do not depend on order."""
    rows = list(dict.fromkeys(rows))
    text = "mint,ts_ms\n" + "".join(f"{m},{t}\n" for m, t in rows)
    out = check(lambda: read_written(text.encode()))
    assert out is not None and out.height == len(rows)
    back = check(
        lambda: read_written(("mint,ts_ms\n" + "".join(f"{m},{t}\n" for m, t in rows[::-1])).encode())
    )
    assert back.equals(out)


# --------------------------------------------------------------------------------------------
# frames of every column type (normalize_alerts in memory, and read_alerts on Parquet)


def series_of(draw, name: str, n: int) -> pl.Series:
    kind = draw(
        st.sampled_from(
            [
                "str",
                "int",
                "uint",
                "float",
                "bool",
                "datetime",
                "datetime_tz",
                "date",
                "null",
                "cat",
                "list",
                "struct",
                "binary",
                "duration",
                "decimal",
            ]
        )
    )
    opt = lambda s: st.one_of(st.none(), s)  # noqa: E731
    if kind == "str":
        return pl.Series(name, draw(st.lists(opt(cells), min_size=n, max_size=n)), pl.String)
    if kind == "int":
        return pl.Series(
            name, draw(st.lists(opt(st.integers(-(2**63), 2**63 - 1)), min_size=n, max_size=n)), pl.Int64
        )
    if kind == "uint":
        return pl.Series(
            name, draw(st.lists(opt(st.integers(0, 2**64 - 1)), min_size=n, max_size=n)), pl.UInt64
        )
    if kind == "float":
        return pl.Series(name, draw(st.lists(opt(st.floats()), min_size=n, max_size=n)), pl.Float64)
    if kind == "bool":
        return pl.Series(name, draw(st.lists(opt(st.booleans()), min_size=n, max_size=n)), pl.Boolean)
    if kind in ("datetime", "datetime_tz"):
        values = draw(st.lists(opt(st.datetimes(min_value=dt.datetime(1, 1, 1))), min_size=n, max_size=n))
        s = (
            pl.Series(name, values, pl.Datetime(draw(st.sampled_from(["ns", "us", "ms"]))))
            if all(v is None or dt.datetime(1678, 1, 1) < v < dt.datetime(2262, 1, 1) for v in values)
            else pl.Series(name, values, pl.Datetime("us"))
        )
        return s.dt.replace_time_zone("Asia/Kolkata") if kind == "datetime_tz" else s
    if kind == "date":
        return pl.Series(name, draw(st.lists(opt(st.dates()), min_size=n, max_size=n)), pl.Date)
    if kind == "null":
        return pl.Series(name, [None] * n, pl.Null)
    if kind == "cat":
        return pl.Series(
            name,
            draw(st.lists(opt(st.sampled_from([SOL, "m2", ""])), min_size=n, max_size=n)),
            pl.Categorical,
        )
    if kind == "list":
        return pl.Series(
            name, draw(st.lists(opt(st.lists(st.integers(0, 9), max_size=2)), min_size=n, max_size=n))
        )
    if kind == "struct":
        return pl.Series(name, [{"a": draw(st.integers(0, 9))} for _ in range(n)])
    if kind == "binary":
        return pl.Series(name, draw(st.lists(opt(st.binary(max_size=6)), min_size=n, max_size=n)), pl.Binary)
    if kind == "duration":
        return pl.Series(
            name, draw(st.lists(opt(st.integers(-(10**12), 10**12)), min_size=n, max_size=n)), pl.Int64
        ).cast(pl.Duration("ms"))
    return pl.Series(
        name, draw(st.lists(opt(st.integers(-(10**6), 10**6)), min_size=n, max_size=n)), pl.Int64
    ).cast(pl.Decimal(12, 2))


@st.composite
def frames(draw) -> pl.DataFrame:
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.sampled_from(COLUMN_NAMES[:-1]), min_size=1, max_size=4, unique=True))
    return pl.DataFrame([series_of(draw, name, n) for name in names])


ODD_FRAMES = [
    pl.DataFrame({"mint": pl.Series("x", [1], pl.Int64).cast(pl.Duration("ms")), "ts_ms": [1]}),
    pl.DataFrame({"mint": [[1]], "ts_ms": [1]}),
    pl.DataFrame({"mint": ["m"], "ts": pl.Series("x", [1], pl.Int64).cast(pl.Duration("ms"))}),
    pl.DataFrame({"mint": ["m"], "ts_ms": pl.Series("x", ["1"], pl.Categorical)}),
    pl.DataFrame({"mint": ["m"], "ts_ms": [{"a": 1}]}),
    pl.DataFrame({"mint": ["m"], "ts_ms": [1], "alert_id": [[1]]}),
]


@pytest.mark.parametrize("frame", ODD_FRAMES, ids=lambda f: ",".join(f"{k}:{v}" for k, v in f.schema.items()))
def test_normalize_alerts_odd_column_types(frame):
    check(lambda: normalize_alerts(frame))


@FUZZ
@given(frames())
def test_normalize_alerts_any_frame(frame):
    check(lambda: normalize_alerts(frame))


@pytest.mark.parametrize("suffix", [".parquet"])
@settings(FUZZ, max_examples=60)
@given(frame=frames())
def test_read_alerts_any_parquet(frame, suffix):
    buffer = io.BytesIO()
    try:
        frame.write_parquet(buffer)
    except Exception:  # a frame Polars itself cannot write is not the reader's problem
        return
    check(lambda: read_written(buffer.getvalue(), suffix))
