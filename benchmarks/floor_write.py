"""Floor, part 2: a Polars partitioned write of the slice rows, already in memory.

The rows (slice columns + ``mint_bucket``, sorted by mint, ts) were computed once with
``lakeslice.slice_windows`` when the data was prepared (``slices.parquet`` of the scale). They
are read first, untimed; then only ``DataFrame.write_parquet(dir, partition_by="mint_bucket")``
(zstd) is timed.

    python -m benchmarks.floor_write SLICES_PARQUET OUT_DIR

Prints one JSON line: ``{"rows", "write_s", "bytes"}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    slices, out = Path(sys.argv[1]), Path(sys.argv[2])

    import polars as pl

    rows = pl.read_parquet(slices).rechunk()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows.write_parquet(out, partition_by="mint_bucket", compression="zstd")
    write_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    print(json.dumps({"rows": rows.height, "write_s": write_s, "bytes": size}))


if __name__ == "__main__":
    main()
