"""``make bench``: lakeslice side by side with the tools a user would pick instead.

    python -m benchmarks.run [--scale 1] [--big-scale 10] [--repeats 3] [--only NAME,...] [--all]

Environment: ``BENCH_SCALE`` (default 1), ``BENCH_BIG_SCALE`` (default 10 with the whole scale-1
set, 0 skips it), ``BENCH_REPEATS`` (default 3), ``BENCH_SLOW_REPEATS`` (repeats of the slow
single-shot contenders, default 1), ``BENCH_BIG_REPEATS`` (default 1), ``BENCH_ONLY``.

Every contender is a whole process, forked by a small launcher process (``launcher.py``: wall
time, CPU time and the child's own peak RSS from ``os.wait4``); contenders are interleaved
A B C … A B C … and medians are reported. See benchmarks/README.md.
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
from benchmarks import report
from benchmarks.dask_cluster import DaskCluster, dask_overheads
from benchmarks.dataset import DATA, HERE, ROOT, log

RESULTS = HERE / "results"
OUT = DATA / "out"
PY = sys.executable
LAKESLICE = str(Path(sys.executable).with_name("lakeslice"))
CPUS = os.cpu_count() or 1

#: The lakeslice contenders run again at the big scale (growth of memory and time).
BIG_CONTENDERS = ("ls-clickhouse", "ls-parquet", "ls-chdb")
#: Start-up rows: lakeslice commands that do no work; at least this many runs each.
STARTUP = {
    "start-version": ["--version"],
    "start-help": ["--help"],
    "start-export-help": ["export", "--help"],
}
STARTUP_REPEATS = 7


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


class Launcher:
    """The launcher process (``launcher.py``): forks every contender, reports ``wait4``."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PY, "-S", "-I", str(HERE / "launcher.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def run(self, argv: list[str], *, env: dict, stdout: Path, stderr: Path) -> dict:
        """Run ``argv`` to its end: ``{"wall_s", "maxrss_kib", "cpu_s", "exit"}``."""
        assert self.proc.stdin and self.proc.stdout
        req = {"argv": argv, "env": env, "cwd": str(ROOT), "stdout": str(stdout), "stderr": str(stderr)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self.proc.stdout.readline())["pid"]
        try:
            return json.loads(self.proc.stdout.readline())
        except BaseException:
            os.kill(pid, signal.SIGKILL)  # interrupted: the contender must not outlive the bench
            raise

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_process(c: Contender, launcher: Launcher) -> Run:
    """One whole-process run: wall time from fork to reap, CPU and peak RSS from ``os.wait4``."""
    shutil.rmtree(c.out, ignore_errors=True)
    c.out.mkdir(parents=True)
    stdout_path = c.out / (c.stdout_to_file or "_stdout.txt")
    stderr_path = OUT / f"{c.name}.stderr.txt"
    load_before = os.getloadavg()[0]
    done = launcher.run(c.argv, env={**os.environ, **(c.env or {})}, stdout=stdout_path, stderr=stderr_path)
    load_after = os.getloadavg()[0]
    if done["exit"] != 0:
        tail = stderr_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{c.name} exited {done['exit']}: {' '.join(c.argv)}\n{tail}")
    text = "" if c.stdout_to_file else stdout_path.read_text()
    info = c.parse(text)
    size = info.get("bytes") or sum(
        p.stat().st_size for p in c.out.rglob("*") if p.is_file() and p.name != "_stdout.txt"
    )
    extra = {k: v for k, v in info.items() if k not in ("rows", "bytes")}
    extra["loadavg_1m"] = [round(load_before, 2), round(load_after, 2)]
    return Run(done["wall_s"], done["maxrss_kib"] / 1024, done["cpu_s"], info.get("rows"), size, extra)


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


def build(
    ds, server, wanted: Callable[[str], bool], *, repeats: int, slow_repeats: int, s3=None, dask_url: str = ""
) -> list[Contender]:
    """The contenders of ``ds`` whose names are ``wanted``, in round order.

    Built lazily: the floor's inputs (the expected slices) are computed only when a floor
    contender is wanted.
    """
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

    def job(name, what, module, inputs, reps=repeats, windows=True):
        """``python -m benchmarks.MODULE *inputs OUT [--interval-s --pre --post]`` (one JSON line)."""
        c = Contender(name, what, [], _json_last_line, reps)
        opts = ["--interval-s", str(dsmod.INTERVAL_S), "--pre", str(dsmod.PRE), "--post", str(dsmod.POST)]
        c.argv = [PY, "-m", f"benchmarks.{module}", *map(str, inputs), str(c.out), *(opts if windows else [])]
        return c

    def startup(name, args):
        c = Contender(name, f"lakeslice {' '.join(args)}", [LAKESLICE, *args], lambda _t: {}, 0)
        c.repeats = max(STARTUP_REPEATS, repeats)
        return c

    def floor_fetch(name, reps, own):
        raw_sql, own_sql, ranges_ids, params = floor_inputs(ds)
        struct = lambda cols: ", ".join(f"{n} {t}" for n, t in cols)  # noqa: E731
        if own:
            sql, ext = (
                own_sql,
                [
                    (ranges_ids, "_lakeslice_ranges", struct(RANGES_STRUCTURE)),
                    (params, "_lakeslice_params", struct(PARAMS_STRUCTURE)),
                ],
            )
            what = "clickhouse-client --format Native: lakeslice's own query (mint_id)"
        else:
            ranges = "token_address String, start_ms Int64, end_ms Int64"
            sql, ext = raw_sql, [(ds.ranges_tsv, "_lakeslice_ranges", ranges)]
            what = "clickhouse-client --format Native: the slice rows (mint string per row)"
        return Contender(
            name,
            what,
            ch_client_argv(server, sql, ext),
            lambda _t: {},
            reps,
            stdout_to_file="rows.native",
            count=(sql, ext),
        )

    ch_url = server.url("default")
    pq_url = f"parquet://{ds.candles}"
    makers: dict[str, Callable[[], Contender]] = {
        **{name: (lambda n=name, a=args: startup(n, a)) for name, args in STARTUP.items()},
        "ls-clickhouse": lambda: ls(
            "ls-clickhouse", "lakeslice export --source clickhouse://", ds.alerts, ch_url
        ),
        "ls-dask": lambda: ls(
            "ls-dask",
            "ls-clickhouse with --executor dask:// (2 worker processes, 1 thread each)",
            ds.alerts,
            ch_url,
            extra=("--executor", dask_url),
        ),
        "floor-fetch": lambda: floor_fetch("floor-fetch", repeats, own=False),
        "floor-write": lambda: job(
            "floor-write",
            "Polars write_parquet(partition_by=mint_bucket) of the slice rows in memory",
            "floor_write",
            [ds.slices],
            windows=False,
        ),
        "floor-fetch-ids": lambda: floor_fetch("floor-fetch-ids", slow_repeats, own=True),
        "ls-chdb": lambda: ls(
            "ls-chdb", "lakeslice export --source chdb://", ds.alerts, f"chdb://{ds.chdb}", slow_repeats
        ),
        "ls-parquet": lambda: ls("ls-parquet", "lakeslice export --source parquet://", ds.alerts, pq_url),
        "ls-parquet-s3": lambda: s3_contender(
            ls("ls-parquet-s3", "ls-parquet into --data-root s3:// (SeaweedFS)", ds.alerts, pq_url), s3
        ),
        "duckdb": lambda: job(
            "duckdb",
            "DuckDB: windows, semi join, dedup, coverage, COPY PARTITION_BY, from Parquet",
            "duckdb_job",
            [ds.candles, ds.alerts],
        ),
        "ls-clickhouse-x10": lambda: ls(
            "ls-clickhouse-x10",
            "lakeslice, clickhouse://, 10x the alerts",
            ds.alerts_x10,
            ch_url,
            slow_repeats,
        ),
        "ls-parquet-x10": lambda: ls(
            "ls-parquet-x10", "lakeslice, parquet://, 10x the alerts", ds.alerts_x10, pq_url, slow_repeats
        ),
        "ls-subset": lambda: ls(
            "ls-subset",
            f"lakeslice, clickhouse://, the same {dsmod.SUBSET_ALERTS} alerts",
            ds.alerts_subset,
            ch_url,
            slow_repeats,
        ),
        "original-subset": lambda: job(
            "original-subset",
            f"the original algorithm, {dsmod.SUBSET_ALERTS} alerts, from the server",
            "original",
            [server.host, server.port, ds.alerts_subset],
            slow_repeats,
        ),
    }
    return [make() for name, make in makers.items() if wanted(name) and (s3 or name != "ls-parquet-s3")]


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


def ratios(res: dict) -> dict:
    """The floor and the ratios lakeslice / peer of one scale's results."""

    def wall(name):
        return res[name]["median_wall_s"]

    out: dict = {}
    if "floor-fetch" in res and "floor-write" in res:
        fw = statistics.median(r["extra"]["write_s"] for r in res["floor-write"]["runs"])
        out["floor"] = {"fetch_s": wall("floor-fetch"), "write_s": fw, "total_s": wall("floor-fetch") + fw}
    pairs = [
        ("ls-clickhouse", "floor"),
        ("ls-chdb", "floor"),
        ("ls-parquet", "duckdb"),
        ("ls-parquet-s3", "ls-parquet"),
        ("ls-clickhouse", "duckdb"),
        ("ls-subset", "original-subset"),
    ]
    for a, b in pairs:
        if a in res and (b in res or b in out):
            out[f"{a} / {b}"] = wall(a) / (out[b]["total_s"] if b == "floor" else wall(b))
    for src in ("clickhouse", "parquet"):
        a, b = f"ls-{src}", f"ls-{src}-x10"
        if a in res and b in res:
            out[f"rss {b} / {a}"] = res[b]["peak_rss_mib"] / res[a]["peak_rss_mib"]
            out[f"wall {b} / {a}"] = wall(b) / wall(a)
    if "ls-parquet" in res and "duckdb" in res:
        out["rss ls-parquet / duckdb"] = res["ls-parquet"]["peak_rss_mib"] / res["duckdb"]["peak_rss_mib"]
    return out


def growth(res: dict, big: dict) -> dict:
    """Per contender run at both scales: peak RSS and wall time, big scale / main scale."""
    return {
        name: {
            "rss": big[name]["peak_rss_mib"] / res[name]["peak_rss_mib"],
            "wall": big[name]["median_wall_s"] / res[name]["median_wall_s"],
            "cpu": big[name]["median_cpu_s"] / res[name]["median_cpu_s"],
        }
        for name in big
        if name in res
    }


def targets(res: dict, rat: dict, grow: dict, scale_factor: float) -> list[dict]:
    """Issue 13's targets, each with its value and ok/MISS (absent rows are left out)."""
    out: list[dict] = []

    def target(name, value, limit, goal=None):
        if value is not None:
            out.append({"target": name, "value": value, "limit": limit, "goal": goal, "ok": value <= limit})

    target("ls-clickhouse / floor", rat.get("ls-clickhouse / floor"), 1.3, 1.0)
    target("ls-parquet / duckdb", rat.get("ls-parquet / duckdb"), 0.6, 0.33)
    for name in ("ls-clickhouse", "ls-chdb", "ls-parquet"):
        if name in res:
            target(f"{name} peak RSS MiB", res[name]["peak_rss_mib"], 512, 256)
    for src in ("clickhouse", "parquet"):
        key = f"rss ls-{src}-x10 / ls-{src}"
        target(f"{key} (10x alerts)", rat.get(key), 1.5)
    for name, g in grow.items():
        target(f"{name} peak RSS, scale x{scale_factor:g} / x1", g["rss"], 1.2)
        target(f"{name} wall, scale x{scale_factor:g} / x1", g["wall"], scale_factor)
    for name in STARTUP:
        if name in res:
            target(f"{name} wall s", res[name]["median_wall_s"], 0.3)
    return out


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


def importtime(args: list[str], n: int = 12) -> dict:
    """``python -X importtime lakeslice ARGS`` (once, untimed): the heaviest imports.

    ``top_cumulative`` counts a module with what it imports; ``top_self`` alone; microseconds.
    """
    proc = subprocess.run(
        [PY, "-X", "importtime", LAKESLICE, *args], capture_output=True, text=True, cwd=ROOT, check=True
    )
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[0]), int(parts[1])))

    def top(col: int) -> list:
        return [[r[0].strip(), r[col]] for r in sorted(rows, key=lambda r: -r[col])[:n]]

    return {
        "total_us": sum(r[1] for r in rows),
        "modules": len(rows),
        "top_cumulative": top(2),
        "top_self": top(1),
    }


def run_rounds(contenders: list[Contender], launcher: Launcher, floor_rows: dict, scale: float) -> None:
    """Round r runs every contender that has more than r repeats: A B C … A B C …"""
    rounds = max(c.repeats for c in contenders)
    for r in range(rounds):
        for c in contenders:
            if r < c.repeats:
                run = run_process(c, launcher)
                if c.name in floor_rows:
                    run.rows = floor_rows[c.name]
                c.runs.append(run)
                load = max(run.extra["loadavg_1m"])
                warn = f" (warning: load {load:.1f} > {CPUS} CPUs)" if load > CPUS else ""
                log(
                    f"scale {scale:g} round {r + 1}/{rounds} {c.name}: {run.wall_s:.2f}s, "
                    f"cpu {run.cpu_s:.2f}s, {run.peak_rss_mib:.0f} MiB, rows {run.rows}{warn}"
                )


def bench_scale(
    scale: float,
    wanted: Callable[[str], bool],
    launcher: Launcher,
    *,
    repeats: int,
    slow_repeats: int,
    with_profile: bool = False,
) -> dict:
    """Data of ``scale`` ready (untimed), then the rounds of the wanted contenders."""
    t0 = time.perf_counter()
    ds = dsmod.prepare(scale)
    server = dsmod.start_server(ds)
    s3 = None
    dask = DaskCluster(OUT / "dask-logs")
    dask_note: dict = {}
    try:
        if wanted("ls-parquet-s3"):
            s3 = start_s3()
        contenders = build(
            ds, server, wanted, repeats=repeats, slow_repeats=slow_repeats, s3=s3, dask_url=dask.url
        )
        if any(c.name == "ls-dask" for c in contenders):
            dask.start()  # untimed, like the server
        floor_rows = {c.name: count_rows(server, *c.count) for c in contenders if c.count}
        names = ", ".join(c.name for c in contenders)
        prepare_s = time.perf_counter() - t0
        log(f"scale {scale:g}: data ready in {prepare_s:.0f}s; running {names}")
        run_rounds(contenders, launcher, floor_rows, scale)
        if with_profile:
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
    return {
        "scale": scale,
        "prepare_s": prepare_s,
        "data": {**ds.stamp, "interval": dsmod.INTERVAL, "window": dsmod.WINDOW},
        "contenders": {c.name: summarize(c) for c in contenders if c.runs},
        "dask": dask_note,
    }


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--scale", type=float, default=float(env("BENCH_SCALE", "1")))
    ap.add_argument(
        "--big-scale",
        type=float,
        default=float(env("BENCH_BIG_SCALE", "-1")),
        help=f"also run {', '.join(BIG_CONTENDERS)} at this scale (default 10 when neither "
        "--only nor --scale is given; 0: no)",
    )
    ap.add_argument("--repeats", type=int, default=int(env("BENCH_REPEATS", "3")))
    ap.add_argument(
        "--slow-repeats",
        type=int,
        default=int(env("BENCH_SLOW_REPEATS", "1")),
        help="repeats of ls-chdb, original-subset and the x10 variants (default 1)",
    )
    ap.add_argument("--big-repeats", type=int, default=int(env("BENCH_BIG_REPEATS", "1")))
    ap.add_argument("--only", default=env("BENCH_ONLY", ""), help="comma-separated contender names")
    ap.add_argument("--profile", action="store_true", help="also record py-spy profiles")
    ap.add_argument(
        "--all",
        action="store_true",
        default=env("BENCH_ALL") == "1",
        help="also ls-parquet-x10 (BENCH_ALL=1)",
    )
    args = ap.parse_args(argv)
    if args.big_scale < 0:
        args.big_scale = 10.0 if not args.only and args.scale == 1 else 0.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    launcher = Launcher()  # first: the contenders' parent stays small
    signal.signal(signal.SIGTERM, _terminate)  # so the servers are stopped on kill
    load = os.getloadavg()[0]
    if load > CPUS * 0.5:
        log(f"warning: load average {load:.1f} on {CPUS} CPUs: timings will be noisy")
    started = time.perf_counter()
    only = set(filter(None, args.only.split(",")))
    try:
        main_scale = bench_scale(
            args.scale,
            lambda n: n in only if only else (args.all or n != "ls-parquet-x10"),
            launcher,
            repeats=args.repeats,
            slow_repeats=args.slow_repeats,
            with_profile=args.profile,
        )
        big = None
        if args.big_scale:
            big = bench_scale(
                args.big_scale,
                lambda n: n in BIG_CONTENDERS,
                launcher,
                repeats=args.big_repeats,
                slow_repeats=args.big_repeats,
            )
        startup_imports = {
            name: importtime(a) for name, a in STARTUP.items() if name in main_scale["contenders"]
        }
    finally:
        launcher.close()
    doc = document(args, main_scale, big, startup_imports, time.perf_counter() - started)
    write_outputs(doc, args)
    return 0


def document(args, main_scale: dict, big: dict | None, startup_imports: dict, seconds: float) -> dict:
    """The results JSON: meta, the main scale's contenders, ratios and targets, the big scale."""
    res = main_scale["contenders"]
    rat = ratios(res)
    grow = growth(res, big["contenders"]) if big else {}
    factor = big["scale"] / args.scale if big else 0
    all_runs = [
        r
        for sc in (main_scale, big or {"contenders": {}})
        for v in sc["contenders"].values()
        for r in v["runs"]
    ]
    meta = {
        "scale": args.scale,
        "big_scale": big["scale"] if big else None,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "slow_repeats": args.slow_repeats,
        "big_repeats": args.big_repeats,
        "machine": {
            "cpus": CPUS,
            "platform": platform.platform(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "versions": versions(),
        "data": main_scale["data"],
        "bench_seconds": round(seconds, 1),
        # data generation, server start and load: 0 to a few seconds when the data is cached
        "prepare_seconds": round(main_scale["prepare_s"] + (big["prepare_s"] if big else 0), 1),
        "loadavg_1m_max": max(r["extra"]["loadavg_1m"][1] for r in all_runs),
        "loadavg_1m_median": statistics.median(max(r["extra"]["loadavg_1m"]) for r in all_runs),
    }
    doc = {
        "meta": meta,
        "contenders": res,
        "ratios": rat,
        "targets": targets(res, rat, grow, factor),
        "startup_importtime": startup_imports,
    }
    if big:
        doc["big"] = {
            "scale": big["scale"],
            "data": big["data"],
            "contenders": big["contenders"],
            "growth": grow,
        }
    if main_scale["dask"]:
        doc["dask"] = main_scale["dask"]
    return doc


def write_outputs(doc: dict, args) -> None:
    """``bench-<UTC>-scale<s>.{json,svg,md}`` and ``latest.*`` under benchmarks/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    big = f"+{args.big_scale:g}" if args.big_scale else ""
    name = f"bench-{stamp}-scale{args.scale:g}{big}"
    outputs = {"json": json.dumps(doc, indent=2, sort_keys=True) + "\n"}
    outputs["svg"] = report.chart_svg(doc)
    outputs["md"] = report.markdown(doc, name)
    for ext, text in outputs.items():
        (RESULTS / f"{name}.{ext}").write_text(text)
        (RESULTS / f"latest.{ext}").write_text(text)
    report.print_report(doc)
    if doc.get("dask"):
        print("where ls-dask's time goes:", json.dumps(doc["dask"], sort_keys=True))
    meta = doc["meta"]
    if meta["loadavg_1m_max"] > CPUS:
        print(
            f"warning: 1-minute load average reached {meta['loadavg_1m_max']:.1f} on "
            f"{CPUS} CPUs during the runs: other work competed for the CPUs"
        )
    print("\n----- markdown for benchmarks/README.md (also in results/latest.md) -----\n" + outputs["md"])
    rel = (RESULTS / name).relative_to(ROOT)
    print(f"results: {rel}.json, .svg, .md (and benchmarks/results/latest.*); {meta['bench_seconds']:.0f}s")


if __name__ == "__main__":
    raise SystemExit(main())
