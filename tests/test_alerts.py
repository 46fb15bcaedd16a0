"""lakeslice.alerts: aliases, time parsing, derived ids, and input errors that name what is wrong."""

from __future__ import annotations

import datetime as dt
import hashlib

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import reference as ref
from support.data import SOL

from lakeslice.alerts import ALERT_SCHEMA, normalize_alerts, read_alerts
from lakeslice.spec import InputError

UTC = dt.timezone.utc
T0 = 1_704_067_230_000  # 2024-01-01T00:00:30Z
sha_id = ref.derived_id


def one_ts(frame: pl.DataFrame) -> int:
    return normalize_alerts(frame)["ts_ms"].item()


def write_csv(tmp_path, text: str, name: str = "alerts.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --------------------------------------------------------------------------------------------
# shape and aliases


def test_output_columns_types_and_sort():
    out = normalize_alerts(
        pl.DataFrame({"mint": ["b", "a", "c"], "ts_ms": [3, 1, 2], "alert_id": ["z", "x", "y"]})
    )
    assert out.columns == ["alert_id", "mint", "ts_ms"]
    assert dict(out.schema) == ALERT_SCHEMA == {"alert_id": pl.String, "mint": pl.String, "ts_ms": pl.Int64}
    assert out.rows() == [("x", "a", 1), ("y", "c", 2), ("z", "b", 3)]


@pytest.mark.parametrize("mint_col", ["mint", "token_address"])
@pytest.mark.parametrize("id_col", ["alert_id", "id", None])
def test_column_aliases(mint_col, id_col):
    data = {mint_col: [SOL, "x"], "timestamp": [T0 // 1000, T0 // 1000 + 1]}
    if id_col:
        data[id_col] = [7, 8]  # integer ids become text
    out = normalize_alerts(pl.DataFrame(data))
    want_ids = ["7", "8"] if id_col else [sha_id(SOL, T0), sha_id("x", T0 + 1000)]
    got = {r[1]: r for r in out.rows()}
    assert got[SOL] == (want_ids[0], SOL, T0)
    assert got["x"] == (want_ids[1], "x", T0 + 1000)


@pytest.mark.parametrize("time_col", ["ts_ms", "ts", "timestamp"])
def test_time_aliases(time_col):
    value = T0 if time_col == "ts_ms" else "2024-01-01T00:00:30Z"
    assert one_ts(pl.DataFrame({"mint": ["m"], time_col: [value]})) == T0


def test_ts_ms_is_always_milliseconds():
    # ts_ms is integer epoch ms even below 1e12 (no seconds guessing)
    out = normalize_alerts(pl.DataFrame({"mint": ["a", "b", "c"], "ts_ms": [5, -5, 0]}))
    assert sorted(out["ts_ms"].to_list()) == [-5, 0, 5]
    assert one_ts(pl.DataFrame({"mint": ["m"], "ts_ms": [" 1704067230000 "]})) == T0


# --------------------------------------------------------------------------------------------
# times


@pytest.mark.parametrize(
    "text, want",
    [
        ("2024-01-01T00:00:30Z", T0),
        ("2024-01-01T00:00:30z", T0),
        ("2024-01-01T00:00:30.250Z", T0 + 250),
        ("2024-01-01T00:00:30.123456789Z", T0 + 123),
        ("2024-01-01T02:00:30+02:00", T0),
        ("2023-12-31T19:00:30-05:00", T0),
        ("2024-01-01T05:30:30+05:30", T0),
        ("2024-01-01T02:00:30+0200", T0),
        ("2024-01-01T00:00:30", T0),  # naive: UTC
        ("2024-01-01 00:00:30", T0),
        ("2024-01-01 00:00:30.5", T0 + 500),
        ("2024-01-01T00:00", T0 - 30_000),
        ("2024-01-01", T0 - 30_000),
        ("  2024-01-01T00:00:30Z ", T0),
        ("1969-12-31T23:59:59.500Z", -500),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_iso_strings(text, want):
    assert one_ts(pl.DataFrame({"mint": ["m"], "ts": [text]})) == want


@pytest.mark.parametrize(
    "value, want",
    [
        (1_704_067_230, T0),  # seconds
        (1_704_067_230.25, T0 + 250),  # fractional seconds
        (1_704_067_230.123, T0 + 123),
        (1.001, 1001),  # 1.001 * 1000 == 1000.9999999999999: rounded, not floored
        (1.005, 1005),
        (T0, T0),  # milliseconds
        (1_000_000_000_000, 1_000_000_000_000),  # exactly 1e12: milliseconds
        (999_999_999, 999_999_999_000),  # below 1e12: seconds
        (0, 0),
        (-1, -1000),  # negative: seconds
        (-86_400.5, -86_400_500),
    ],
)
def test_epoch_seconds_vs_ms_rule(value, want):
    for v in (value, str(value)):
        assert one_ts(pl.DataFrame({"mint": ["m"], "ts": [v]})) == want
        assert one_ts(pl.DataFrame({"mint": ["m"], "timestamp": [v]})) == want


def test_epoch_rule_in_an_int_column_mixing_units():
    out = normalize_alerts(
        pl.DataFrame({"alert_id": ["s", "ms"], "mint": ["m", "m"], "ts": [1_704_067_230, T0 + 1]})
    )
    assert out["ts_ms"].to_list() == [T0 + 1, T0]  # sorted by alert_id: "ms" < "s"


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "Asia/Tokyo"])
@pytest.mark.parametrize("col", ["ts", "timestamp", "ts_ms"])
def test_datetime_columns_in_parquet(tmp_path, unit, tz, col):
    s = pl.Series([dt.datetime(2024, 1, 1, 0, 0, 30, 123456)], dtype=pl.Datetime(unit))
    if tz:  # the same instant shown in another zone
        s = s.dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
    p = tmp_path / "a.parquet"
    pl.DataFrame({"mint": ["m"], col: s}).write_parquet(p)
    out = read_alerts(p)
    assert out["ts_ms"].to_list() == [T0 + 123]
    assert out["alert_id"].to_list() == [sha_id("m", T0 + 123)]


def test_date_column_in_parquet(tmp_path):
    p = tmp_path / "a.parquet"
    pl.DataFrame({"mint": ["m"], "ts": [dt.date(2024, 1, 1)]}).write_parquet(p)
    assert read_alerts(p)["ts_ms"].to_list() == [T0 - 30_000]


def test_pq_extension_and_tsv(tmp_path):
    p = tmp_path / "a.pq"
    pl.DataFrame({"mint": ["m"], "ts_ms": [T0]}).write_parquet(p)
    assert read_alerts(p)["ts_ms"].to_list() == [T0]
    t = write_csv(tmp_path, "mint\tts\nm\t2024-01-01T00:00:30Z\n", "a.tsv")
    assert read_alerts(t)["ts_ms"].to_list() == [T0]


# --------------------------------------------------------------------------------------------
# ids


@pytest.mark.parametrize("mint", [SOL, "q\"u'o\tte", "émoji🚀", "0123"])
def test_derived_ids_match_hashlib(mint):
    out = normalize_alerts(pl.DataFrame({"mint": [mint], "ts_ms": [T0]}))
    want = hashlib.sha256(f"{mint}|{T0}".encode()).hexdigest()[:16]
    assert out["alert_id"].to_list() == [want]
    assert len(want) == 16


def test_derived_ids_pinned_value():
    # "So111...112|1704067230000" -- computed once with hashlib; any other rule breaks this
    want = hashlib.sha256(b"So11111111111111111111111111111111111111112|1704067230000")
    out = normalize_alerts(pl.DataFrame({"mint": [SOL], "ts": ["2024-01-01T00:00:30Z"]}))
    assert out["alert_id"].item() == want.hexdigest()[:16]


def test_derived_ids_use_normalized_ms_not_the_text():
    a = normalize_alerts(pl.DataFrame({"mint": ["m"], "ts": ["2024-01-01T02:00:30+02:00"]}))
    b = normalize_alerts(pl.DataFrame({"mint": ["m"], "ts": [1_704_067_230]}))
    assert a.equals(b)
    assert a["alert_id"].item() == sha_id("m", T0)


def test_csv_keeps_text_mints_and_ids(tmp_path):
    p = write_csv(tmp_path, 'mint,ts,id\n0123,1704067230,007\n"a,""b""\tc",1704067231,8\n')
    out = read_alerts(p)
    assert out.rows() == [("007", "0123", T0), ("8", 'a,"b"\tc', T0 + 1000)]


# --------------------------------------------------------------------------------------------
# property: round trip through CSV and Parquet


mint_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(mint_text, st.integers(-(10**12), 4 * 10**12)),
        min_size=1,
        max_size=8,
        unique=True,
    ),
    fmt=st.sampled_from(["csv", "parquet"]),
    time_form=st.sampled_from(["ts_ms", "iso", "seconds", "datetime"]),
)
def test_read_alerts_round_trip(tmp_path_factory, rows, fmt, time_form):
    if time_form == "seconds":
        # seconds only when they stay below 1e12 and are whole
        rows = [(m, t - t % 1000) for m, t in rows]
        rows = list(dict.fromkeys(rows))
    mints = [m for m, _ in rows]
    ts = [t for _, t in rows]
    series = pl.Series(ts, dtype=pl.Int64)
    if time_form == "ts_ms":
        frame = pl.DataFrame({"mint": mints, "ts_ms": series})
    elif time_form == "seconds":
        frame = pl.DataFrame({"mint": mints, "ts": series // 1000})
    elif time_form == "iso":
        iso = series.cast(pl.Datetime("ms", "UTC")).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        frame = pl.DataFrame({"token_address": mints, "timestamp": iso})
    else:
        frame = pl.DataFrame({"mint": mints, "ts": series.cast(pl.Datetime("ms"))})
    d = tmp_path_factory.mktemp("a")
    if fmt == "csv":
        if time_form == "datetime":
            frame = frame.with_columns(pl.col("ts").dt.strftime("%Y-%m-%d %H:%M:%S%.3f"))
        p = d / "alerts.csv"
        frame.write_csv(p)
    else:
        p = d / "alerts.parquet"
        frame.write_parquet(p)
    out = read_alerts(p)
    want = sorted((sha_id(m, t), m, t) for m, t in rows)
    assert out.rows() == want
    assert dict(out.schema) == ALERT_SCHEMA


# --------------------------------------------------------------------------------------------
# input errors: InputError, one line, naming the column / row / value


def raises_input(match: str):
    return pytest.raises(InputError, match=match)


def check_one_line(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    assert exc_info.value.exit_code == 2


def test_missing_file(tmp_path):
    with raises_input(r"nope\.csv.*not found") as e:
        read_alerts(tmp_path / "nope.csv")
    check_one_line(e)


def test_directory_is_not_a_file(tmp_path):
    with raises_input("not a file"):
        read_alerts(tmp_path)


@pytest.mark.parametrize("ext", [".json", ".xlsx", ""])
def test_unknown_extension(tmp_path, ext):
    p = tmp_path / f"alerts{ext}"
    p.write_text("mint,ts\nm,1\n")
    with raises_input("unknown alerts file extension") as e:
        read_alerts(p)
    check_one_line(e)
    assert repr(ext) in str(e.value)


def test_header_only_csv(tmp_path):
    with raises_input("no rows") as e:
        read_alerts(write_csv(tmp_path, "mint,ts\n"))
    check_one_line(e)


def test_zero_byte_csv(tmp_path):
    with raises_input("empty") as e:
        read_alerts(write_csv(tmp_path, ""))
    check_one_line(e)


def test_empty_parquet(tmp_path):
    p = tmp_path / "a.parquet"
    pl.DataFrame(schema={"mint": pl.String, "ts_ms": pl.Int64}).write_parquet(p)
    with raises_input("no rows"):
        read_alerts(p)


def test_corrupt_parquet(tmp_path):
    p = tmp_path / "a.parquet"
    p.write_bytes(b"not parquet at all")
    with raises_input(r"a\.parquet: cannot read alerts") as e:
        read_alerts(p)
    check_one_line(e)


def test_missing_mint_column(tmp_path):
    with raises_input(r"missing column 'mint' \(or 'token_address'\); found token, ts") as e:
        read_alerts(write_csv(tmp_path, "token,ts\nm,1\n"))
    check_one_line(e)


def test_missing_time_column(tmp_path):
    with raises_input(r"missing column 'ts_ms' \(or 'ts', 'timestamp'\); found mint, when"):
        read_alerts(write_csv(tmp_path, "mint,when\nm,1\n"))


@pytest.mark.parametrize("bad", ["", '""'])
def test_empty_mint_names_column_and_row(tmp_path, bad):
    p = write_csv(tmp_path, f"mint,ts\nm,1\nk,2\n{bad},3\n")
    with raises_input(r"column 'mint' is null or empty at row 3") as e:
        read_alerts(p)
    check_one_line(e)


def test_null_and_empty_mint_in_frames():
    with raises_input(r"column 'token_address' is null or empty at row 2"):
        normalize_alerts(pl.DataFrame({"token_address": ["a", None], "ts_ms": [1, 2]}))
    with raises_input(r"column 'mint' is null or empty at row 1"):
        normalize_alerts(pl.DataFrame({"mint": [""], "ts_ms": [1]}))


@pytest.mark.parametrize(
    "col, value",
    [
        ("ts", "yesterday"),
        ("ts", "2024-13-01"),
        ("timestamp", "2024-01-01 00:00:00 PST"),
        ("ts_ms", "12x"),
        ("ts_ms", "1.5e12"),
        ("ts", "nan"),
        ("ts", "inf"),
    ],
)
def test_unparseable_time_names_column_row_and_value(tmp_path, col, value):
    p = write_csv(tmp_path, f"mint,{col}\nm,1704067230\nk,{value}\n")
    with raises_input(rf"column '{col}' has an unparseable time '{value}' at row 2") as e:
        read_alerts(p)
    check_one_line(e)


def test_null_time_in_frame():
    f = pl.DataFrame({"mint": ["a", "b"], "ts": [None, None]}, schema={"mint": pl.String, "ts": pl.Int64})
    with raises_input(r"column 'ts' has an unparseable time None at row 1"):
        normalize_alerts(f)


def test_out_of_range_numbers_are_refused_not_wrapped():
    with raises_input("unparseable time"):
        normalize_alerts(pl.DataFrame({"mint": ["m"], "ts": [1e30]}))


def test_duplicate_given_ids_name_value_and_rows(tmp_path):
    p = write_csv(tmp_path, "id,mint,ts\nA,m,1\nB,m,2\nC,m,3\nB,m,4\nA,m,5\n")
    with raises_input(r"duplicate alert_id 'A' \(column 'id'\) at rows 1 and 5") as e:
        read_alerts(p)
    check_one_line(e)


def test_duplicate_ids_interleaved_rows_belong_to_the_named_id():
    f = pl.DataFrame({"alert_id": ["A", "B", "A", "B"], "mint": ["m"] * 4, "ts_ms": [1, 2, 3, 4]})
    with raises_input(r"duplicate alert_id 'A' \(column 'alert_id'\) at rows 1 and 3"):
        normalize_alerts(f)


def test_duplicate_derived_ids():
    f = pl.DataFrame({"mint": ["m", "n", "m"], "ts": ["2024-01-01T00:00:30Z", "0", "1704067230"]})
    want = rf"duplicate alert_id '{sha_id('m', T0)}' \(derived from mint\|ts_ms\) at rows 1 and 3"
    with raises_input(want):
        normalize_alerts(f)
