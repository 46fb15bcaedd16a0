"""Issue 11: bucket groups on a real Dask cluster (``LocalCluster``: a scheduler and worker
processes on loopback ports), never threads pretending to be workers.

The executor is tested on its own (order, first failure, a worker killed mid-task, versions),
then through whole exports compared byte for byte with the local executor.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from daskcluster import dask_url, local_cluster

from lakeslice.dask_executor import DaskExecutor, parse_address, worker_versions
from lakeslice.spec import InputError, RunError

distributed = pytest.importorskip("distributed", reason="the dask extra is part of the test extra")
# (importorskip only documents the dependency: `make install` installs it, so it never skips)


@pytest.fixture(scope="module")
def dask_cluster():
    cluster = local_cluster(2)
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


def always_die(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


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


def test_a_worker_killed_mid_task_is_retried(executor, tmp_path):
    marker = str(tmp_path / "killed")
    assert list(executor.map(die_once, [(marker, x) for x in range(6)])) == [x * 10 for x in range(6)]
    assert Path(marker).exists()  # a worker really died
    _wait_for_workers(executor, 2)


def test_a_task_that_keeps_killing_its_worker_fails_the_run(executor):
    with pytest.raises(RunError, match=r"^bucket group 0: the Dask workers running it died repeatedly"):
        list(executor.map(always_die, [0]))
    _wait_for_workers(executor, 2)


def _wait_for_workers(executor, n: int, timeout: float = 60) -> None:
    """Nannies restart killed workers: let the next test start with the full cluster."""
    executor.client.wait_for_workers(n, timeout=timeout)


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
