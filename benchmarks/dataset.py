"""Deterministic benchmark data at a scale, cached under ``benchmarks/data/scale=<s>/``.

Scale 1 (the default): 2,000 mints x 5,000 one-minute candles (5 % gaps, 1 % duplicate rows
with other values), 3,000 alerts, window ``pre52_post1000``. Scale multiplies the mints and the
alerts, so candles and slice rows grow linearly; the candles per mint stay 5,000.

Files of one scale:
  candles.parquet        source columns, sorted by (token_address, timestamp)
  alerts.parquet         mint, ts_ms                      (3,000 x scale)
  alerts_x10.parquet     10 x the alerts over the same candles
  alerts_subset.parquet  the first 30 alerts (the original exporter's contender)
  slices.parquet         the expected slice rows (+ mint_bucket), by lakeslice.slice_windows
  ranges.tsv             merged windows of alerts.parquet (token_address, start_ms, end_ms)
  chdb/                  embedded ClickHouse seeded with the candles
  ch/                    a ClickHouse server's root (tests/chserver.py) with the candles loaded
Generation and loading are never timed. A ``stamp.json`` records what is there, so a second
run at the same scale reuses it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lakeslice.sources.base import QUANTBOT_COLUMNS, quantbot_ddl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"

MINTS = 2_000
CANDLES_PER_MINT = 5_000
ALERTS = 3_000
SUBSET_ALERTS = 30
INTERVAL = "1m"
INTERVAL_S = 60
WINDOW = "pre52_post1000"
PRE, POST = 52, 1000
GAP_FRACTION = 0.05
DUP_FRACTION = 0.01
CHAIN = "solana"
TABLE = "ohlcv_candles"
VERSION = 3  # bump when the generated data changes
CHUNK_MINTS = MINTS  # candles are generated and loaded this many mints at a time
ROW_GROUP = 128 * 1024

CH_DDL = quantbot_ddl("default.ohlcv_candles")


def _in_dir(name: str) -> property:
    """A file or directory of the scale's directory (see the module's docstring)."""
    return property(lambda self: self.dir / name)


@dataclass(frozen=True)
class Dataset:
    scale: float
    dir: Path
    stamp: dict

    candles = _in_dir("candles.parquet")
    alerts = _in_dir("alerts.parquet")
    alerts_x10 = _in_dir("alerts_x10.parquet")
    alerts_subset = _in_dir("alerts_subset.parquet")
    ranges_tsv = _in_dir("ranges.tsv")
    chdb = _in_dir("chdb")
    ch_root = _in_dir("ch")

    @property
    def slices(self) -> Path:
        """The expected slice rows: what the floor's write part writes (computed when first asked)."""
        if not (self.dir / "slices.parquet").exists():
            subprocess.run(
                [sys.executable, "-m", "benchmarks.dataset", "slices", str(self.dir)], cwd=ROOT, check=True
            )
        return self.dir / "slices.parquet"


def sizes(scale: float) -> dict:
    return {
        "mints": max(2, round(MINTS * scale)),
        "candles_per_mint": CANDLES_PER_MINT,
        "alerts": max(2, round(ALERTS * scale)),
        "alerts_x10": max(20, round(10 * ALERTS * scale)),
        "subset_alerts": SUBSET_ALERTS,
        "gap_fraction": GAP_FRACTION,
        "duplicate_fraction": DUP_FRACTION,
        "interval": INTERVAL,
        "window": WINDOW,
        "version": VERSION,
    }


def scale_dir(scale: float) -> Path:
    return DATA / f"scale={scale:g}"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def prepare(scale: float) -> Dataset:
    """Generate (or reuse) the files of ``scale``; the ClickHouse server is loaded separately."""
    d = scale_dir(scale)
    want = sizes(scale)
    stamp_path = d / "stamp.json"
    if stamp_path.exists():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("sizes") == want and stamp.get("files_ok"):
            return Dataset(scale, d, stamp)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    # Generation and chdb seeding in a child: chdb holds one data path per process.
    subprocess.run(
        [sys.executable, "-m", "benchmarks.dataset", "generate", str(d), json.dumps(want)],
        cwd=ROOT,
        check=True,
    )
    stamp = json.loads((d / "generated.json").read_text())
    stamp.update(sizes=want, files_ok=True, ch_loaded=False)
    stamp_path.write_text(json.dumps(stamp, indent=2))
    log(f"generated scale {scale:g} in {time.perf_counter() - t0:.1f}s: {stamp}")
    return Dataset(scale, d, stamp)


def candle_chunks(want: dict) -> Iterator[pl.DataFrame]:
    """The candles of ``want``, at most :data:`CHUNK_MINTS` mints at a time, in file order.

    Up to :data:`CHUNK_MINTS` mints (scale <= 1): one ``synthetic_candles`` call, the data of
    every earlier run. Beyond, chunk ``k`` is ``synthetic_candles(seed=7 + k)`` with its mints
    renamed to the ``k``-th slice of the sorted global mint list (the names the alerts draw
    from), so the chunks are disjoint in ``token_address`` and their concatenation is sorted:
    memory stays that of one chunk whatever the scale.
    """
    from lakeslice.synthetic import synthetic_candles, synthetic_mints

    total = want["mints"]
    n_chunks = -(-total // CHUNK_MINTS)
    names = sorted(synthetic_mints(total)) if n_chunks > 1 else []
    for k in range(n_chunks):
        lo, hi = k * total // n_chunks, (k + 1) * total // n_chunks
        chunk = synthetic_candles(
            mints=hi - lo,
            candles_per_mint=want["candles_per_mint"],
            interval_s=INTERVAL_S,
            gap_fraction=want["gap_fraction"],
            duplicate_fraction=want["duplicate_fraction"],
            chain=CHAIN,
            seed=7 + k,
        )
        if n_chunks > 1:
            own = synthetic_mints(hi - lo, seed=7 + k)
            chunk = chunk.with_columns(pl.col("token_address").replace_strict(own, names[lo:hi]))
        yield chunk.sort("token_address", "timestamp", maintain_order=True)


def _write_candles(d: Path, want: dict) -> int:
    """``candles.parquet`` and the chdb copy, one chunk at a time; returns the row count."""
    from lakeslice.sources.embedded import seed_chdb

    parts, rows, seed_s = [], 0, 0.0
    t = time.perf_counter()
    for k, chunk in enumerate(candle_chunks(want)):
        part = d / f"candles.part{k:04d}.parquet"
        chunk.write_parquet(part, compression="zstd", row_group_size=ROW_GROUP)
        parts.append(part)
        rows += chunk.height
        t_seed = time.perf_counter()
        seed_chdb(d / "chdb", chunk, replace=k == 0)
        seed_s += time.perf_counter() - t_seed
        log(f"candles: chunk {k}: {rows:,} rows so far, {time.perf_counter() - t:.0f}s")
        del chunk
    if len(parts) == 1:
        parts[0].rename(d / "candles.parquet")
    else:
        pl.scan_parquet(parts).sink_parquet(
            d / "candles.parquet", compression="zstd", row_group_size=ROW_GROUP, maintain_order=True
        )
        for part in parts:
            part.unlink()
    log(f"candles: {rows:,} rows in {time.perf_counter() - t:.1f}s (chdb seeding {seed_s:.1f}s of it)")
    return rows


def _generate(d: Path, want: dict) -> None:
    from lakeslice.alerts import normalize_alerts
    from lakeslice.synthetic import synthetic_alerts
    from lakeslice.transforms import alert_windows, merge_windows

    candles = _write_candles(d, want)
    common = dict(mints=want["mints"], candles_per_mint=want["candles_per_mint"], interval_s=INTERVAL_S)
    # The same mint at the same millisecond twice would be a duplicate alert id: drop it.
    alerts = synthetic_alerts(alerts=want["alerts"], **common).unique(["mint", "ts_ms"], maintain_order=True)
    alerts_x10 = synthetic_alerts(alerts=want["alerts_x10"], seed=12, **common)
    alerts_x10 = alerts_x10.unique(["mint", "ts_ms"], maintain_order=True)
    alerts.write_parquet(d / "alerts.parquet")
    alerts_x10.write_parquet(d / "alerts_x10.parquet")
    alerts.head(want["subset_alerts"]).write_parquet(d / "alerts_subset.parquet")

    ranges = merge_windows(
        alert_windows(normalize_alerts(alerts), interval=INTERVAL_S, window=WINDOW)
    ).collect()
    ranges.rename({"mint": "token_address"}).write_csv(d / "ranges.tsv", separator="\t", include_header=False)
    info = {
        "candles": candles,
        "alerts": alerts.height,
        "alerts_x10": alerts_x10.height,
        "ranges": ranges.height,
        "range_slots": int((ranges["end_ms"] - ranges["start_ms"]).sum() // (INTERVAL_S * 1000)),
    }
    (d / "generated.json").write_text(json.dumps(info))


def tsv_chunks(ds: Dataset) -> Iterator[Path]:
    """The candles as ClickHouse TabSeparated text (18.16 reads no Parquet), a chunk at a time.

    Each file is removed once the next is asked for: the disk holds one chunk of text.
    """
    rows, step = ds.stamp["candles"], CHUNK_MINTS * CANDLES_PER_MINT
    out = ds.dir / "candles.tsv"
    for offset in range(0, rows, step):
        (
            pl.scan_parquet(ds.candles)
            .slice(offset, step)
            .select(
                pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S") if c == "timestamp" else pl.col(c)
                for c in QUANTBOT_COLUMNS
            )
            .sink_csv(out, separator="\t", include_header=False, float_precision=None)
        )
        yield out
        out.unlink()


def _load_server(server, ds: Dataset) -> None:
    insert = "INSERT INTO default.ohlcv_candles FORMAT TabSeparated"
    argv = ["clickhouse-client", "--host", server.host, "--port", str(server.port), "--query", insert]
    for tsv in tsv_chunks(ds):
        with open(tsv, "rb") as fh:
            subprocess.run(argv, stdin=fh, check=True)


def start_server(ds: Dataset):
    """A ClickHouse server on the scale's root, loaded once (the data persists across runs)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from chserver import ClickHouseServer  # the tests' throwaway server, reused read-only

    ds.ch_root.mkdir(parents=True, exist_ok=True)
    server = ClickHouseServer(ds.ch_root).start(timeout=120)
    client = server.client(send_receive_timeout=3600)
    expected = ds.stamp["candles"]
    have = 0
    if client.execute("EXISTS TABLE default.ohlcv_candles")[0][0]:
        have = client.execute("SELECT count() FROM default.ohlcv_candles")[0][0]
    if have != expected:
        t = time.perf_counter()
        client.execute("DROP TABLE IF EXISTS default.ohlcv_candles")
        client.execute(CH_DDL)
        _load_server(server, ds)
        client.execute("OPTIMIZE TABLE default.ohlcv_candles FINAL")
        have = client.execute("SELECT count() FROM default.ohlcv_candles")[0][0]
        if have != expected:
            raise RuntimeError(f"ClickHouse holds {have} rows, expected {expected}")
        log(f"ClickHouse loaded {have:,} rows in {time.perf_counter() - t:.1f}s")
    client.disconnect()
    return server


def _slices(d: Path) -> None:
    import lakeslice as ls

    t = time.perf_counter()
    rows = ls.slice_windows(
        pl.scan_parquet(d / "candles.parquet"),
        pl.read_parquet(d / "alerts.parquet"),
        interval=INTERVAL,
        window=WINDOW,
    ).collect()
    rows.write_parquet(d / "slices.parquet.tmp", compression="zstd")
    (d / "slices.parquet.tmp").rename(d / "slices.parquet")
    log(f"expected slice rows: {rows.height:,} in {time.perf_counter() - t:.1f}s")


def _prepare_and_load(scale: float) -> None:
    """Everything of ``scale`` generated and loaded, nothing timed (``make bench-data``)."""
    server = start_server(prepare(scale))
    server.stop()


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        _prepare_and_load(float(sys.argv[2]))
    elif sys.argv[1] == "generate":
        _generate(Path(sys.argv[2]), json.loads(sys.argv[3]))
    elif sys.argv[1] == "slices":
        _slices(Path(sys.argv[2]))
