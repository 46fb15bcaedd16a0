"""Read and normalize alerts (SPEC §2): ``alert_id``, ``mint``, ``ts_ms``, sorted by alert_id."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from .errors import InputError, one_line

__all__ = ["read_alerts", "normalize_alerts", "ALERT_SCHEMA"]

ALERT_SCHEMA = {"alert_id": pl.String, "mint": pl.String, "ts_ms": pl.Int64}

_MINT_COLUMNS = ("mint", "token_address")
_TIME_COLUMNS = ("ts_ms", "ts", "timestamp")
_ID_COLUMNS = ("alert_id", "id")
# Below this a number is epoch seconds, at or above it epoch milliseconds (SPEC §2).
_SECONDS_LIMIT = 1e12
#: Alert times every reader of the lake represents: ClickHouse DateTime64 starts at 1900-01-01,
#: nanosecond timestamps (Arrow ``timestamp[ns]``, pandas) end at 2262-04-11. Windows stay in
#: Int64 milliseconds and the SQL clamps the time bounds to the DateTime64 range.
TS_MS_RANGE = (-2_208_988_800_000, 9_223_286_400_000)  # [1900-01-01, 2262-04-11) UTC
TS_RANGE_TEXT = "1900-01-01 to 2262-04-10 (UTC)"
_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def read_alerts(path: str | Path) -> pl.DataFrame:
    """Read an alerts file (``.parquet`` / ``.csv``) and normalize it.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(p, "w").write("mint,ts\\nabc,2024-01-01T00:00:30Z\\n")
    >>> read_alerts(p)["ts_ms"].to_list()
    [1704067230000]
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError(f"{name}: alerts file not found")
    if not path.is_file():
        raise InputError(f"{name}: alerts path is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        elif suffix in (".csv", ".tsv"):
            # Everything as text: a mint like "0123" must not become a number.
            frame = pl.read_csv(path, infer_schema=False, separator="\t" if suffix == ".tsv" else ",")
        else:
            raise InputError(f"{name}: unknown alerts file extension {suffix!r} (use .parquet or .csv)")
    except InputError:
        raise
    except pl.exceptions.NoDataError as exc:
        raise InputError(f"{name}: alerts file is empty") from exc
    except Exception as exc:  # corrupt file: name it, keep one line
        raise InputError(f"{name}: cannot read alerts ({one_line(exc)})") from exc
    return normalize_alerts(frame, name=name)


def normalize_alerts(frame: pl.DataFrame, *, name: str = "alerts") -> pl.DataFrame:
    """Normalize an alerts frame: aliases, time parsing, derived ids, validation.

    >>> normalize_alerts(pl.DataFrame({"mint": ["m"], "ts_ms": [1_000]})).columns
    ['alert_id', 'mint', 'ts_ms']
    """
    if frame.height == 0:
        raise InputError(f"{name}: alerts file has no rows")
    mint_col = _require(frame, _MINT_COLUMNS, name)
    time_col = _require(frame, _TIME_COLUMNS, name)
    id_col = _pick(frame, _ID_COLUMNS)

    mint = _non_empty_text(frame, mint_col, name, alias="mint")
    ts_ms = _times(frame, time_col, name)
    out = pl.DataFrame({"mint": mint, "ts_ms": ts_ms})
    if id_col is None:
        ids = derive_alert_ids(out["mint"], out["ts_ms"])
        origin = "derived from mint|ts_ms"
    else:
        ids = _non_empty_text(frame, id_col, name, alias="alert_id")
        origin = f"column {id_col!r}"
    out = out.with_columns(alert_id=ids).select(list(ALERT_SCHEMA))
    _refuse_duplicate_ids(out, name, origin)
    return out.sort("alert_id")


def derive_alert_ids(mint: pl.Series, ts_ms: pl.Series) -> pl.Series:
    """First 16 hex chars of SHA-256 over ``"{mint}|{ts_ms}"``: stable across runs.

    Alerts are small (thousands), so one hashlib call per alert is fine; Polars has no SHA-256.
    """
    keys = (mint + "|" + ts_ms.cast(pl.String)).to_list()
    return pl.Series(
        "alert_id", [hashlib.sha256(k.encode("utf-8")).hexdigest()[:16] for k in keys], pl.String
    )


def _pick(frame: pl.DataFrame, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` the frame has (they are aliases of one column), or None."""
    return next((col for col in names if col in frame.columns), None)


def _require(frame: pl.DataFrame, names: tuple[str, ...], file: str) -> str:
    col = _pick(frame, names)
    if col is None:
        raise InputError(
            f"{file}: missing column {names[0]!r} (or {', '.join(repr(n) for n in names[1:])});"
            f" found {', '.join(frame.columns) or 'no columns'}"
        )
    return col


def _first_bad_row(mask: pl.Series) -> int:
    """1-based data row (header excluded) of the first True in mask."""
    return int(mask.arg_true()[0]) + 1


def _as_text(s: pl.Series, col: str, file: str) -> pl.Series:
    """Text, categorical and numeric columns as strings; any other type is an input error."""
    if s.dtype == pl.String:
        return s
    if s.dtype in (pl.Categorical, pl.Null) or isinstance(s.dtype, pl.Enum) or s.dtype.is_numeric():
        return s.cast(pl.String)
    raise InputError(f"{file}: column {col!r} has type {s.dtype}, expected text")


def _non_empty_text(frame: pl.DataFrame, col: str, file: str, *, alias: str) -> pl.Series:
    """The column as text named ``alias``; a null or empty value is an input error at its row."""
    s = _as_text(frame[col], col, file)
    bad = s.is_null() | (s.str.len_bytes() == 0)
    if bad.any():
        raise InputError(f"{file}: column {col!r} is null or empty at row {_first_bad_row(bad)}")
    return s.alias(alias)


def _times(frame: pl.DataFrame, col: str, file: str) -> pl.Series:
    s = frame[col]
    temporal = s.dtype == pl.Date or isinstance(s.dtype, pl.Datetime)
    if not (temporal or s.dtype in (pl.String, pl.Categorical, pl.Null) or s.dtype.is_numeric()):
        raise InputError(f"{file}: column {col!r} has type {s.dtype}, expected a time")
    if s.dtype in (pl.Categorical, pl.Null):
        s = s.cast(pl.String)
    # a temporal ts_ms goes through _datetime_ms like ts/timestamp (its raw integer is us/ns)
    if col == "ts_ms" and not s.dtype.is_temporal():
        ms = _int_text(s) if s.dtype == pl.String else _int_ms(s)
    elif s.dtype.is_temporal():
        ms = _datetime_ms(s)
    elif s.dtype.is_numeric():
        ms = _number_ms(s.cast(pl.Float64))
    else:
        ms = _text_ms(s.cast(pl.String))
    bad = ms.is_null()
    if bad.any():
        row = _first_bad_row(bad)
        raise InputError(f"{file}: column {col!r} has an unparseable time {s[row - 1]!r} at row {row}")
    lo, hi = TS_MS_RANGE
    outside = (ms < lo) | (ms >= hi)
    if outside.any():
        row = _first_bad_row(outside)
        raise InputError(
            f"{file}: column {col!r} has the time {s[row - 1]!r} at row {row},"
            f" outside {TS_RANGE_TEXT}, the range every reader of the lake supports"
        )
    return ms.alias("ts_ms")


def _int_ms(s: pl.Series) -> pl.Series:
    """Numbers as Int64 ms; beyond Int64 clipped, so they are refused as out of range."""
    if s.dtype == pl.UInt64:
        s = s.clip(upper_bound=2**63 - 1)
    elif s.dtype.is_float():
        s = pl.select(pl.when(s.is_finite()).then(s.clip(-(2.0**62), 2.0**62))).to_series()
    return s.cast(pl.Int64, strict=False)


def _int_text(s: pl.Series) -> pl.Series:
    return s.str.strip_chars().cast(pl.Int64, strict=False)


def _datetime_ms(s: pl.Series) -> pl.Series:
    if s.dtype == pl.Date:
        s = s.cast(pl.Datetime("ms"))
    if isinstance(s.dtype, pl.Datetime) and s.dtype.time_zone is None:
        s = s.dt.replace_time_zone("UTC")  # naive datetimes are UTC (SPEC §2)
    return s.dt.epoch("ms")


def _number_ms(x: pl.Series) -> pl.Series:
    finite = x.is_finite()
    ms = pl.select(
        pl.when(~finite)
        .then(None)
        .when(x.abs() < _SECONDS_LIMIT)
        .then((x * 1000).round(0))
        .otherwise(x.round(0))
    ).to_series()
    # Clipped inside Int64 so that huge numbers are refused as out of range, not as unparseable.
    return ms.clip(-(2.0**62), 2.0**62).cast(pl.Int64)


def _text_ms(s: pl.Series) -> pl.Series:
    s = s.str.strip_chars()
    as_number = _number_ms(s.cast(pl.Float64, strict=False))
    parsed = pl.select(
        pl.coalesce(
            [
                pl.lit(s).str.to_datetime(f, time_unit="ms", time_zone="UTC", strict=False)
                for f in _DATETIME_FORMATS
            ]
        )
    ).to_series()
    return as_number.fill_null(parsed.dt.epoch("ms"))


def _refuse_duplicate_ids(out: pl.DataFrame, file: str, origin: str) -> None:
    dup = out["alert_id"].is_duplicated()
    if dup.any():
        # two rows of the same id: the first two duplicated rows may hold different ids (A, B, A, B)
        value = out["alert_id"][int(dup.arg_true()[0])]
        rows = ((out["alert_id"] == value).arg_true() + 1).head(2).to_list()
        raise InputError(f"{file}: duplicate alert_id {value!r} ({origin}) at rows {rows[0]} and {rows[1]}")
