"""Brute-force reference of SPEC §1, §3, §4 in plain Python over lists.

Written from the SPEC text, not from lakeslice.transforms: every alert loops over every candle,
every slot is checked one by one. Slow on purpose, obvious on purpose.

Candles here are dicts with ``mint, ts_ms, ver, open, high, low, close, volume, source``
(already of the requested interval). Alerts are dicts with ``alert_id, mint, ts_ms``.
:func:`quantbot_candles` turns source-table rows into such candles, :func:`alerts_csv` reads an
alerts file. Every test computes its expectations with these functions: one reference, so a
regression of a rule (the slot rule of ``status``, the dedup order) fails every test that sees it.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from .data import OHLCV

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def epoch_ms(value: object) -> int:
    """A source ``timestamp`` as epoch ms: a datetime (naive is UTC) or integer epoch seconds."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return (value - EPOCH) // dt.timedelta(milliseconds=1)
    return int(value) * 1000  # type: ignore[call-overload]


def quantbot_candles(
    rows: Iterable[Mapping], *, chain: str = "solana", interval_s: int = 60, label: str = "x"
) -> list[dict]:
    """SPEC §2: the rows of ``chain`` and ``interval_s`` as reference candles (``ver`` 0 if absent)."""
    return [
        {
            "mint": r["token_address"],
            "ts_ms": epoch_ms(r["timestamp"]),
            "ver": r.get("ver", 0),
            "source": label,
            **{k: r[k] for k in OHLCV},
        }
        for r in rows
        if r["chain"] == chain and r["interval_seconds"] == interval_s
    ]


def alerts_csv(path: Path) -> list[dict]:
    """An alerts CSV with ``alert_id, mint, ts_ms`` columns, read with the csv module."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            {"alert_id": r["alert_id"], "mint": r["mint"], "ts_ms": int(r["ts_ms"])}
            for r in csv.DictReader(fh)
        ]


def bucket(mint: str) -> str:
    """SPEC §1: first byte of SHA-1 over the UTF-8 bytes, two lowercase hex characters."""
    return f"{hashlib.sha1(mint.encode('utf-8')).digest()[0]:02x}"


def bucket_group_count(rows_per_mint: Mapping[str, int], group_rows: int) -> int:
    """How many bucket groups an export runs: buckets in order, a new group each time the rows
    estimated before a bucket pass another multiple of ``group_rows``."""
    per_bucket: dict[str, int] = {}
    for mint, rows in rows_per_mint.items():
        per_bucket[bucket(mint)] = per_bucket.get(bucket(mint), 0) + rows
    before, groups = 0, set()
    for b in sorted(per_bucket):
        groups.add(before // max(group_rows, 1))
        before += per_bucket[b]
    return len(groups)


def derived_id(mint: str, ts_ms: int) -> str:
    """SPEC §2 example rule: first 16 hex of SHA-256 over "{mint}|{ts_ms}"."""
    return hashlib.sha256(f"{mint}|{ts_ms}".encode()).hexdigest()[:16]


def anchor(ts_ms: int, interval_s: int) -> int:
    """SPEC §1: floor(alert_ts_ms / (I*1000)) * I*1000 (mathematical floor, also below 0)."""
    width = interval_s * 1000
    # Walk down from a truncated guess: no reliance on // semantics for negatives.
    q = int(ts_ms / width)
    while q * width > ts_ms:
        q -= 1
    while (q + 1) * width <= ts_ms:
        q += 1
    return q * width


def window(ts_ms: int, interval_s: int, pre: int, post: int) -> tuple[int, int, int]:
    """(anchor, start, end) of the half-open window [anchor - N*I, anchor + (M+1)*I)."""
    a = anchor(ts_ms, interval_s)
    width = interval_s * 1000
    return a, a - pre * width, a + (post + 1) * width


def dedupe(candles: list[dict]) -> list[dict]:
    """One row per (mint, ts_ms) by DEDUP_RULE: greatest ver, then greatest volume, close, high,
    low, open, then smallest source label. Independent of the input order."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for c in candles:
        groups.setdefault((c["mint"], c["ts_ms"]), []).append(c)
    out = []
    for key in sorted(groups):
        best = None
        for c in groups[key]:
            if best is None or _better(c, best):
                best = c
        out.append(best)
    return out


def _better(a: dict, b: dict) -> bool:
    for k in ("ver", "volume", "close", "high", "low", "open"):
        if a[k] != b[k]:
            return a[k] > b[k]
    return a["source"] < b["source"]


def slice_rows(candles: list[dict], alerts: list[dict], interval_s: int, pre: int, post: int) -> list[dict]:
    """SPEC §3: the deduplicated candles whose ts falls in any window of the same mint,
    once each, sorted by (mint, ts). Pass only the kept alerts for a strict export."""
    wins = [(a["mint"], *window(a["ts_ms"], interval_s, pre, post)[1:]) for a in alerts]
    kept = []
    for c in dedupe(candles):
        if any(m == c["mint"] and s <= c["ts_ms"] < e for m, s, e in wins):
            kept.append(c)
    kept.sort(key=lambda c: (c["mint"], c["ts_ms"]))
    return kept


def coverage_rows(
    candles: list[dict],
    alerts: list[dict],
    interval_s: int,
    pre: int,
    post: int,
    *,
    strict: bool = False,
    min_required_pre: int = 52,
    target_total: int = 5000,
) -> list[dict]:
    """SPEC §4, one dict per alert, sorted by alert_id."""
    deduped = dedupe(candles)
    width = interval_s * 1000
    rows = []
    for a in alerts:
        anc, start, end = window(a["ts_ms"], interval_s, pre, post)
        expected = pre + 1 + post
        inside = [c["ts_ms"] for c in deduped if c["mint"] == a["mint"] and start <= c["ts_ms"] < end]
        n_pre = sum(1 for t in inside if t < anc)
        n_post = sum(1 for t in inside if t >= anc)
        total = len(inside)
        # status by slots: is there a candle in each of the N+1+M slots?
        filled = 0
        for k in range(expected):
            lo = start + k * width
            if any(lo <= t < lo + width for t in inside):
                filled += 1
        if filled == expected:
            status = "complete"
        elif filled > 0:
            status = "partial"
        else:
            status = "insufficient"
        kept = (n_pre >= min_required_pre and total >= target_total) if strict else True
        rows.append(
            {
                "alert_id": a["alert_id"],
                "mint": a["mint"],
                "alert_ts_ms": a["ts_ms"],
                "anchor_ts_ms": anc,
                "window_start_ts_ms": start,
                "window_end_ts_ms": end,
                "expected_total": expected,
                "available_pre": n_pre,
                "available_post": n_post,
                "available_total": total,
                "missing": expected - total,
                "first_ts_ms": min(inside) if inside else None,
                "last_ts_ms": max(inside) if inside else None,
                "status": status,
                "kept": kept,
            }
        )
    rows.sort(key=lambda r: r["alert_id"])
    return rows


def union_points(ranges: list[tuple[str, int, int]]) -> set[tuple[str, int]]:
    """Every integer point covered by a list of half-open (mint, start, end) ranges."""
    return {(m, t) for m, s, e in ranges for t in range(s, e)}
