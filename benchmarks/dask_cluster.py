"""A Dask scheduler and two worker processes on loopback ports for the ``ls-dask`` contender.

Started once before the contenders (untimed) with the ``dask`` command of the venv, stopped at
the end. Each worker is one process with one thread, like a small machine each; their CPU and
memory are not in the contender's numbers (only the coordinator, ``lakeslice export``, is the
timed process), so ``ls-dask``'s peak RSS is the coordinator's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))
ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskCluster:
    """``dask scheduler`` + ``dask worker --nworkers 2 --nthreads 1`` as child processes."""

    def __init__(self, log_dir: Path, *, workers: int = WORKERS):
        self.port = _free_port()
        self.workers = workers
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"dask://127.0.0.1:{self.port}"

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # workers import benchmarks.dask_cluster's task functions: the repository on their path
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log_dir / f"{name}.log", "wb") as out:
            self.procs.append(
                subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT, env=env
                )
            )

    def start(self, timeout: float = 120) -> DaskCluster:
        address = f"tcp://127.0.0.1:{self.port}"
        self._spawn(
            "scheduler",
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
        )
        self._spawn(
            "workers",
            [DASK, "worker", address, "--host", "127.0.0.1", "--nworkers", str(self.workers),
             "--nthreads", "1", "--no-dashboard", "--memory-limit", "0"],
        )  # fmt: skip
        from distributed import Client

        deadline = time.monotonic() + timeout
        with Client(address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(self.workers, timeout=max(1.0, deadline - time.monotonic()))
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(20)
        self.procs = []


def dask_overheads(url: str, ch_url: str, *, alerts: Path, window: str, interval: str, out: Path) -> dict:
    """Where the time of a Dask export goes, measured once after the timed rounds (untimed).

    - ``connect_check_s``: client connection + the version check of every worker;
    - ``noop_task_ms``: per-task round trip of 40 empty tasks over the 2 workers (scheduling,
      (de)serialization, results in order), i.e. the fixed cost a bucket group pays;
    - ``worker_connect_ms``: a fresh ClickHouse connection + table schema query on a worker
      (paid once per worker thread, the connection is then cached);
    - the export itself, in-process with Dask's task stream: wall, tasks, the sum and span of
      task compute time, deserialize/transfer time;
    - ``group_phases_s``: one bucket group run under cProfile on a worker: fetch, transform
      (coverage, dedup), write (encode + put + hash), cumulative seconds.
    """
    import statistics

    import distributed

    from lakeslice.dask_executor import DaskExecutor
    from lakeslice.export import export_run_slices

    note: dict = {}
    t0 = time.perf_counter()
    ex = DaskExecutor(address=url)
    ex.check_workers()
    note["connect_check_s"] = round(time.perf_counter() - t0, 3)
    try:
        laps = []
        for _ in range(3):
            t = time.perf_counter()
            list(ex.map(_noop, range(40)))
            laps.append((time.perf_counter() - t) / 40 * WORKERS * 1000)
        note["noop_task_ms"] = round(statistics.median(laps), 2)
        note["worker_connect_ms"] = {w: round(v, 1) for w, v in ex.client.run(_connect_ms, ch_url).items()}
        with distributed.get_task_stream(ex.client) as stream:
            t = time.perf_counter()
            run = export_run_slices(
                alerts, interval=interval, window=window, source=ch_url, data_root=out,
                run_id="dask-note", overwrite=True, executor=ex,
            )  # fmt: skip
            wall = time.perf_counter() - t
        note.update(_stream_summary(stream.data, wall, run.manifest))
        note["group_phases_s"] = _profile_one_group(ex, alerts, ch_url, window, interval, out)
    finally:
        ex.client.close()
    return note


def _noop(x: int) -> int:
    return x


def _connect_ms(ch_url: str) -> float:
    from lakeslice.sources.clickhouse import ClickHouseSource

    t = time.perf_counter()
    with ClickHouseSource.from_url(ch_url) as src:
        src.describe()
    return (time.perf_counter() - t) * 1000


def _stream_summary(tasks: list[dict], wall: float, manifest: dict) -> dict:
    groups = [t for t in tasks if str(t.get("key", "")).startswith("lakeslice-group")]
    by_action: dict[str, float] = {}
    starts, stops = [], []
    for task in groups:
        for ss in task.get("startstops", ()):
            by_action[ss["action"]] = by_action.get(ss["action"], 0.0) + ss["stop"] - ss["start"]
            if ss["action"] == "compute":
                starts.append(ss["start"])
                stops.append(ss["stop"])
    return {
        "export_wall_s": round(wall, 3),
        "tasks": len(groups),
        "task_seconds_by_action": {k: round(v, 3) for k, v in sorted(by_action.items())},
        "compute_span_s": round(max(stops) - min(starts), 3) if starts else 0.0,
        "outside_tasks_s": round(wall - (max(stops) - min(starts)), 3) if starts else round(wall, 3),
        "files": manifest["outputs"]["slices"]["files"],
    }


def _profile_one_group(ex, alerts: Path, ch_url: str, window: str, interval: str, out: Path) -> dict:
    """cProfile of the first bucket group on a worker: cumulative seconds per stage function."""
    from lakeslice.export import plan_run
    from lakeslice.lake.store import open_store
    from lakeslice.options import ExportOptions
    from lakeslice.portable import PortableSource, PortableStore, SourceSpec

    source = PortableSource.of(SourceSpec(url=ch_url))
    plan = plan_run(alerts, ExportOptions(interval=interval, window=window), source=source)
    store = PortableStore.of(open_store(out))
    task = plan.tasks("profile-scratch")[0]
    return ex.client.submit(_profiled_group, task, source, store, pure=False).result()


def _profiled_group(task, source, store) -> dict:
    import cProfile
    import pstats

    from lakeslice.export import run_group

    prof = cProfile.Profile()
    prof.enable()
    run_group(task, source=source, store=store)
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    wanted = {
        "run_group": "total",
        "fetch_frame": "fetch",
        "_group_outputs": "transform",
        "write_buckets": "write",
    }
    out: dict[str, float] = {}
    for (_, _, name), (_, _, _, cumulative, _) in stats.items():
        if name in wanted:
            out[wanted[name]] = max(out.get(wanted[name], 0.0), cumulative)
    # files are encoded and written by FileSink's threads, which cProfile does not see: the
    # rest of the group's time is the writing (and waiting for it)
    out["write"] = out.get("total", 0.0) - out.get("fetch", 0.0) - out.get("transform", 0.0)
    return {k: round(v, 3) for k, v in out.items()}
