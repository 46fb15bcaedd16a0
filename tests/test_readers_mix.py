"""Issue 12 item 1: readers racing an --overwrite (or a corpus day re-export) never see a mix.

A writer thread replaces one run (or one corpus day) again and again with two different
exports A and B; reader threads scan it in a loop meanwhile. Every read must equal A or B
exactly (computed beforehand from exports into their own roots), or fail with one clear
RunError (unsealed / changed under the reader); never rows of both. Local and s3:// roots.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import polars as pl
import pytest
from support.runs import export_fixture
from support.s3 import local_or_s3_root

import lakeslice as ls
from lakeslice.corpus import export_corpus
from lakeslice.spec import RunError

REPO = Path(__file__).resolve().parent.parent
ALERTS_CSV = REPO / "fixtures" / "alerts.csv"
CANDLES_PQ = REPO / "fixtures" / "candles.parquet"
KEY = ["mint", "ts"]
CLEAR = ("unsealed", "changed since", "vanished since", "does not verify", "no such run")


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    return local_or_s3_root(request, local=str(tmp_path / "lake-root"), prefix="mix", path="p")


def _alerts(tmp_path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    alerts = pl.read_csv(ALERTS_CSV, infer_schema=False)
    return alerts, alerts.head(max(2, alerts.height // 3))


def _export(alerts, root, *, overwrite=False):
    return export_fixture(alerts, root, run_id="mix", overwrite=overwrite, target_file_mb=0.01)


def _race(write_once, read_once, *, rounds: int, readers: int = 2) -> tuple[list, list]:
    """Writer rounds against reader loops; the reads that succeeded and the errors seen."""
    done = threading.Event()
    seen, errors, unexpected = [], [], []

    def reader():
        while not done.is_set():
            try:
                seen.append(read_once())
            except RunError as exc:
                errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - any other failure is a test failure
                unexpected.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    try:
        for i in range(rounds):
            write_once(i)
            time.sleep(0.01)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not unexpected, unexpected[:3]
    return seen, errors


@pytest.mark.parametrize("verify", [False, True])
def test_run_readers_never_mix_during_overwrite(root, tmp_path, verify):
    a, b = _alerts(tmp_path)
    want = {}
    for name, alerts in (("a", a), ("b", b)):
        res = _export(alerts, str(tmp_path / f"ref-{name}"))
        want[name] = ls.scan_run(res.run_dir).collect().sort(KEY)
    assert want["a"].height != want["b"].height
    run = _export(a, root).run_dir

    seen, errors = _race(
        lambda i: _export(b if i % 2 == 0 else a, root, overwrite=True),
        lambda: ls.scan_run(run, verify=verify).collect().sort(KEY),
        rounds=6,
    )
    for frame in seen:
        assert frame.equals(want["a"]) or frame.equals(want["b"]), "a read mixed two exports"
    assert all(any(c in e for c in CLEAR) for e in errors), errors[:3]
    assert len(seen) >= 2, (len(seen), errors[:3])


def test_corpus_readers_never_mix_during_day_reexport(root, tmp_path):
    """Re-exporting a day with other source rows: scan_corpus sees the old day or the new one."""
    full = pl.read_parquet(CANDLES_PQ)
    half = tmp_path / "half.parquet"
    full.head(full.height // 2).write_parquet(half)
    sources = [f"parquet://{CANDLES_PQ}", f"parquet://{half}"]

    def export(i, where=root):
        return export_corpus(
            interval="1m",
            date_from="2024-01-01",
            date_to="2024-01-02",
            source=sources[i % 2],
            data_root=where,
            target_file_mb=0.01,
        )

    want = []
    for i in range(2):
        export(i, str(tmp_path / f"ref{i}"))
        want.append(ls.scan_corpus(str(tmp_path / f"ref{i}"), interval="1m").collect().sort(KEY))
    assert want[0].height != want[1].height and want[1].height > 0
    export(0)
    seen, errors = _race(
        lambda i: export(i + 1),
        lambda: ls.scan_corpus(root, interval="1m").collect().sort(KEY),
        rounds=6,
    )
    for frame in seen:
        assert frame.equals(want[0]) or frame.equals(want[1]), "a read mixed two exports of the day"
    assert all(any(c in e for c in CLEAR) for e in errors), errors[:3]
    assert len(seen) >= 2


def _plain(frame: pl.DataFrame) -> pl.DataFrame:
    """The slice columns of a plain scan, ``ts`` as epoch ms (DuckDB and Polars agree on it)."""
    from lakeslice.transforms import SLICE_SCHEMA

    return frame.select(list(SLICE_SCHEMA)).with_columns(pl.col("ts").dt.epoch("ms")).sort(KEY)


def _polars_scan(path: Path) -> pl.DataFrame:
    return pl.scan_parquet(path / "slices", hive_partitioning=True).collect()


def _duckdb_scan(path: Path) -> pl.DataFrame:
    import duckdb

    glob = f"{path}/slices/**/*.parquet"
    with duckdb.connect() as con:  # one connection per reader thread
        frame = con.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true)").pl()
    return frame.with_columns(pl.col("ts").dt.replace_time_zone("UTC").dt.cast_time_unit("ms"))


@pytest.mark.parametrize("scan", [_polars_scan, _duckdb_scan], ids=["polars", "duckdb"])
def test_plain_scans_of_run_path_never_mix_during_overwrite(tmp_path, scan):
    """A plain Polars/DuckDB scan of ``ls.run_path`` reads one export whole, with no error."""
    a, b = _alerts(tmp_path)
    want = {}
    for name, alerts in (("a", a), ("b", b)):
        _export(alerts, str(tmp_path / f"ref-{name}"))
        want[name] = _plain(_polars_scan(ls.run_path(tmp_path / f"ref-{name}", "mix")))
    assert not want["a"].equals(want["b"])
    root = str(tmp_path / "lake-root")
    _export(a, root)

    def read_once():
        frame = scan(ls.run_path(root, "mix"))
        # partition columns come from below the generation directory only
        assert set(frame.columns) - set(want["a"].columns) == {"interval", "window", "mint_bucket"}
        return _plain(frame)

    seen, errors = _race(lambda i: _export(b if i % 2 == 0 else a, root, overwrite=True), read_once, rounds=8)
    assert errors == []
    assert len(seen) >= 2
    for frame in seen:
        assert frame.equals(want["a"]) or frame.equals(want["b"]), "a plain read mixed two exports"


def test_a_resolved_run_path_outlives_overwrites(tmp_path):
    """A reader that resolved the run before two overwrites still reads its export exactly."""
    a, b = _alerts(tmp_path)
    root = str(tmp_path / "lake-root")
    _export(a, root)
    path = ls.run_path(root, "mix")
    before = {s.__name__: _plain(s(path)) for s in (_polars_scan, _duckdb_scan)}
    _export(b, root, overwrite=True)
    _export(b, root, overwrite=True)
    assert ls.run_path(root, "mix") != path
    for s in (_polars_scan, _duckdb_scan):
        assert _plain(s(path)).equals(before[s.__name__])


@pytest.mark.parametrize("verify", [False, True])
def test_local_scan_run_reads_its_generation_without_error_during_overwrites(tmp_path, verify):
    """Locally, scan_run resolves the run once: an overwrite meanwhile is no error at all."""
    a, b = _alerts(tmp_path)
    want = {n: ls.scan_run(_export(x, str(tmp_path / f"ref-{n}")).run_dir).collect().sort(KEY)
            for n, x in (("a", a), ("b", b))}  # fmt: skip
    root = str(tmp_path / "lake-root")
    run = _export(a, root).run_dir
    seen, errors = _race(
        lambda i: _export(b if i % 2 == 0 else a, root, overwrite=True),
        lambda: ls.scan_run(run, verify=verify).collect().sort(KEY),
        rounds=6,
    )
    assert errors == [] and len(seen) >= 2
    for frame in seen:
        assert frame.equals(want["a"]) or frame.equals(want["b"]), "a read mixed two exports"


def test_local_scan_windows_takes_coverage_and_candles_from_one_export(tmp_path):
    """scan_windows reads the coverage and the slices: both from the one generation it resolved."""
    a, b = _alerts(tmp_path)
    want = {}
    for name, alerts in (("a", a), ("b", b)):
        ref = _export(alerts, str(tmp_path / f"ref-{name}")).run_dir
        want[name] = ls.scan_windows(ref, dense=True).collect()
    assert not want["a"].equals(want["b"])
    root = str(tmp_path / "lake-root")
    run = _export(a, root).run_dir
    seen, errors = _race(
        lambda i: _export(b if i % 2 == 0 else a, root, overwrite=True),
        lambda: ls.scan_windows(run, dense=True).collect(),
        rounds=6,
    )
    assert errors == [] and len(seen) >= 2
    for frame in seen:
        assert frame.equals(want["a"]) or frame.equals(want["b"]), "coverage and candles of two exports"
