"""Contender: the original QuantBot exporter's algorithm (seed/parquet-lake-v1-plan.md, SPEC
"defects"), re-created for timing only. Do not copy any of this into lakeslice.

- ONE time range spanning every alert's window (earliest start .. latest end), for all mints
  of the alerts at once, in SQL built by string interpolation;
- every row into Python lists (``client.execute`` tuples);
- per alert, a Python scan of all fetched rows for its window; coverage counted in Python;
- rows inserted one by one (``INSERT ... VALUES (?, ...)``) into DuckDB per bucket, then each
  bucket ``COPY``'d to ``part-0000.parquet`` (``target_file_mb`` ignored); manifest hashed.

    python -m benchmarks.original HOST PORT ALERTS OUT_DIR --interval-s 60 --pre 52 --post 1000

Prints one JSON line: ``{"rows", "fetched", "alerts"}``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from benchmarks.jobargs import job_args


def main() -> None:
    args = job_args("host", "port", "alerts", "out", ints=("port",))

    import duckdb
    import pyarrow.parquet as pq
    from clickhouse_driver import Client

    width = args.interval_s * 1000
    alerts = pq.read_table(args.alerts).to_pylist()
    windows = []
    for a in alerts:
        anchor = a["ts_ms"] // width * width
        aid = hashlib.sha256(f"{a['mint']}|{a['ts_ms']}".encode()).hexdigest()[:16]
        windows.append(
            (aid, a["mint"], a["ts_ms"], anchor, anchor - args.pre * width, anchor + (args.post + 1) * width)
        )
    lo = min(w[4] for w in windows) // 1000
    hi = max(w[5] for w in windows) // 1000
    mints = sorted({w[1] for w in windows})
    in_list = ", ".join(f"'{m}'" for m in mints)  # the defect: values interpolated into SQL
    sql = (
        "SELECT token_address, toUInt32(timestamp), open, high, low, close, volume"
        f" FROM default.ohlcv_candles WHERE chain = '{args.chain}'"
        f" AND interval_seconds = {args.interval_s} AND token_address IN ({in_list})"
        f" AND timestamp >= toDateTime({lo}) AND timestamp < toDateTime({hi})"
    )
    client = Client(args.host, port=args.port)
    rows = client.execute(sql)  # list of tuples: one Python object per row and value
    client.disconnect()

    buckets: dict[str, dict[tuple, tuple]] = {}
    coverage = []
    for aid, mint, ts_ms, anchor, start, end in windows:
        mine = [r for r in rows if r[0] == mint and start <= r[1] * 1000 < end]
        seen: dict[int, tuple] = {}
        for r in mine:  # first row wins: depends on arrival order (another defect)
            seen.setdefault(r[1], r)
        pre = sum(1 for t in seen if t * 1000 < anchor)
        total = len(seen)
        slots = args.pre + 1 + args.post
        status = "complete" if total == slots else "partial" if total else "insufficient"
        ts_list = sorted(seen)
        coverage.append(
            (
                aid,
                mint,
                ts_ms,
                anchor,
                start,
                end,
                slots,
                pre,
                total - pre,
                total,
                slots - total,
                ts_list[0] * 1000 if ts_list else None,
                ts_list[-1] * 1000 if ts_list else None,
                status,
                True,
            )
        )
        bucket = hashlib.sha1(mint.encode()).hexdigest()[:2]
        dest = buckets.setdefault(bucket, {})
        for t, r in seen.items():
            dest.setdefault((mint, t), r)

    out = Path(args.out)
    con = duckdb.connect()
    files = []
    written = 0
    source = "clickhouse:default.ohlcv_candles"
    for bucket in sorted(buckets):
        con.execute(
            "CREATE OR REPLACE TABLE s (mint VARCHAR, ts TIMESTAMPTZ, interval_s INTEGER,"
            " open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, source VARCHAR)"
        )
        for (mint, t), r in sorted(buckets[bucket].items()):
            con.execute(
                "INSERT INTO s VALUES (?, to_timestamp(?), ?, ?, ?, ?, ?, ?, ?)",
                [mint, t, args.interval_s, r[2], r[3], r[4], r[5], r[6], source],
            )
            written += 1
        path = out / f"slices/mint_bucket={bucket}/part-0000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY s TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
        files.append(path)

    con.execute(
        "CREATE OR REPLACE TABLE cov (alert_id VARCHAR, mint VARCHAR, alert_ts_ms BIGINT,"
        " anchor_ts_ms BIGINT, window_start_ts_ms BIGINT, window_end_ts_ms BIGINT,"
        " expected_total BIGINT, available_pre BIGINT, available_post BIGINT,"
        " available_total BIGINT, missing BIGINT, first_ts_ms BIGINT, last_ts_ms BIGINT,"
        " status VARCHAR, kept BOOLEAN)"
    )
    for row in sorted(coverage):
        con.execute("INSERT INTO cov VALUES (" + ", ".join("?" * 15) + ")", list(row))
    cov_path = out / "outputs/coverage.parquet"
    cov_path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY cov TO '{cov_path}' (FORMAT parquet, COMPRESSION zstd)")
    files.append(cov_path)
    manifest = {
        "files": [
            {"path": str(p.relative_to(out)), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in files
        ]
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    print(json.dumps({"rows": written, "fetched": len(rows), "alerts": len(windows)}))


if __name__ == "__main__":
    main()
