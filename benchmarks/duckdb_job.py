"""Contender: DuckDB doing lakeslice's job from the same Parquet file, the way a careful DuckDB
user would write it: windows per alert, candles semi-joined to the windows, deduplicated by the
same value rule (greatest volume, close, high, low, open), coverage per alert, slices written
with ``COPY ... (FORMAT parquet, PARTITION_BY (mint_bucket))`` where the bucket is
``left(sha1(mint), 2)``.

    python -m benchmarks.duckdb_job CANDLES ALERTS OUT_DIR [--interval-s 60 --pre 52 --post 1000]

Prints one JSON line: ``{"rows": slice rows, "alerts": coverage rows}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.jobargs import job_args

SQL_WINDOWS = """
CREATE TEMP TABLE w AS
SELECT alert_id, mint, alert_ts_ms, anchor_ts_ms,
       anchor_ts_ms - $pre * $width AS window_start_ts_ms,
       anchor_ts_ms + ($post + 1) * $width AS window_end_ts_ms
FROM (
  SELECT left(sha256(mint || '|' || CAST(ts_ms AS VARCHAR)), 16) AS alert_id, mint,
         ts_ms AS alert_ts_ms, (ts_ms // $width) * $width AS anchor_ts_ms
  FROM read_parquet($alerts)
)
"""

# Candles inside any window of their mint, one row per (mint, ts) by the value rule.
SQL_CANDLES = """
CREATE TEMP TABLE c AS
WITH raw AS (
  SELECT token_address AS mint, CAST(epoch_ms(timestamp) AS BIGINT) AS ts_ms,
         open, high, low, close, volume
  FROM read_parquet($candles)
  WHERE chain = $chain AND interval_seconds = $interval_s
    AND token_address IN (SELECT DISTINCT mint FROM w)
),
inside AS (
  SELECT r.* FROM raw r SEMI JOIN w
    ON r.mint = w.mint AND r.ts_ms >= w.window_start_ts_ms AND r.ts_ms < w.window_end_ts_ms
)
SELECT * FROM inside
QUALIFY row_number() OVER (
  PARTITION BY mint, ts_ms
  ORDER BY volume DESC, close DESC, high DESC, low DESC, open DESC) = 1
"""

SQL_COVERAGE = """
COPY (
  SELECT w.alert_id, w.mint, w.alert_ts_ms, w.anchor_ts_ms, w.window_start_ts_ms,
         w.window_end_ts_ms, $slots::BIGINT AS expected_total,
         count(c.ts_ms) FILTER (WHERE c.ts_ms < w.anchor_ts_ms) AS available_pre,
         count(c.ts_ms) FILTER (WHERE c.ts_ms >= w.anchor_ts_ms) AS available_post,
         count(c.ts_ms) AS available_total,
         $slots - count(c.ts_ms) AS missing,
         min(c.ts_ms) AS first_ts_ms, max(c.ts_ms) AS last_ts_ms,
         CASE WHEN count(c.ts_ms) = $slots THEN 'complete'
              WHEN count(c.ts_ms) > 0 THEN 'partial' ELSE 'insufficient' END AS status,
         true AS kept
  FROM w LEFT JOIN c
    ON c.mint = w.mint AND c.ts_ms >= w.window_start_ts_ms AND c.ts_ms < w.window_end_ts_ms
  GROUP BY ALL
  ORDER BY w.alert_id
) TO '{out}/outputs/coverage.parquet' (FORMAT parquet, COMPRESSION zstd)
"""

SQL_SLICES = """
COPY (
  SELECT mint, make_timestamptz(ts_ms * 1000) AS ts, $interval_s::INTEGER AS interval_s,
         open, high, low, close, volume, $label AS source, left(sha1(mint), 2) AS mint_bucket
  FROM c
  ORDER BY mint, ts_ms
) TO '{out}/slices' (FORMAT parquet, PARTITION_BY (mint_bucket), COMPRESSION zstd)
"""


def main() -> None:
    args = job_args("candles", "alerts", "out")

    import duckdb

    out = Path(args.out)
    (out / "outputs").mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    width = args.interval_s * 1000
    slots = args.pre + 1 + args.post
    con.execute(SQL_WINDOWS, {"pre": args.pre, "post": args.post, "width": width, "alerts": args.alerts})
    con.execute(SQL_CANDLES, {"candles": args.candles, "chain": args.chain, "interval_s": args.interval_s})
    # COPY targets cannot be parameters: the paths are ours (no user text).
    con.execute(SQL_COVERAGE.format(out=out), {"slots": slots})
    con.execute(
        SQL_SLICES.format(out=out),
        {"interval_s": args.interval_s, "label": f"parquet:{Path(args.candles).name}"},
    )
    rows = con.execute("SELECT count(*) FROM c").fetchone()[0]
    alerts = con.execute("SELECT count(*) FROM w").fetchone()[0]
    print(json.dumps({"rows": rows, "alerts": alerts}))


if __name__ == "__main__":
    main()
