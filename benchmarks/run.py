"""``make bench``: lakeslice side by side with the tools a user would pick instead.

    python -m benchmarks.run [--scale 1] [--repeats 3] [--only NAME,...] [--all] [--profile]

Environment: ``BENCH_SCALE`` (default 1), ``BENCH_REPEATS`` (default 3),
``BENCH_SLOW_REPEATS`` (repeats of the slow single-shot contenders, default 1).

Every contender is a whole process (``subprocess`` + ``os.wait4``: wall time and the child's
peak RSS); contenders are interleaved A B C … A B C … and the median wall time is reported.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import dataset as dsmod
from benchmarks.dask_cluster import DaskCluster, dask_overheads
from benchmarks.dataset import DATA, HERE, ROOT, log

RESULTS = HERE / "results"
OUT = DATA / "out"
PY = sys.executable
LAKESLICE = str(Path(sys.executable).with_name("lakeslice"))
MiB = 1024 * 1024

# Targets of issue 6.
TARGET_CH_VS_FLOOR = 1.3
TARGET_PARQUET_VS_DUCKDB = 0.33
TARGET_RSS_MIB = 512
TARGET_RSS_GROWTH_X10 = 1.5


@dataclass
class Run:
    wall_s: float
    peak_rss_mib: float
    cpu_s: float  # user + system CPU of the process (less sensitive to a shared machine)
    rows: int | None
    bytes: int
    extra: dict = field(default_factory=dict)


@dataclass
class Contender:
    name: str
    what: str
    argv: list[str]
    parse: Callable[[str], dict]
    repeats: int  # 'slow' contenders (see --slow-repeats) run fewer times
    stdout_to_file: str | None = None  # the floor fetch writes its Native stream here
    env: dict | None = None
    count: tuple | None = None  # (sql, externals): rows of a floor fetch, counted once untimed
    runs: list[Run] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return OUT / self.name


def run_process(c: Contender) -> Run:
    """One whole-process run: wall time from fork to reap, peak RSS from ``os.wait4``."""
    shutil.rmtree(c.out, ignore_errors=True)
    c.out.mkdir(parents=True)
    stdout_path = c.out / (c.stdout_to_file or "_stdout.txt")
    stderr_path = OUT / f"{c.name}.stderr.txt"
    env = {**os.environ, **(c.env or {})}
    load_before = os.getloadavg()[0]
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        t0 = time.perf_counter()
        proc = subprocess.Popen(c.argv, stdout=so, stderr=se, stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = stderr_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{c.name} exited {proc.returncode}: {' '.join(c.argv)}\n{tail}")
    text = "" if c.stdout_to_file else stdout_path.read_text()
    info = c.parse(text)
    size = info.get("bytes") or sum(
        p.stat().st_size for p in c.out.rglob("*") if p.is_file() and p.name != "_stdout.txt"
    )
    rss = usage.ru_maxrss / 1024  # KiB on Linux
    extra = {k: v for k, v in info.items() if k not in ("rows", "bytes")}
    extra["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return Run(wall, rss, usage.ru_utime + usage.ru_stime, info.get("rows"), size, extra)


def _json_last_line(text: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else {}


def _lakeslice_parse(text: str) -> dict:
    res = json.loads(text)
    return {"rows": res["total_rows"], "files": res["total_files"], "rows_fetched": res["rows_fetched"]}


def _lakeslice_s3_parse(text: str) -> dict:
    """As :func:`_lakeslice_parse`; the bytes written are the manifest's (nothing is on disk)."""
    res = json.loads(text)
    written = sum(f["bytes"] for f in res["manifest"]["files"])
    return {**_lakeslice_parse(text), "bytes": written}


# --------------------------------------------------------------------------------------------
# Contenders


def floor_sql(ds, lo_s: int, hi_s: int) -> str:
    """The raw dump a user would write: exactly the rows in the ranges, mint string per row."""
    return (
        "SELECT token_address, timestamp, interval_seconds, open, high, low, close, volume FROM ("
        "SELECT token_address, toInt64(toUInt32(timestamp)) * 1000 AS ts_ms, timestamp,"
        " interval_seconds, open, high, low, close, volume FROM default.ohlcv_candles"
        f" WHERE chain = '{dsmod.CHAIN}' AND interval_seconds = {dsmod.INTERVAL_S}"
        f" AND timestamp >= toDateTime({lo_s}) AND timestamp <= toDateTime({hi_s})"
        " AND token_address IN (SELECT token_address FROM _lakeslice_ranges)) AS c"
        " ALL INNER JOIN _lakeslice_ranges AS r USING (token_address)"
        " WHERE ts_ms >= start_ms AND ts_ms < end_ms"
    )


def floor_inputs(ds) -> tuple[str, str, Path, Path]:
    """Raw-dump SQL, lakeslice's own SQL, and the external-table files both read."""
    import polars as pl

    from lakeslice.sources.sql import TableInfo, candle_query

    ranges = pl.read_csv(
        ds.ranges_tsv,
        separator="\t",
        has_header=False,
        new_columns=["token_address", "start_ms", "end_ms"],
        schema_overrides={"token_address": pl.String, "start_ms": pl.Int64, "end_ms": pl.Int64},
    )
    lo_ms, hi_ms = int(ranges["start_ms"].min()), int(ranges["end_ms"].max())
    lo_s, hi_s = -(-lo_ms // 1000), -(-hi_ms // 1000) - 1
    with_ids = ranges.with_columns(mint_id=(pl.col("token_address").rank("dense") - 1).cast(pl.Int32)).select(
        "token_address", "mint_id", "start_ms", "end_ms"
    )
    ranges_ids = ds.dir / "ranges_ids.tsv"
    with_ids.write_csv(ranges_ids, separator="\t", include_header=False)
    params = ds.dir / "params.tsv"
    params.write_text(f"{dsmod.CHAIN}\t{dsmod.INTERVAL_S}\t{lo_ms}\t{hi_ms}\t{lo_s}\t{hi_s}\n")
    own = candle_query("default", dsmod.TABLE, TableInfo("DateTime", False), windows=True)
    return floor_sql(ds, lo_s, hi_s), own, ranges_ids, params


def ch_client_argv(server, sql: str, externals: list[tuple[Path, str, str]]) -> list[str]:
    # --format/--query first: 18.16 reads every option after --external as the table's.
    argv = [
        "clickhouse-client",
        "--host",
        server.host,
        "--port",
        str(server.port),
        "--format",
        "Native",
        "--query",
        sql,
    ]
    for path, name, structure in externals:
        argv += ["--external", f"--file={path}", f"--name={name}", f"--structure={structure}"]
    return argv


def build(ds, server, repeats: int, slow_repeats: int, s3=None, dask_url: str = "") -> list[Contender]:
    from lakeslice.sources.sql import PARAMS_STRUCTURE, RANGES_STRUCTURE

    def ls(name, what, alerts, source, reps=repeats, extra=()):
        c = Contender(name, what, [], _lakeslice_parse, reps, env={"SOURCE_DATE_EPOCH": "1704067200"})
        c.argv = [
            LAKESLICE,
            "export",
            "--alerts",
            str(alerts),
            "--interval",
            dsmod.INTERVAL,
            "--window",
            dsmod.WINDOW,
            "--source",
            source,
            "--data-root",
            str(c.out),
            "--run-id",
            "bench",
            "--format",
            "json",
            *extra,
        ]
        return c

    ch_url = server.url("default")
    pq_url = f"parquet://{ds.candles}"
    raw_sql, own_sql, ranges_ids, params = floor_inputs(ds)
    struct = lambda cols: ", ".join(f"{n} {t}" for n, t in cols)  # noqa: E731
    raw_ext = [(ds.ranges_tsv, "_lakeslice_ranges", "token_address String, start_ms Int64, end_ms Int64")]
    own_ext = [
        (ranges_ids, "_lakeslice_ranges", struct(RANGES_STRUCTURE)),
        (params, "_lakeslice_params", struct(PARAMS_STRUCTURE)),
    ]
    floor_write = Contender(
        "floor-write",
        "Polars write_parquet(partition_by=mint_bucket) of the slice rows in memory",
        [PY, "-m", "benchmarks.floor_write", str(ds.slices), ""],
        _json_last_line,
        repeats,
    )
    floor_write.argv[4] = str(floor_write.out)
    duck = Contender(
        "duckdb",
        "DuckDB: windows, semi join, dedup, coverage, COPY PARTITION_BY, from Parquet",
        [
            PY,
            "-m",
            "benchmarks.duckdb_job",
            str(ds.candles),
            str(ds.alerts),
            "",
            "--interval-s",
            str(dsmod.INTERVAL_S),
            "--pre",
            str(dsmod.PRE),
            "--post",
            str(dsmod.POST),
        ],
        _json_last_line,
        repeats,
    )
    duck.argv[5] = str(duck.out)
    original = Contender(
        "original-subset",
        f"the original algorithm, {dsmod.SUBSET_ALERTS} alerts, from the server",
        [
            PY,
            "-m",
            "benchmarks.original",
            server.host,
            str(server.port),
            str(ds.alerts_subset),
            "",
            "--interval-s",
            str(dsmod.INTERVAL_S),
            "--pre",
            str(dsmod.PRE),
            "--post",
            str(dsmod.POST),
        ],
        _json_last_line,
        slow_repeats,
    )
    original.argv[6] = str(original.out)
    return [
        ls("ls-clickhouse", "lakeslice export --source clickhouse://", ds.alerts, ch_url),
        ls(
            "ls-dask",
            "ls-clickhouse with --executor dask:// (2 worker processes, 1 thread each)",
            ds.alerts,
            ch_url,
            extra=("--executor", dask_url),
        ),
        Contender(
            "floor-fetch",
            "clickhouse-client --format Native: the slice rows (mint string per row)",
            ch_client_argv(server, raw_sql, raw_ext),
            lambda _t: {},
            repeats,
            stdout_to_file="rows.native",
            count=(raw_sql, raw_ext),
        ),
        floor_write,
        Contender(
            "floor-fetch-ids",
            "clickhouse-client --format Native: lakeslice's own query (mint_id)",
            ch_client_argv(server, own_sql, own_ext),
            lambda _t: {},
            slow_repeats,
            stdout_to_file="rows.native",
            count=(own_sql, own_ext),
        ),
        ls("ls-chdb", "lakeslice export --source chdb://", ds.alerts, f"chdb://{ds.chdb}", slow_repeats),
        ls("ls-parquet", "lakeslice export --source parquet://", ds.alerts, pq_url),
        *(
            [
                s3_contender(
                    ls("ls-parquet-s3", "ls-parquet into --data-root s3:// (SeaweedFS)", ds.alerts, pq_url),
                    s3,
                )
            ]
            if s3
            else []
        ),
        duck,
        ls(
            "ls-clickhouse-x10",
            "lakeslice, clickhouse://, 10x the alerts",
            ds.alerts_x10,
            ch_url,
            slow_repeats,
        ),
        ls("ls-parquet-x10", "lakeslice, parquet://, 10x the alerts", ds.alerts_x10, pq_url, slow_repeats),
        ls(
            "ls-subset",
            f"lakeslice, clickhouse://, the same {dsmod.SUBSET_ALERTS} alerts",
            ds.alerts_subset,
            ch_url,
            slow_repeats,
        ),
        original,
    ]


def count_rows(server, sql: str, ext_files: list[tuple[Path, str, str]]) -> int:
    """Rows the floor fetch returns (once, untimed), through the same client and files."""
    argv = ch_client_argv(server, f"SELECT count() FROM ({sql})", ext_files)
    argv[argv.index("Native")] = "TabSeparated"  # the result's format, before --external
    return int(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip())


# --------------------------------------------------------------------------------------------
# Summary


def s3_contender(c: Contender, s3) -> Contender:
    """``c`` writing to the local SeaweedFS S3 server instead of a directory (same data)."""
    bucket = "bench"
    s3.make_bucket(bucket)
    root = c.argv.index("--data-root") + 1
    c.argv[root] = f"s3://{bucket}/{c.name}"
    c.argv.append("--overwrite")  # every round replaces the previous round's run
    c.env = {**(c.env or {}), **s3.env()}
    c.parse = _lakeslice_s3_parse
    return c


def start_s3():
    """The tests' SeaweedFS S3 server (tests/s3server.py), on free loopback ports."""
    sys.path.insert(0, str(ROOT / "tests"))
    from s3server import SeaweedS3

    server = SeaweedS3()
    server.start()
    return server


def summarize(c: Contender) -> dict:
    walls = [r.wall_s for r in c.runs]
    med = statistics.median(walls)
    rows = c.runs[-1].rows
    size = statistics.median([r.bytes for r in c.runs])
    return {
        "what": c.what,
        "runs": [r.__dict__ for r in c.runs],
        "median_wall_s": med,
        "median_cpu_s": statistics.median(r.cpu_s for r in c.runs),
        "rows": rows,
        "rows_per_s": rows / med if rows else None,
        "bytes": size,
        "mb_per_s": size / med / 1e6 if med else None,
        "peak_rss_mib": max(r.peak_rss_mib for r in c.runs),
    }


def ratios_and_targets(res: dict) -> tuple[dict, list[dict]]:
    def wall(name):
        return res[name]["median_wall_s"] if name in res else None

    floor = None
    if "floor-fetch" in res and "floor-write" in res:
        fw = statistics.median(r["extra"]["write_s"] for r in res["floor-write"]["runs"])
        floor = {"fetch_s": wall("floor-fetch"), "write_s": fw, "total_s": wall("floor-fetch") + fw}
    ratios = {}
    if floor and "ls-clickhouse" in res:
        ratios["ls-clickhouse / floor"] = wall("ls-clickhouse") / floor["total_s"]
    if floor and "ls-chdb" in res:
        ratios["ls-chdb / floor"] = wall("ls-chdb") / floor["total_s"]
    if "ls-parquet" in res and "duckdb" in res:
        ratios["ls-parquet / duckdb"] = wall("ls-parquet") / wall("duckdb")
    if "ls-parquet" in res and "ls-parquet-s3" in res:
        ratios["ls-parquet-s3 / ls-parquet"] = wall("ls-parquet-s3") / wall("ls-parquet")
    if "ls-clickhouse" in res and "duckdb" in res:
        ratios["ls-clickhouse / duckdb"] = wall("ls-clickhouse") / wall("duckdb")
    if "ls-subset" in res and "original-subset" in res:
        ratios["ls-subset / original-subset"] = wall("ls-subset") / wall("original-subset")
    for src in ("clickhouse", "parquet"):
        a, b = f"ls-{src}", f"ls-{src}-x10"
        if a in res and b in res:
            ratios[f"rss {b} / {a}"] = res[b]["peak_rss_mib"] / res[a]["peak_rss_mib"]
            ratios[f"wall {b} / {a}"] = wall(b) / wall(a)
    if "ls-parquet" in res and "duckdb" in res:
        ratios["rss ls-parquet / duckdb"] = res["ls-parquet"]["peak_rss_mib"] / res["duckdb"]["peak_rss_mib"]

    targets = []

    def target(name, value, limit):
        if value is not None:
            targets.append({"target": name, "value": value, "limit": limit, "ok": value <= limit})

    target("ls-clickhouse / floor <= 1.3", ratios.get("ls-clickhouse / floor"), TARGET_CH_VS_FLOOR)
    target("ls-parquet / duckdb <= 0.33", ratios.get("ls-parquet / duckdb"), TARGET_PARQUET_VS_DUCKDB)
    for name in ("ls-clickhouse", "ls-chdb", "ls-parquet"):
        if name in res:
            target(f"{name} peak RSS <= 512 MiB", res[name]["peak_rss_mib"], TARGET_RSS_MIB)
    for src in ("clickhouse", "parquet"):
        key = f"rss ls-{src}-x10 / ls-{src}"
        target(f"{key} < 1.5", ratios.get(key), TARGET_RSS_GROWTH_X10)
    return {"floor": floor, **ratios}, targets


def print_report(meta: dict, res: dict, ratios: dict, targets: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, width=max(shutil.get_terminal_size((140, 24)).columns, 140))
    t = Table(
        title=f"lakeslice benchmarks, scale {meta['scale']:g} "
        f"({meta['data']['candles']:,} candles, {meta['data']['alerts']:,} alerts, "
        f"{dsmod.WINDOW})"
    )
    for col in (
        "contender",
        "runs",
        "median wall s",
        "cpu s",
        "rows",
        "rows/s",
        "MB written",
        "MB/s",
        "peak RSS MiB",
    ):
        t.add_column(col, justify="left" if col == "contender" else "right")
    for name, r in res.items():
        t.add_row(
            name,
            str(len(r["runs"])),
            f"{r['median_wall_s']:.2f}",
            f"{r['median_cpu_s']:.2f}",
            f"{r['rows']:,}" if r["rows"] else "-",
            f"{r['rows_per_s']:,.0f}" if r["rows_per_s"] else "-",
            f"{r['bytes'] / 1e6:.1f}",
            f"{r['mb_per_s']:.1f}",
            f"{r['peak_rss_mib']:.0f}",
        )
    con.print(t)
    floor = ratios.get("floor")
    if floor:
        con.print(
            f"floor = fetch {floor['fetch_s']:.2f}s + write {floor['write_s']:.2f}s = {floor['total_s']:.2f}s"
        )
    for k, v in ratios.items():
        if k != "floor":
            con.print(f"  {k:32s} {v:6.2f}")
    for tg in targets:
        mark = "[green]ok  [/]" if tg["ok"] else "[red]MISS[/]"
        con.print(f"  {mark} {tg['target']:40s} {tg['value']:.2f}")


def versions() -> dict:
    import chdb
    import duckdb
    import polars
    import pyarrow

    import lakeslice

    out = {
        "lakeslice": lakeslice.__version__,
        "polars": polars.__version__,
        "pyarrow": pyarrow.__version__,
        "duckdb": duckdb.__version__,
        "chdb": chdb.__version__,
        "python": platform.python_version(),
    }
    try:
        out["git"] = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------------------------
# Profiles (optional)


def profile(contenders: list[Contender]) -> None:
    """py-spy (when installed) over the lakeslice ClickHouse and Parquet paths."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(spy, os.X_OK):
        log("--profile: py-spy is not installed (pip install py-spy into the venv); skipped")
        return
    pdir = DATA / "profiles"
    pdir.mkdir(parents=True, exist_ok=True)
    for c in contenders:
        if c.name not in ("ls-clickhouse", "ls-parquet", "ls-chdb"):
            continue
        shutil.rmtree(c.out, ignore_errors=True)
        for fmt, ext in (("speedscope", "json"), ("raw", "txt")):
            out = pdir / f"{c.name}.{ext}"
            subprocess.run(
                [spy, "record", "--rate", "250", "--format", fmt, "-o", str(out), "--", *c.argv],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **(c.env or {})},
            )
            shutil.rmtree(c.out, ignore_errors=True)
        log(f"profile of {c.name}: {pdir / c.name}.json (speedscope), .txt (collapsed stacks)")
        print(top_frames(pdir / f"{c.name}.txt"))


def top_frames(raw: Path, n: int = 15) -> str:
    """Where the wall time goes, from py-spy's collapsed stacks (recorded with ``--idle``, so
    time the main thread waits on Polars/driver threads counts where it waits).

    Two views: the deepest lakeslice frame (file:line) of each sample, and the inclusive share
    per lakeslice function. Samples under an import are lumped as ``(imports)``.
    """
    import re
    from collections import Counter

    own = re.compile(r"\((?!.*site-packages)(\S*/)?lakeslice/(?!cli\.py)")
    deepest: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        total += k
        frames = stack.split(";")
        mine = [f for f in frames if own.search(f)]
        if any("importlib" in f for f in frames):
            deepest["(imports)"] += k
        else:
            deepest[mine[-1] if mine else f"(outside lakeslice) {frames[-1]}"] += k
        for f in {re.sub(r":\d+\)", ")", f) for f in mine}:
            incl[f] += k
    out = [f"{raw.stem}: {total} samples (--idle: about wall time)", " deepest lakeslice frame:"]
    out += [f"  {v / total:6.1%}  {key[:130]}" for key, v in deepest.most_common(n)]
    out += [" inclusive per lakeslice function:"]
    out += [f"  {v / total:6.1%}  {key[:130]}" for key, v in incl.most_common(n)]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1")))
    ap.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", "3")))
    ap.add_argument(
        "--slow-repeats",
        type=int,
        default=int(os.environ.get("BENCH_SLOW_REPEATS", "1")),
        help="repeats of original-subset and the x10 variants (default 1)",
    )
    ap.add_argument(
        "--only", default=os.environ.get("BENCH_ONLY", ""), help="comma-separated contender names"
    )
    ap.add_argument("--profile", action="store_true", help="also record py-spy profiles")
    ap.add_argument(
        "--all",
        action="store_true",
        default=os.environ.get("BENCH_ALL") == "1",
        help="also ls-parquet-x10 (BENCH_ALL=1)",
    )
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # so the server is stopped on kill
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1) * 0.5:
        log(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs: timings will be noisy")

    started = time.perf_counter()
    ds = dsmod.prepare(args.scale)
    server = dsmod.start_server(ds)
    s3 = None
    dask = DaskCluster(OUT / "dask-logs")
    dask_note: dict = {}
    try:
        if not args.only or "ls-parquet-s3" in args.only.split(","):
            s3 = start_s3()
        contenders = build(ds, server, args.repeats, args.slow_repeats, s3, dask.url)
        if args.only:
            keep = set(args.only.split(","))
            contenders = [c for c in contenders if c.name in keep]
        elif not args.all:
            contenders = [c for c in contenders if c.name != "ls-parquet-x10"]
        if any(c.name == "ls-dask" for c in contenders):
            dask.start()  # untimed, like the server
        floor_rows = {c.name: count_rows(server, *c.count) for c in contenders if c.count}
        log(
            f"data ready in {time.perf_counter() - started:.0f}s; running "
            f"{', '.join(c.name for c in contenders)}"
        )
        rounds = max(c.repeats for c in contenders)
        for r in range(rounds):
            for c in contenders:
                if r < c.repeats:
                    run = run_process(c)
                    if c.name in floor_rows:
                        run.rows = floor_rows[c.name]
                    c.runs.append(run)
                    log(
                        f"round {r + 1}/{rounds} {c.name}: {run.wall_s:.2f}s, "
                        f"{run.peak_rss_mib:.0f} MiB, rows {run.rows}"
                    )
        if args.profile:
            profile(contenders)
        if dask.procs:
            dask_note = dask_overheads(
                dask.url,
                server.url("default"),
                alerts=ds.alerts,
                window=dsmod.WINDOW,
                interval=dsmod.INTERVAL,
                out=OUT / "dask-note",
            )
    finally:
        dask.stop()
        server.stop()
        if s3 is not None:
            s3.cleanup()

    res = {c.name: summarize(c) for c in contenders if c.runs}
    ratios, targets = ratios_and_targets(res)
    meta = {
        "scale": args.scale,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "slow_repeats": args.slow_repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "versions": versions(),
        "data": {**ds.stamp, "interval": dsmod.INTERVAL, "window": dsmod.WINDOW},
        "bench_seconds": round(time.perf_counter() - started, 1),
        "loadavg_1m_max": max(r["extra"]["loadavg_1m"][1] for v in res.values() for r in v["runs"]),
    }
    doc = {"meta": meta, "contenders": res, "ratios": ratios, "targets": targets}
    if dask_note:
        doc["dask"] = dask_note
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}-scale{args.scale:g}.json"
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print_report(meta, res, ratios, targets)
    if dask_note:
        print("where ls-dask's time goes:", json.dumps(dask_note, sort_keys=True))
    if meta["loadavg_1m_max"] > (os.cpu_count() or 1):
        print(
            f"warning: 1-minute load average reached {meta['loadavg_1m_max']:.1f} on "
            f"{os.cpu_count()} CPUs during the runs: other work competed for the CPUs"
        )
    print(
        f"results: {path.relative_to(ROOT)} (and benchmarks/results/latest.json); "
        f"{meta['bench_seconds']:.0f}s in all"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
