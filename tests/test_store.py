"""The Store interface (local directory and S3), the executor seam and the three export stages."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from support.s3 import local_or_s3_root

import lakeslice as ls
from lakeslice.executor import LocalExecutor
from lakeslice.export import GroupResult, export_run_slices, plan_run, run_group
from lakeslice.lake.store import LocalStore, ObjectStore
from lakeslice.options import ExportOptions
from lakeslice.sources import open_source
from lakeslice.spec import RunError

REPO = Path(__file__).resolve().parent.parent
ALERTS_CSV = REPO / "fixtures" / "alerts.csv"
CANDLES_PQ = REPO / "fixtures" / "candles.parquet"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    root = local_or_s3_root(request, local=str(tmp_path / "root"), prefix="st", path="pre/fix")
    return LocalStore(root) if request.param == "local" else ObjectStore(root)


def test_store_operations(store):
    assert store.list("a/") == []
    store.put("a/b/one.bin", b"1")
    store.put("a/two.bin", b"22")
    store.put("a/two.bin", b"222")  # replaced whole
    assert store.get("a/two.bin") == b"222"
    assert store.list("a/") == ["a/b/one.bin", "a/two.bin"]
    assert store.list("a/b/") == ["a/b/one.bin"]
    assert store.exists("a/b/one.bin") and not store.exists("a/b/none")
    assert store.children("a/") == ["a/b"] and store.children("none/") == []
    with pytest.raises(FileNotFoundError):
        store.get("a/none")
    assert store.put_if_absent("a/b/one.bin", b"x") is False and store.get("a/b/one.bin") == b"1"
    assert store.put_if_absent("a/new.bin", b"n") is True and store.get("a/new.bin") == b"n"
    store.delete(["a/two.bin", "a/missing.bin"])
    assert store.list("") == ["a/b/one.bin", "a/new.bin"]
    assert store.url("a/new.bin").endswith("/a/new.bin")
    fs, base = store.arrow_filesystem()
    with fs.open_input_stream(f"{base}/a/new.bin") as fh:
        assert fh.read() == b"n"


def test_put_if_absent_races_exactly_one_wins(store):
    for race in range(10):
        key = f"race/{race}.json"
        barrier = threading.Barrier(6)
        wins = []

        def go(i, key=key, barrier=barrier, wins=wins):
            barrier.wait()
            if store.put_if_absent(key, f"{i}".encode()):
                wins.append(i)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1, race
        assert store.get(key) == f"{wins[0]}".encode()


def test_executor_order_and_first_error():
    def slow_square(x):
        time.sleep(0.02 * (5 - x % 5))  # later tasks finish first
        return x * x

    assert list(LocalExecutor().map(slow_square, range(12))) == [x * x for x in range(12)]
    started = []

    def fail_at_3(x):
        started.append(x)
        if x == 3:
            raise ValueError("group 3")
        time.sleep(0.05)
        return x

    with pytest.raises(ValueError, match="group 3"):
        list(LocalExecutor(workers=2).map(fail_at_3, range(100)))
    time.sleep(0.2)
    assert max(started) <= 5, started  # nothing after the failure is started


def test_in_flight_is_bounded():
    live, peak, lock = [0], [0], threading.Lock()

    def task(x):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.01)
        with lock:
            live[0] -= 1
        return x

    for workers in (1, 2, 3):
        peak[0] = 0
        assert list(LocalExecutor(workers=workers).map(task, range(20))) == list(range(20))
        assert peak[0] <= workers


def test_stages_are_picklable_and_rerunnable(tmp_path):
    """plan → tasks → results survive pickling; running a group twice writes the same bytes."""
    src = open_source(f"parquet://{CANDLES_PQ}")
    opts = ExportOptions(interval="1m", window="pre10_post20", run_id="p", target_file_mb=0.01)
    plan = pickle.loads(pickle.dumps(plan_run(ALERTS_CSV, opts, source=src)))
    assert plan.run_id == "p" and plan.groups
    store = LocalStore(tmp_path)
    task = pickle.loads(pickle.dumps(plan.tasks("staged")[0]))
    first = run_group(task, source=src, store=store)
    bytes_once = {k: store.get(k) for k in store.list("staged/")}
    second = pickle.loads(pickle.dumps(run_group(task, source=src, store=store)))
    assert isinstance(second, GroupResult) and second.files == first.files
    assert second.coverage.equals(first.coverage) and second.rows_fetched == first.rows_fetched
    assert {k: store.get(k) for k in store.list("staged/")} == bytes_once
    assert sorted(f"staged/{f.path}" for f in first.files) == sorted(bytes_once)


class _FailingStore(LocalStore):
    """A real local store whose disk 'fills up' at the first slice file."""

    def put(self, key, data):
        if "/slices/" in key:
            raise RunError(f"{key}: cannot write (No space left on device)")
        super().put(key, data)


class _CountingSource:
    """A real Parquet source that counts the groups fetched."""

    def __init__(self, inner):
        self.inner, self.fetches = inner, 0
        self.label, self.group_rows = inner.label, 1

    def snapshot(self):
        return self.inner.snapshot()

    def fetch(self, request):
        self.fetches += 1
        return self.inner.fetch(request)

    def close(self):
        self.inner.close()


def test_writer_error_stops_the_run_at_once(tmp_path, monkeypatch):
    import lakeslice.export as export_mod

    monkeypatch.setattr(export_mod, "open_store", _FailingStore)
    src = _CountingSource(open_source(f"parquet://{CANDLES_PQ}"))
    with pytest.raises(RunError, match="No space left"):
        export_run_slices(ALERTS_CSV, interval="1m", window="pre10_post20", source=src, data_root=tmp_path)
    plan = plan_run(ALERTS_CSV, ExportOptions(interval="1m", window="pre10_post20"), source=src)
    assert len(plan.groups) >= 4
    assert src.fetches <= 2  # not every group was fetched before the error surfaced
    assert not (tmp_path / "lake" / "runs").exists() or not any((tmp_path / "lake" / "runs").iterdir())
    assert list((tmp_path / "lake" / ".staging").iterdir()) == []


def test_scan_run_fails_clearly_when_a_file_vanished(tmp_path):
    res = export_run_slices(
        ALERTS_CSV, interval="1m", window="pre10_post20", source=f"parquet://{CANDLES_PQ}",
        data_root=tmp_path, run_id="v", target_file_mb=0.01,
    )  # fmt: skip
    lazy = ls.scan_run(res.run_dir)  # the file list is resolved here, once
    part = next(Path(res.run_dir).rglob("part-0000.parquet"))
    part.unlink()
    with pytest.raises(RunError, match="vanished since the seal was read"):
        lazy.collect()
    assert ls.scan_run(res.run_dir).filter(pl.col("mint_bucket") == "zz").collect().height == 0
