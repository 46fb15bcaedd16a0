"""Issue 11: bucket groups on a real Dask cluster (``LocalCluster``: a scheduler and worker
processes on loopback ports), never threads pretending to be workers.

The executor is tested on its own (order, first failure, a worker killed mid-task, versions),
then through whole exports compared byte for byte with the local executor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daskcluster import dask_url, local_cluster

from lakeslice.dask_executor import DaskExecutor, parse_address, worker_versions
from lakeslice.errors import InputError, RunError

distributed = pytest.importorskip("distributed", reason="the dask extra is part of the test extra")
# (importorskip only documents the dependency: `make install` installs it, so it never skips)


@pytest.fixture(scope="module")
def dask_cluster(s3_server):
    """Two worker processes whose own environment holds every credential they use.

    ClickHouse: user ``lake`` with its password (the coordinator reads as ``default``, without
    one: the same rows); S3: the test server's keys. Tasks carry none of them.
    """
    env = {
        **s3_server.env(),
        "LAKESLICE_CLICKHOUSE_USER": "lake",
        "LAKESLICE_CLICKHOUSE_PASSWORD": PASSWORD,
    }
    cluster = local_cluster(2, env=env)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def executor(dask_cluster):
    with DaskExecutor(address=dask_url(dask_cluster)) as ex:
        yield ex


# Task functions live at module level: workers import this module (tests/ is on their path).


def slow_square(x: int) -> tuple[int, int]:
    time.sleep(0.05 * (5 - x % 5))  # later tasks finish first
    return x * x, os.getpid()


def fail_on(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad task {x}\nsecond line")
    time.sleep(0.5)
    return x


def die_once(args: tuple[str, int]) -> int:
    """SIGKILL this worker the first time any task gets here (a marker file says so)."""
    marker, x = args
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return x * 10
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    return -1  # never reached


def test_parse_address():
    assert parse_address("dask://127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert parse_address("tls://h:1/") == "tls://h:1"
    for bad in ("dask://h", "dask://:8786", "http://h:1", "dask://h:1/x", "h:1"):
        with pytest.raises(InputError, match="--executor"):
            parse_address(bad)


def test_results_in_task_order_from_two_worker_processes(executor):
    results = list(executor.map(slow_square, range(12)))
    assert [r for r, _ in results] == [x * x for x in range(12)]
    pids = {pid for _, pid in results}
    assert len(pids) == 2 and os.getpid() not in pids  # really two other processes


def test_first_failure_stops_the_map_with_one_line(executor):
    got = []
    with pytest.raises(RunError) as info:
        for x in executor.map(fail_on, range(8)):
            got.append(x)
    assert str(info.value) == "bucket group 3 failed on a Dask worker: ValueError: bad task 3"
    assert got == [0, 1, 2][: len(got)]  # only results before the failure, in order


def test_workers_with_other_versions_are_refused_before_any_work(tmp_path):
    """A worker whose polars reports another version: refused, no task runs."""
    preload = tmp_path / "other_polars.py"
    preload.write_text("import polars\npolars.__version__ = '0.0.1'\n")
    ran = tmp_path / "ran"
    cluster = local_cluster(1, preload=[str(preload)])
    try:
        with DaskExecutor(distributed.Client(cluster, set_as_default=False)) as ex:
            with pytest.raises(RunError) as info:
                list(ex.map(touch, [str(ran)]))
            ex.client.close()
    finally:
        cluster.close()
    message = str(info.value)
    assert "\n" not in message and "polars 0.0.1 (coordinator " in message
    assert worker_versions()["polars"] in message
    assert not ran.exists()


def touch(path: str) -> None:
    Path(path).touch()


def test_unreachable_scheduler_is_one_line():
    from chserver import free_port

    with pytest.raises(RunError, match=r"^Dask scheduler tcp://127.0.0.1:\d+: cannot connect"):
        DaskExecutor(address=f"dask://127.0.0.1:{free_port()}", connect_timeout=2)


# ------------------------------------------------------------------------------------------
# Whole exports: Dask (2 worker processes) against local threads, byte for byte

DB = "daskx"
WINDOW = "pre2000_post2000"  # long windows over short data: many bucket groups, few rows
EPOCH = "1704067200"
PASSWORD = "s3cret-pw"  # tests/chserver.py's user "lake"
LAKESLICE = str(Path(sys.executable).with_name("lakeslice"))


@pytest.fixture(scope="module")
def ch_source(clickhouse_server, tmp_path_factory):
    """300 mints x 300 one-minute candles (gaps, duplicates) on the session server; 600 alerts.

    Each alert's window spans all of its mint's data, so the estimate per mint is ~4,300 rows
    and the plan has several 400 k-row bucket groups (several tasks) for only ~85 k candles.
    """
    from conftest import load_candles

    from lakeslice.synthetic import synthetic_alerts, synthetic_candles

    candles = synthetic_candles(mints=300, candles_per_mint=300, duplicate_fraction=0.02)
    load_candles(clickhouse_server, DB, "ohlcv_candles", candles)
    alerts = tmp_path_factory.mktemp("dask-alerts") / "alerts.parquet"
    synthetic_alerts(alerts=600, mints=300, candles_per_mint=300, seed=4).write_parquet(alerts)
    return clickhouse_server.url(DB), alerts


def run_files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a sealed run, the manifest included, by relative path."""
    return {
        p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()
    }


def _export(ch_source, root: Path, **kwargs):
    from lakeslice import export_run_slices

    url, alerts = ch_source
    kwargs.setdefault("source", url)
    return export_run_slices(alerts, interval="1m", window=WINDOW, data_root=root, run_id="d", **kwargs)


class Recorder:
    """A Progress that writes down every call."""

    def __init__(self):
        self.calls: list[tuple] = []

    def stage(self, name: str, *, total: int | None = None) -> None:
        self.calls.append(("stage", name, total))

    def advance(self, *, done: int = 0, rows: int = 0) -> None:
        self.calls.append(("advance", done, rows))


def _progress_summary(calls: list[tuple]) -> tuple:
    """Stages in order, groups fetched, rows, and whether the writing stage counted to its total."""
    stages, done, rows, stage, writing = [], 0, 0, None, [0, None]
    for call in calls:
        if call[0] == "stage":
            stage = call[1]
            stages.append(stage)
            if stage == "writing":
                writing[1] = call[2]
        elif stage == "fetching":
            done, rows = done + call[1], rows + call[2]
        elif stage == "writing":
            writing[0] += call[1]
    return stages, done, rows, writing[0] == writing[1]


@pytest.fixture(scope="module")
def local_export(ch_source, tmp_path_factory):
    """The reference: the export with local threads, and the progress calls it made."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
    try:
        progress = Recorder()
        run = _export(ch_source, tmp_path_factory.mktemp("local"), executor="local", progress=progress)
        return run, progress.calls
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def local_run(local_export):
    return local_export[0]


def test_the_plan_has_several_groups(ch_source, local_run):
    """What the identity tests below rely on: several tasks, rows in many buckets."""
    from lakeslice.export import plan_run
    from lakeslice.options import ExportOptions
    from lakeslice.sources import open_source

    url, alerts = ch_source
    with open_source(url) as src:
        plan = plan_run(alerts, ExportOptions(interval="1m", window=WINDOW), source=src)
    assert len(plan.groups) >= 3
    slices = local_run.manifest["outputs"]["slices"]
    assert slices["mint_buckets"] > 100 and slices["rows"] > 50_000


def test_dask_export_equals_local(ch_source, local_export, dask_cluster, tmp_path, monkeypatch):
    """Same files, manifest bytes, content_sha256 and progress; tasks ran on both workers."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    local_run, local_progress = local_export
    progress = Recorder()
    run = _export(ch_source, tmp_path, executor=dask_url(dask_cluster), progress=progress)
    assert run_files(run.run_dir) == run_files(local_run.run_dir)
    # the same stages in the same order and rows as locally (locally rows advance as batches
    # arrive, remotely when a group's result comes back); locally the groups come from shared
    # queries, in smaller groups (shared_group_rows)
    ours, local = _progress_summary(progress.calls), _progress_summary(local_progress)
    assert (ours[0], ours[2], ours[3]) == (local[0], local[2], local[3])
    assert 3 <= ours[1] <= local[1]
    assert _progress_summary(progress.calls)[2] == run.rows_fetched
    assert run.manifest["content_sha256"] == local_run.manifest["content_sha256"]
    assert run.rows_fetched == local_run.rows_fetched
    with distributed.Client(dask_cluster, set_as_default=False) as client:
        opened = client.run(_opened_sources)
    assert len(opened) == 2 and all(n >= 1 for n in opened.values())  # both workers read


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LAKESLICE, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_cli_dask_export_equals_local(ch_source, local_run, dask_cluster, tmp_path):
    url, alerts = ch_source
    proc = _cli(
        "export", "--alerts", str(alerts), "--interval", "1m", "--window", WINDOW, "--source", url,
        "--data-root", str(tmp_path), "--run-id", "d", "--executor", dask_url(dask_cluster),
        "--format", "json", env={"SOURCE_DATE_EPOCH": EPOCH},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert run_files(Path(json.loads(proc.stdout)["run_dir"])) == run_files(local_run.run_dir)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--source", "clickhouse://lake:{pw}@127.0.0.1:9/daskx"),
        ("--source-shards", "00-7f=clickhouse://127.0.0.1:9/a,80-ff=clickhouse://lake:{pw}@127.0.0.1:9/b"),
    ],
)
def test_a_password_in_a_url_never_travels_to_workers(ch_source, dask_cluster, tmp_path, flag, value):
    """Refused before any work (exit 2, one line, no secret): workers use their environment."""
    proc = _cli(
        "export", "--alerts", str(ch_source[1]), "--interval", "1m", "--window", WINDOW,
        flag, value.format(pw=PASSWORD), "--data-root", str(tmp_path), "--executor", dask_url(dask_cluster),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "LAKESLICE_CLICKHOUSE_PASSWORD" in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout
    assert not (tmp_path / "lake" / "runs").exists()


def test_bad_executor_is_exit_2(ch_source, tmp_path):
    proc = _cli(
        "export", "--alerts", str(ch_source[1]), "--interval", "1m", "--window", WINDOW,
        "--source", ch_source[0], "--data-root", str(tmp_path), "--executor", "ray://head:10001",
    )  # fmt: skip
    assert (
        proc.returncode == 2
        and "--executor 'ray://head:10001': expected local or dask://HOST:PORT" in proc.stderr
    )


def test_dask_export_to_s3_equals_local(ch_source, local_run, dask_cluster, s3_server, tmp_path, monkeypatch):
    """Workers write their parts to S3 with their own credentials, ClickHouse's included.

    The coordinator has the AWS keys (it writes coverage and the seal) but no ClickHouse
    password; the workers read as user ``lake`` with the password of their environment.
    """
    bucket = "dask-lake"
    s3_server.make_bucket(bucket)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    monkeypatch.delenv("LAKESLICE_CLICKHOUSE_PASSWORD", raising=False)
    run = _export(ch_source, f"s3://{bucket}/p", executor=dask_url(dask_cluster))
    fs = s3_server.filesystem()
    prefix = f"{bucket}/p/lake/runs/run_id=d/"
    from pyarrow import fs as pafs

    found = {
        info.path[len(prefix) :]: fs.open_input_stream(info.path).read()
        for info in fs.get_file_info(pafs.FileSelector(prefix, recursive=True))
        if info.type == pafs.FileType.File
    }
    assert found == run_files(local_run.run_dir)
    assert run.manifest["content_sha256"] == local_run.manifest["content_sha256"]


def test_dask_corpus_equals_local(ch_source, dask_cluster, tmp_path, monkeypatch):
    """The corpus runs its days' groups through the same executor: same files and seals."""
    from lakeslice import export_corpus

    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    trees = {}
    for name, executor in (("local", "local"), ("dask", dask_url(dask_cluster))):
        res = export_corpus(
            interval="1m", date_from="2024-01-01", date_to="2024-01-03", source=ch_source[0],
            data_root=tmp_path / name, executor=executor,
        )  # fmt: skip
        assert res.rows_fetched > 50_000
        trees[name] = run_files(tmp_path / name / "lake")
    assert trees["dask"] == trees["local"] and len(trees["local"]) > 100


def _opened_sources() -> int:
    """Sources this worker process opened for tasks (lakeslice.portable's per-thread cache)."""
    from lakeslice import portable

    return sum(1 for _, _, key in portable._CACHE if key[0] == "source")


# ------------------------------------------------------------------------------------------
# Workers that die


def test_a_worker_killed_mid_task_is_retried(executor, tmp_path):
    marker = str(tmp_path / "killed")
    assert list(executor.map(die_once, [(marker, x) for x in range(6)])) == [x * 10 for x in range(6)]
    assert Path(marker).exists()  # a worker really died
    _wait_for_workers(executor, 2)


def _wait_for_workers(executor, n: int, timeout: float = 60) -> None:
    """Nannies restart killed workers: let the next test start with the full cluster."""
    executor.client.wait_for_workers(n, timeout=timeout)


# Sources of the failure tests: real ClickHouse reads, with a worker that dies (portable: they
# travel as the URL, and open the real source where they run).

_FETCHES = {"n": 0}  # per worker process


class _DyingSource:
    portable = True

    def __init__(self, url: str, marker: str | None):
        from lakeslice.sources.clickhouse import ClickHouseSource

        src = ClickHouseSource.from_url(url)
        self.url, self.marker = url, marker
        self.label, self._snapshot, self.group_rows = src.label, src.snapshot(), src.group_rows

    def snapshot(self) -> dict:
        return self._snapshot

    def _real(self):
        from lakeslice.portable import per_thread
        from lakeslice.sources.clickhouse import ClickHouseSource

        return per_thread(("dying", self.url), lambda: ClickHouseSource.from_url(self.url))

    def _should_die(self) -> bool:
        """Always (no marker), or once: after this process finished a group, on the first claim."""
        return self.marker is None or (_FETCHES["n"] >= 2 and _claim(self.marker))

    def fetch(self, request):
        _FETCHES["n"] += 1
        for batch in self._real().fetch(request):
            yield batch
            # Mid-stream; with a marker, in the second group of this process, so the first
            # one's files are written and its result is held by the worker that dies.
            if self._should_die():
                os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        pass


def _claim(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def test_a_worker_killed_mid_export_seals_the_same_content(
    ch_source, local_run, dask_cluster, tmp_path, monkeypatch
):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    marker = tmp_path / "killed"
    source = _DyingSource(ch_source[0], str(marker))
    run = _export(ch_source, tmp_path / "root", source=source, executor=dask_url(dask_cluster))
    assert marker.exists()  # a worker really died mid-task
    assert run_files(run.run_dir) == run_files(local_run.run_dir)
    _wait_for_workers_of(dask_cluster, 2)


@pytest.fixture
def doomed_cluster():
    """A fresh one-worker cluster for tasks that keep killing their worker (not worth restoring)."""
    cluster = local_cluster(1)
    try:
        yield cluster
    finally:
        cluster.close()


def test_a_group_whose_workers_keep_dying_fails_the_run_unsealed(ch_source, doomed_cluster, tmp_path):
    source = _DyingSource(ch_source[0], None)
    with pytest.raises(RunError, match=r"^bucket group \d+: the Dask workers running it died repeatedly"):
        _export(ch_source, tmp_path, source=source, executor=dask_url(doomed_cluster))
    assert not list(tmp_path.rglob("manifest.json"))
    assert not (tmp_path / "lake" / "runs" / "run_id=d").exists()


def _wait_for_workers_of(cluster, n: int) -> None:
    with distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=60)
