"""Event studies on a sealed run: candles lined up on each alert, returns, profiles by offset.

``k`` is the offset of a candle from its alert's anchor in candles: ``k = 0`` is the anchor
candle, ``k = -1`` the one before it. Everything here takes and returns lazy frames and is
made of Polars expressions; nothing loops over rows.

>>> import polars as pl
>>> windows = pl.LazyFrame({"alert_id": ["a", "a", "a"], "k": [-1, 0, 1], "close": [1.0, 2.0, 4.0]})
>>> event_returns(windows, kind="simple").collect()["ret"].to_list()
[-0.5, 0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from .lake.read import resolve_run, scan_coverage, scan_run
from .spec import InputError

if TYPE_CHECKING:
    from .export import ExportResult

STATUSES = ("complete", "partial", "insufficient")
KINDS = ("log", "simple")
QUANTILES = (0.05, 0.25, 0.75, 0.95)
OHLCV = ("open", "high", "low", "close", "volume")
ALERT_COLUMNS = ("alert_id", "mint", "status", "alert_ts_ms", "anchor_ts_ms")
WINDOW_COLUMNS = (*ALERT_COLUMNS, "k", "ts", *OHLCV)


def scan_windows(
    run: str | Path | ExportResult,
    *,
    dense: bool = False,
    status: str | Sequence[str] | None = None,
    verify: bool = False,
) -> pl.LazyFrame:
    """One row per (kept alert, slot ``k`` of its window) with the candle there, sorted by
    ``(alert_id, k)``.

    ``run`` is a sealed run directory (or the result of ``export_run_slices``). Without
    ``dense`` only slots holding a candle are rows; with ``dense=True`` every one of the
    window's ``pre + 1 + post`` slots is a row, with null OHLCV where the lake has no candle,
    so gaps show instead of being silently absent. Each row carries the alert's coverage
    ``status``; ``status="complete"`` (or a list of statuses) keeps only those alerts.
    Alerts dropped by strict coverage are not in the view (their candles may be missing from
    the lake). ``ts`` is the candle's time, or the slot's time in a dense row without one.
    ``verify=True`` checks every file against the seal first.

    >>> import tempfile, lakeslice as ls
    >>> run = ls.export_run_slices(
    ...     "fixtures/alerts.csv", interval="1m", window="pre2_post3",
    ...     source="parquet://fixtures/candles.parquet", run_id="doc", data_root=tempfile.mkdtemp(),
    ... )
    >>> dense = scan_windows(run, dense=True).collect()
    >>> dense.group_by("alert_id").len()["len"].unique().to_list()  # 2 + 1 + 3 slots each
    [6]
    >>> dense.filter(pl.col("close").is_null()).height == dense.height - scan_windows(run).collect().height
    True
    >>> gaps = scan_windows(run, dense=True, status="insufficient").select(pl.col("alert_id").unique().sort())
    >>> gaps.collect()["alert_id"].to_list()  # no candle in their windows: only dense rows show them
    ['a4', 'a7']
    """
    wanted = None if status is None else _statuses(status)
    # a Path, or an s3:// URL; a local run resolved once, so coverage and candles are of one export
    run_dir = resolve_run(run if isinstance(run, (str, Path)) else run.run_dir)
    alerts = scan_coverage(run_dir).filter("kept")
    if wanted is not None:
        alerts = alerts.filter(pl.col("status").is_in(wanted))
    slots = _slots(alerts)
    candles = scan_run(run_dir, verify=verify).select(
        "mint",
        "ts",
        *OHLCV,
        # Candles sit on interval boundaries; flooring keeps an off-grid one in its slot.
        _slot=pl.col("ts").dt.epoch("ms") - pl.col("ts").dt.epoch("ms") % (pl.col("interval_s") * 1000),
    )
    joined = slots.join(candles, on=["mint", "_slot"], how="left" if dense else "inner")
    return (
        joined.with_columns(ts=pl.coalesce("ts", pl.col("_slot").cast(pl.Datetime("ms", "UTC"))))
        .select(WINDOW_COLUMNS)
        .sort("alert_id", "k", "ts")
    )


def _statuses(status: str | Sequence[str]) -> list[str]:
    wanted = [status] if isinstance(status, str) else list(status)
    for value in wanted:
        if value not in STATUSES:
            raise InputError(f"status {value!r}: expected one of {', '.join(STATUSES)}")
    return wanted


def _slots(alerts: pl.LazyFrame) -> pl.LazyFrame:
    """Every slot of every alert's window: ``k`` from ``-pre`` to ``post`` and its start time."""
    width = (pl.col("window_end_ts_ms") - pl.col("window_start_ts_ms")) // pl.col("expected_total")
    pre = (pl.col("anchor_ts_ms") - pl.col("window_start_ts_ms")) // width
    post = pl.col("expected_total") - pre - 1
    return (
        alerts.select(
            *ALERT_COLUMNS,
            _width=width,
            k=pl.int_ranges(-pre, post + 1, dtype=pl.Int32),
        )
        .explode("k")
        .with_columns(_slot=pl.col("anchor_ts_ms") + pl.col("k").cast(pl.Int64) * pl.col("_width"))
        .drop("_width")
    )


def event_returns(
    windows: pl.LazyFrame | pl.DataFrame,
    *,
    price: str = "close",
    base_k: int = 0,
    kind: str = "log",
) -> pl.LazyFrame:
    """Each row's return against its alert's base price: ``ln(p / base)`` or ``p / base - 1``.

    The base price of an alert is its ``price`` at ``base_k``, or, when that slot has no
    candle, at the **last candle at or before ``base_k``** (a price is usable when it is
    finite and positive). The frame gains ``base_k`` (the slot the base came from),
    ``base_price`` and ``ret``. Alerts with no usable price at or before ``base_k`` keep their
    rows with null ``base_k``, ``base_price`` and ``ret``: they are counted, not dropped
    (``event_profile`` reports them as ``n_no_base``). Needs ``alert_id``, ``k`` and ``price``,
    one row per ``(alert_id, k)`` as ``scan_windows`` gives.

    >>> w = pl.LazyFrame({
    ...     "alert_id": ["a", "a", "a", "b", "b"],
    ...     "k": [-2, 1, 2, 1, 2],
    ...     "close": [10.0, 20.0, 5.0, 3.0, 6.0],
    ... })
    >>> r = event_returns(w, kind="simple").collect()
    >>> r.select("alert_id", "k", "base_k", "ret").rows()  # 'a' has no candle at 0: base from k=-2
    [('a', -2, -2, 0.0), ('a', 1, -2, 1.0), ('a', 2, -2, -0.5), ('b', 1, None, None), ('b', 2, None, None)]
    """
    if kind not in KINDS:
        raise InputError(f"kind {kind!r}: expected log or simple")
    lf = windows.lazy()
    _require(lf, ("alert_id", "k", price), what="windows")
    p = pl.col(price)
    usable = p.is_not_null() & p.is_finite() & (p > 0)
    base = (
        lf.filter(usable & (pl.col("k") <= base_k))
        .group_by("alert_id")
        .agg(base_k=pl.col("k").max(), base_price=p.sort_by("k", price).last())
    )
    ratio = p / pl.col("base_price")
    ret = ratio.log() if kind == "log" else ratio - 1.0
    return lf.join(base, on="alert_id", how="left", maintain_order="left").with_columns(
        ret=pl.when(usable).then(ret).cast(pl.Float64)
    )


def event_profile(
    returns: pl.LazyFrame | pl.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
) -> pl.LazyFrame:
    """Per ``k`` (and per ``by`` group): ``n`` returns, ``mean``, ``median``, ``std``,
    ``se`` (standard error, ``std / sqrt(n)``), quantiles ``q05 q25 q75 q95`` (linear
    interpolation) and ``n_no_base`` (alerts of the group without a base price, hence without
    any return). Sorted by ``by`` then ``k``. ``by`` names columns of the returns frame, e.g.
    a label joined onto the alerts.

    >>> r = pl.LazyFrame({
    ...     "alert_id": ["a", "b", "c", "a", "b", "c"],
    ...     "k": [0, 0, 0, 1, 1, 1],
    ...     "ret": [0.0, 0.0, None, 0.1, 0.3, None],
    ...     "base_price": [1.0, 2.0, None, 1.0, 2.0, None],
    ... })
    >>> event_profile(r).select("k", "n", "mean", "n_no_base").collect().rows()
    [(0, 2, 0.0, 1), (1, 2, 0.2, 1)]
    """
    keys = [] if by is None else ([by] if isinstance(by, str) else list(by))
    lf = returns.lazy()
    _require(lf, ("alert_id", "k", "ret", "base_price", *keys), what="returns")
    # Each group's returns are gathered into a list and sorted before any sum: the optimizer
    # may drop a sort ahead of a group_by and threads deliver rows in any order, and a float
    # sum depends on its order. Sorted lists give the same bits from the same returns.
    v = pl.col("_values")
    stats = (
        lf.group_by(*keys, "k")
        .agg(_values=pl.col("ret").drop_nulls())
        .with_columns(v.list.sort())
        .select(
            *keys,
            "k",
            n=v.list.len().cast(pl.Int64),
            mean=v.list.mean(),
            median=v.list.median(),
            std=v.list.std(),
            **{
                f"q{round(q * 100):02d}": v.list.eval(
                    pl.element().quantile(q, interpolation="linear")
                ).list.first()
                for q in QUANTILES
            },
        )
        .with_columns(se=pl.col("std") / pl.col("n").cast(pl.Float64).sqrt())
    )
    no_base = (
        lf.group_by(*keys, "alert_id")
        .agg(has_base=pl.col("base_price").is_not_null().any())
        .group_by(*keys)
        .agg(n_no_base=(~pl.col("has_base")).sum().cast(pl.Int64))
    )
    joined = stats.join(no_base, on=keys, how="left") if keys else stats.join(no_base, how="cross")
    return joined.sort(*keys, "k")


def _require(lf: pl.LazyFrame, columns: Sequence[str], *, what: str) -> None:
    have = lf.collect_schema().names()
    for col in columns:
        if col not in have:
            raise InputError(f"{what}: no column {col!r} (found {', '.join(have)})")
