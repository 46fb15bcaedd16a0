"""Reliability and security (issue 7): bad input, secrets, SIGKILL, a dying server, two exports
racing for one run_id, a full disk.

Everything runs the real ``lakeslice`` entry point in a subprocess against real files and the real
ClickHouse server fixture (no mocks). What a failed export must leave behind: exit 2 for bad
usage/input, 1 for a runtime failure, exactly one line on stderr that names the culprit, no
traceback, and no ``manifest.json`` anywhere under the data root.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from chserver import free_port
from conftest import load_candles
from support.cli import export_args, popen_cli, run_cli
from support.data import ALERTS_CSV, CANDLES_PQ, SOL

from lakeslice.sources.base import quantbot_ddl

PASSWORD = "s3cret-pw"  # the fixture server's password of user ``lake``
DB = "reliab"
WINDOW = "pre5_post10"


# --------------------------------------------------------------------------------------------
# helpers


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def manifests_under(root: Path) -> list[Path]:
    return sorted(root.rglob("manifest.json")) if root.is_dir() else []


class StderrNotOneLine(AssertionError):
    """stderr held a traceback or more than one line: what the known driver-log bug causes."""


def assert_one_line_failure(proc, status: int, *needles: str) -> str:
    """Exit ``status``, one stderr line holding every needle, no traceback anywhere."""
    out = f"exit {proc.returncode}\nstdout: {proc.stdout!r}\nstderr: {proc.stderr!r}"
    assert proc.returncode == status, out
    assert "Traceback" not in proc.stdout, out
    lines = stderr_lines(proc.stderr)
    error_lines = [line for line in lines if line.startswith("lakeslice: error: ")]
    assert len(error_lines) == 1, out
    for needle in needles:
        assert needle in error_lines[0], f"{needle!r} not in {error_lines[0]!r}"
    if "Traceback" in proc.stderr or len(lines) != 1:
        raise StderrNotOneLine(out)
    return lines[0]


def run_dir(data_root: Path, run_id: str) -> Path:
    return data_root / "lake" / "runs" / f"run_id={run_id}"


def manifest_of(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text("utf-8"))


# --------------------------------------------------------------------------------------------
# ClickHouse tables on the session server


@pytest.fixture(scope="module")
def ch(clickhouse_server):
    """The session server with ``reliab.ohlcv_candles`` (the fixture candles) and
    ``reliab.no_volume`` (the same table without its ``volume`` column)."""
    candles = pl.read_parquet(CANDLES_PQ)
    load_candles(clickhouse_server, DB, "ohlcv_candles", candles)
    client = clickhouse_server.client()
    try:
        client.execute(f"DROP TABLE IF EXISTS {DB}.no_volume")
        client.execute(
            f"CREATE TABLE {DB}.no_volume (token_address String, chain String, timestamp DateTime,"
            " interval_seconds UInt32, open Float64, high Float64, low Float64, close Float64)"
            " ENGINE = MergeTree() ORDER BY (token_address, interval_seconds, timestamp)"
        )
    finally:
        client.disconnect()
    return clickhouse_server


# --------------------------------------------------------------------------------------------
# 1. Bad input, one table


@dataclass
class Ctx:
    """What a case builds its command from: a scratch dir, good defaults, the server."""

    tmp: Path
    request: pytest.FixtureRequest
    data_root: Path = field(init=False)

    def __post_init__(self):
        self.data_root = self.tmp / "data"

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, "utf-8")
        return path

    @property
    def server(self):
        return self.request.getfixturevalue("ch")

    def ch_url(self, user: str | None = "lake", password: str | None = PASSWORD, port=None) -> str:
        host = "127.0.0.1"
        cred = f"{user}:{password}@" if password is not None else (f"{user}@" if user else "")
        return f"clickhouse://{cred}{host}:{port or self.server.port}/{DB}"

    def args(self, *extra, alerts=None, source=None, data_root=None, run_id="r1", **opts) -> list[str]:
        options = {
            "alerts": alerts or ALERTS_CSV,
            "interval": "1m",
            "window": WINDOW,
            "source": source or f"parquet://{CANDLES_PQ}",
            "data_root": data_root or self.data_root,
            "run_id": run_id,
            **opts,
        }
        # '--flag=value' so that values like '-5' or '' stay values
        return ["export", *(f"--{k.replace('_', '-')}={v}" for k, v in options.items()), *extra]


def _readonly_root(ctx: Ctx) -> Path:
    """A data root the exporter cannot write, even as root: a read-only tmpfs when we can mount
    one, else a chmod 500 directory (which binds only a non-root user)."""
    root = ctx.tmp / "ro"
    root.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(root)], capture_output=True
        )
        if mounted.returncode != 0:
            pytest.skip(
                "running as root and cannot mount a read-only tmpfs: a chmod 500 directory does"
                f" not stop root ({mounted.stderr.decode().strip()})"
            )
        ctx.request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(root)]))
    else:
        root.chmod(0o500)
        ctx.request.addfinalizer(lambda: root.chmod(0o700))
    return root


def _data_root_file(ctx: Ctx) -> Path:
    return ctx.file("data-is-a-file", "not a directory\n")


# (id, argv builder, exit status, needles the one stderr line must hold[, marks])
BAD_INPUT = [
    ("missing-alerts-file", lambda c: c.args(alerts=c.tmp / "nope.csv"), 2, lambda c: ["nope.csv"]),
    (
        "csv-without-mint",
        lambda c: c.args(alerts=c.file("nomint.csv", "alert_id,ts_ms\na1,1704069000000\n")),
        2,
        lambda c: ["nomint.csv", "mint"],
    ),
    (
        "empty-mint",
        lambda c: c.args(
            alerts=c.file("emptymint.csv", f"mint,ts_ms\n{SOL},1704069000000\n,1704069060000\n")
        ),
        2,
        lambda c: ["emptymint.csv", "mint", "row 2"],
    ),
    (
        "unparseable-time",
        lambda c: c.args(
            alerts=c.file("badtime.csv", f"mint,ts\n{SOL},2024-01-01T00:00:00Z\n{SOL},yesterday-ish\n")
        ),
        2,
        lambda c: ["badtime.csv", "'ts'", "yesterday-ish", "row 2"],
    ),
    (
        "duplicate-ids",
        lambda c: c.args(
            alerts=c.file(
                "dups.csv", f"alert_id,mint,ts_ms\nx1,{SOL},1704069000000\nx1,{SOL},1704069060000\n"
            )
        ),
        2,
        lambda c: ["dups.csv", "duplicate", "x1"],
    ),
    (
        "header-only",
        lambda c: c.args(alerts=c.file("header.csv", "mint,ts_ms\n")),
        2,
        lambda c: ["header.csv"],
    ),
    (
        "corrupt-parquet",
        lambda c: c.args(alerts=c.file("corrupt.parquet", random.Random(7).randbytes(4096))),
        2,
        lambda c: ["corrupt.parquet"],
    ),
    ("bad-window", lambda c: c.args(window="pre5-post10"), 2, lambda c: ["window", "pre5-post10"]),
    ("interval-0", lambda c: c.args(interval="0"), 2, lambda c: ["interval", "'0'"]),
    ("interval-negative", lambda c: c.args(interval="-5"), 2, lambda c: ["interval", "-5"]),
    ("interval-unknown-unit", lambda c: c.args(interval="7x"), 2, lambda c: ["interval", "7x"]),
    ("unknown-compression", lambda c: c.args(compression="lz5"), 2, lambda c: ["compression", "lz5"]),
    ("run-id-slash", lambda c: c.args(run_id="a/b"), 2, lambda c: ["run_id", "a/b"]),
    ("run-id-dotdot", lambda c: c.args(run_id=".."), 2, lambda c: ["run_id", "'..'"]),
    ("run-id-empty", lambda c: c.args(run_id=""), 2, lambda c: ["run_id", "''"]),
    ("unknown-scheme", lambda c: c.args(source="ftp://x"), 2, lambda c: ["ftp://"]),
    ("target-file-mb-0", lambda c: c.args(target_file_mb="0"), 2, lambda c: ["target-file-mb", "0"]),
    ("target-file-mb-negative", lambda c: c.args(target_file_mb="-1"), 2, lambda c: ["target-file-mb", "-1"]),
    ("data-root-is-a-file", lambda c: c.args(data_root=_data_root_file(c)), 2, lambda c: ["data-is-a-file"]),
    (
        "data-root-not-writable",
        lambda c: c.args(data_root=_readonly_root(c)),
        2,
        lambda c: [str(c.tmp / "ro")],
    ),
    (
        "strict-negative-pre",
        lambda c: c.args("--strict-coverage", min_required_pre="-1"),
        2,
        lambda c: ["min-required-pre", "-1"],
    ),
    (
        "strict-negative-total",
        lambda c: c.args("--strict-coverage", target_total="-3"),
        2,
        lambda c: ["target-total", "-3"],
    ),
    # runtime failures against the real server: exit 1, the line names host and table
    (
        "server-unreachable",
        lambda c: c.args(source=c.ch_url(port=c.__dict__.setdefault("port", free_port())) + "?retries=0"),
        1,
        lambda c: [f"127.0.0.1:{c.port}", "ohlcv_candles"],
    ),
    (
        "wrong-password",
        lambda c: c.args(source=c.ch_url(password="not-the-password")),
        1,
        lambda c: [f"127.0.0.1:{c.server.port}", "authentication", "'lake'"],
    ),
    (
        "missing-table",
        lambda c: c.args(source=c.ch_url(), table="no_such_table"),
        1,
        lambda c: [f"127.0.0.1:{c.server.port}", "no_such_table", "not found"],
    ),
    (
        "missing-columns",
        lambda c: c.args(source=c.ch_url(), table="no_volume"),
        1,
        lambda c: [f"127.0.0.1:{c.server.port}", "no_volume", "volume"],
    ),
]


@pytest.mark.parametrize(
    ("build", "status", "needles"),
    [pytest.param(*c[1:4], id=c[0], marks=c[4:]) for c in BAD_INPUT],
)
def test_bad_input_one_line_no_seal(tmp_path, request, build, status, needles):
    ctx = Ctx(tmp_path, request)
    argv = build(ctx)
    proc = run_cli(*argv, cwd=tmp_path)
    assert_one_line_failure(proc, status, *needles(ctx))
    assert proc.stderr.startswith("lakeslice: error: ")
    assert manifests_under(tmp_path) == []
    assert not (tmp_path / "lake").exists()  # nothing escaped the data root (run_id '..')


# --------------------------------------------------------------------------------------------
# 2. Secrets


def _secret_free(blob: str | bytes, where: str) -> None:
    needle = PASSWORD.encode() if isinstance(blob, bytes) else PASSWORD
    assert needle not in blob, f"password found in {where}"


def _secret_free_tree(root: Path) -> int:
    n = 0
    for p in sorted(root.rglob("*")) if root.exists() else []:
        if p.is_file():
            _secret_free(p.read_bytes(), str(p))
            _secret_free(str(p), "a path")
            n += 1
    return n


SECRET_CASES = [
    # (id, source url builder, extra env, --table, expected exit)
    ("url-ok", lambda s: s.url(DB, "lake", PASSWORD), {}, "ohlcv_candles", 0),
    ("env-ok", lambda s: s.url(DB, "lake"), {"LAKESLICE_CLICKHOUSE_PASSWORD": PASSWORD}, "ohlcv_candles", 0),
    ("url-missing-table", lambda s: s.url(DB, "lake", PASSWORD), {}, "no_such_table", 1),
    (
        "env-missing-table",
        lambda s: s.url(DB, "lake"),
        {"LAKESLICE_CLICKHOUSE_PASSWORD": PASSWORD},
        "no_such_table",
        1,
    ),
    ("url-wrong-password", lambda s: s.url(DB, "lake", PASSWORD + "-wrong"), {}, "ohlcv_candles", 1),
    (
        "env-wrong-password",
        lambda s: s.url(DB, "lake"),
        {"LAKESLICE_CLICKHOUSE_PASSWORD": PASSWORD + "-wrong"},
        "ohlcv_candles",
        1,
    ),
]
# every case as --format json; the URL cases also as the human table output
CLI_SECRET_CASES = [pytest.param(*c[1:], "json", id=f"{c[0]}-json") for c in SECRET_CASES] + [
    pytest.param(*c[1:], "table", id=f"{c[0]}-table") for c in SECRET_CASES if c[0].startswith("url-")
]


@pytest.mark.parametrize(("url", "env", "table", "status", "fmt"), CLI_SECRET_CASES)
def test_password_never_leaks_from_the_cli(ch, tmp_path, url, env, table, status, fmt):
    data = tmp_path / "data"
    argv = [
        "-v",
        *export_args(data, "sec", window=WINDOW, source=url(ch)),
        "--table",
        table,
        "--compression",
        "none",
        "--format",
        fmt,
    ]
    proc = run_cli(*argv, env=env, cwd=tmp_path)
    assert proc.returncode == status, proc.stderr
    _secret_free(proc.stdout, "stdout")
    _secret_free(proc.stderr, "stderr")
    assert "Traceback" not in proc.stderr
    if fmt == "json":
        doc = json.loads(proc.stdout)
        _secret_free(json.dumps(doc), "the JSON result")
        if status == 0:
            assert doc["manifest"]["inputs"]["source_snapshot"]["host"] == f"127.0.0.1:{ch.port}"
        else:
            assert set(doc) == {"error"} and doc["error"]["message"]
    if status == 0:
        run = run_dir(data, "sec")
        _secret_free((run / "manifest.json").read_text(), "the manifest")
        assert "lake:" not in (run / "manifest.json").read_text()  # no user:password pair either
        assert _secret_free_tree(data) > 3
        verify = run_cli(*["verify", run])
        assert verify.returncode == 0, verify.stderr
    else:
        assert manifests_under(tmp_path) == []
        _secret_free_tree(data)
        assert len(stderr_lines(proc.stderr)) == 1, proc.stderr


@pytest.mark.parametrize(
    ("url", "env", "table", "status"), [c[1:] for c in SECRET_CASES], ids=[c[0] for c in SECRET_CASES]
)
def test_password_never_leaks_in_process(ch, tmp_path, monkeypatch, url, env, table, status):
    import traceback

    import lakeslice
    from lakeslice.spec import LakesliceError

    monkeypatch.delenv("LAKESLICE_CLICKHOUSE_PASSWORD", raising=False)
    monkeypatch.delenv("LAKESLICE_CLICKHOUSE_USER", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    data = tmp_path / "data"
    kwargs = dict(
        interval="1m",
        window=WINDOW,
        source=url(ch),
        table=table,
        data_root=data,
        run_id="sec",
        compression="none",
    )
    if status == 0:
        res = lakeslice.export_run_slices(str(ALERTS_CSV), **kwargs)
        _secret_free(json.dumps(res.to_json()), "the JSON result")
        _secret_free(repr(res), "the result repr")
        _secret_free_tree(data)
        return
    with pytest.raises(LakesliceError) as info:
        lakeslice.export_run_slices(str(ALERTS_CSV), **kwargs)
    exc = info.value
    _secret_free(str(exc), "str(exc)")
    _secret_free(repr(exc), "repr(exc)")
    _secret_free("".join(traceback.format_exception(exc)), "the formatted exception chain")
    assert f"127.0.0.1:{ch.port}" in str(exc)
    assert manifests_under(tmp_path) == []
    _secret_free_tree(data)


# --------------------------------------------------------------------------------------------
# A source big enough that an export takes a few seconds (many files with a small part size)


BIG_MINTS, BIG_CANDLES = 300, 5000
BIG_WINDOW = "pre20_post100"


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from lakeslice.synthetic import synthetic_alerts, synthetic_candles

    root = tmp_path_factory.mktemp("big")
    candles = root / "candles.parquet"
    synthetic_candles(mints=BIG_MINTS, candles_per_mint=BIG_CANDLES).write_parquet(candles)
    alerts = {}
    for name, seed in (("a", 11), ("b", 12)):
        path = root / f"alerts_{name}.csv"
        synthetic_alerts(alerts=600, mints=BIG_MINTS, candles_per_mint=BIG_CANDLES, seed=seed).write_csv(path)
        alerts[name] = path
    return {"root": root, "source": f"parquet://{candles}", "alerts": alerts}


def big_args(big, data_root, run_id, alerts="a", *extra):
    return export_args(
        data_root,
        run_id,
        window=BIG_WINDOW,
        alerts=big["alerts"][alerts],
        source=big["source"],
        extra=["--target-file-mb", "0.05", "--format", "json", *extra],
    )


# --------------------------------------------------------------------------------------------
# 3. SIGKILL at random moments


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_is_identical(big, tmp_path):
    ref_root = tmp_path / "ref"
    started = time.monotonic()
    ref = run_cli(*big_args(big, ref_root, "crash"))
    duration = time.monotonic() - started
    assert ref.returncode == 0, ref.stderr
    ref_manifest = json.loads(ref.stdout)["manifest"]
    assert ref_manifest["outputs"]["slices"]["files"] > 50  # many files: many moments to die in

    data = tmp_path / "data"
    run = run_dir(data, "crash")
    rng = random.Random(20240101)
    delays = sorted(rng.uniform(0.3, duration) for _ in range(5))
    outcomes = []
    for delay in delays:
        proc = popen_cli(*big_args(big, data, "crash", "a", "--overwrite"))
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        outcomes.append((round(delay, 2), proc.returncode))
        verify = run_cli(*["verify", run])
        seen = (
            f"kills so far {outcomes}; verify exit {verify.returncode}: {verify.stdout!r} {verify.stderr!r}"
        )
        if verify.returncode == 0:
            # sealed: it is the whole run, identical to the uninterrupted one
            assert manifest_of(run)["content_sha256"] == ref_manifest["content_sha256"], seen
        else:
            # unsealed: exit 1; never published: a missing path, exit 2
            assert verify.returncode in (1, 2) and not (run / "manifest.json").exists(), seen
            line = assert_one_line_failure(verify, verify.returncode)
            assert "unsealed" in line or "no such file or directory" in line, seen
        # whatever the moment, no seal appears anywhere readers look but the run itself (a killed
        # export may leave a sealed-but-unpublished dir in lake/.staging, or a sealed generation
        # not linked yet in lake/.generations: later runs remove them)
        hidden = (data / "lake" / ".staging", data / "lake" / ".generations")
        assert [p for p in manifests_under(data) if not any(h in p.parents for h in hidden)] == []
        if run.is_symlink():
            assert (run / "manifest.json").is_file(), seen  # never a link to nothing
    assert any(rc == -signal.SIGKILL for _, rc in outcomes), outcomes

    final = run_cli(*big_args(big, data, "crash", "a", "--overwrite"))
    assert final.returncode == 0, (outcomes, final.stderr)
    assert json.loads(final.stdout)["manifest"]["content_sha256"] == ref_manifest["content_sha256"]
    verify = run_cli(*["verify", run])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the killed runs' staging directories are gone, and nothing temporary is left in the run
    assert sorted(p.name for p in (data / "lake" / ".staging").iterdir()) == [], outcomes
    assert [p for p in run.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")] == []
    # the bytes are the uninterrupted run's, file by file
    for entry in ref_manifest["files"]:
        assert hashlib.sha256((run / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]


@pytest.mark.slow
def test_staging_left_by_a_killed_run_is_cleaned_by_the_next(big, tmp_path):
    """Kill while files are being staged (deterministically: wait until staging holds parts)."""
    data = tmp_path / "data"
    staging = data / "lake" / ".staging"
    proc = popen_cli(*big_args(big, data, "stale"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if staging.is_dir() and any(staging.rglob("part-*.parquet")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "export finished before it staged anything: make it bigger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    leftovers = sorted(p.name for p in staging.iterdir())
    assert leftovers, "a killed export leaves its staging directory behind"
    verify = run_cli(*["verify", run_dir(data, "stale")])
    assert_one_line_failure(verify, 2, "no such file or directory")  # never published
    again = run_cli(*big_args(big, data, "stale"))  # no --overwrite needed: nothing was sealed
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in staging.iterdir()) == []
    assert run_cli(*["verify", run_dir(data, "stale")]).returncode == 0


# --------------------------------------------------------------------------------------------
# 4. The server dies mid-export


DYING_MINTS, DYING_ROWS = 50, 2_000_000
T0 = 1_704_067_200


def _active_queries(server) -> int:
    client = server.client(connect_timeout=1, send_receive_timeout=5)
    try:
        return client.execute(
            "SELECT count() FROM system.processes WHERE query LIKE '%_lakeslice_ranges%'"
            " AND query NOT LIKE '%system.processes%'"
        )[0][0]
    finally:
        client.disconnect()


@pytest.mark.slow
def test_server_dies_mid_export_then_rerun_succeeds(dedicated_server, tmp_path):
    server = dedicated_server
    client = server.client(send_receive_timeout=300)
    try:
        client.execute(quantbot_ddl("default.big"))
        # generated server-side: 50 mints x 40 000 one-minute candles (18.16 has system.numbers)
        client.execute(
            "INSERT INTO default.big SELECT"
            f" concat('mint', toString(number % {DYING_MINTS})), 'solana',"
            f" toDateTime({T0} + intDiv(number, {DYING_MINTS}) * 60), 60,"
            " toFloat64(number % 997), toFloat64(number % 997) + 1, toFloat64(number % 997) - 1,"
            " toFloat64(number % 991), toFloat64(number % 1009)"
            f" FROM system.numbers LIMIT {DYING_ROWS}"
        )
        assert client.execute("SELECT count() FROM default.big")[0][0] == DYING_ROWS
    finally:
        client.disconnect()
    per_mint = DYING_ROWS // DYING_MINTS
    mid_ms = (T0 + per_mint // 2 * 60) * 1000
    alerts = tmp_path / "alerts.csv"
    alerts.write_text("mint,ts_ms\n" + "".join(f"mint{i},{mid_ms}\n" for i in range(DYING_MINTS)))
    data = tmp_path / "data"
    url = server.url("default") + "?retries=1&retry_wait=0.1"  # fail fast: the server stays dead
    argv = export_args(
        data, "dying", window="pre10000_post10000", alerts=alerts, source=url, extra=["--table", "big"]
    )

    proc = popen_cli(*argv)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if _active_queries(server):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the export ended before its query was seen streaming"
    server.kill()
    out, err = proc.communicate(timeout=120)
    died = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    assert died.returncode == 1, err
    assert manifests_under(tmp_path) == []
    last = stderr_lines(err)[-1]
    assert last.startswith("lakeslice: error: ") and f"127.0.0.1:{server.port}" in last and "big" in last, err

    server.start()
    again = run_cli(*[*argv, "--format", "json"])
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["total_rows"] == DYING_MINTS * 20001
    verify = run_cli(*["verify", run_dir(data, "dying")])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # last, so that the checks above run even while this one is a known failure
    assert_one_line_failure(died, 1, f"127.0.0.1:{server.port}", "big")


# --------------------------------------------------------------------------------------------
# 5. Two exports of one run_id at once


def test_two_exports_of_one_run_id_one_wins(big, tmp_path):
    data = tmp_path / "data"
    procs = {name: popen_cli(*big_args(big, data, "race", name)) for name in ("a", "b")}
    done = {name: p.communicate(timeout=300) for name, p in procs.items()}
    codes = {name: procs[name].returncode for name in procs}
    winners = [n for n, c in codes.items() if c == 0]
    assert len(winners) == 1, (codes, done)
    (winner,) = winners
    (loser,) = set(procs) - {winner}
    proc = subprocess.CompletedProcess([], codes[loser], *done[loser])
    assert codes[loser] in (1, 2), done[loser]
    line = assert_one_line_failure(proc, codes[loser], "race")
    assert "in progress" in line or "already sealed" in line, line
    assert json.loads(done[loser][0]) == {"error": json.loads(done[loser][0])["error"]}

    run = run_dir(data, "race")
    verify = run_cli(*["verify", run])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    won = json.loads(done[winner][0])["manifest"]
    assert manifest_of(run) == won  # the winner's seal, over the winner's files (verified)
    alerts = pl.read_parquet(run / "inputs" / "alerts.parquet")
    assert alerts.height == pl.read_csv(big["alerts"][winner]).height
    assert sorted((data / "lake" / ".staging").iterdir()) == []


# --------------------------------------------------------------------------------------------
# 6. Disk full


def test_disk_full_is_one_line_and_nothing_sealed(big, tmp_path, request):
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MiB tmpfs needs root")
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(full)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(full)]))
    proc = run_cli(*big_args(big, full, "full", "a", "--compression", "none"))
    line = assert_one_line_failure(proc, 1, "No space left on device")
    assert str(full) in line
    assert json.loads(proc.stdout)["error"]["code"] != "internal_error", proc.stdout
    assert manifests_under(full) == []
    # the failed export cleaned up after itself: the next export has the space again
    assert sorted(p.name for p in (full / "lake" / ".staging").iterdir()) == []
    small = run_cli(*export_args(full, "small", window=WINDOW))
    assert small.returncode == 0, small.stderr
