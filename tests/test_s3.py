"""Issue 10: the lake on object storage, against a real S3 server (SeaweedFS, tests/s3server.py).

Exports run through the real CLI in subprocesses with only the standard AWS_* environment;
expectations come from a local export of the same inputs (byte for byte) and from reading the
bucket back with obstore, Polars and pyarrow directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow.dataset as ds
import pytest

from lakeslice.lake.commit import Lease
from lakeslice.lake.store import ObjectStore, open_store
from lakeslice.spec import InputError, RunError

LAKESLICE = str(Path(sys.executable).with_name("lakeslice"))
REPO = Path(__file__).resolve().parent.parent
ALERTS_CSV = REPO / "fixtures" / "alerts.csv"
CANDLES_PQ = REPO / "fixtures" / "candles.parquet"
EPOCH = "1700000000"


@pytest.fixture
def bucket(s3_server, monkeypatch):
    """A fresh bucket, with this process's AWS_* environment pointing at the test server."""
    name = f"t-{secrets.token_hex(4)}"
    s3_server.make_bucket(name)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    return name


def run(*args, env_extra=None, timeout=180, **kw):
    env = {k: v for k, v in os.environ.items() if k != "LAKESLICE_SOURCE"}
    env["SOURCE_DATE_EPOCH"] = EPOCH
    env.update(env_extra or {})
    return subprocess.run(
        [LAKESLICE, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, **kw
    )


def export_args(root, run_id, *, alerts=ALERTS_CSV, source=CANDLES_PQ, extra=()):
    return [
        "export",
        "--alerts",
        alerts,
        "--source",
        f"parquet://{source}",
        "--interval",
        "1m",
        "--window",
        "pre10_post20",
        "--data-root",
        root,
        "--run-id",
        run_id,
        "--target-file-mb",
        "0.01",
        "--format",
        "json",
        *extra,
    ]


def objects(bucket: str, prefix: str) -> dict[str, bytes]:
    store = ObjectStore(f"s3://{bucket}/{prefix}")
    return {k: store.get(k) for k in store.list("")}


def test_export_to_s3_is_byte_identical_to_local(bucket, tmp_path):
    local = run(*export_args(tmp_path, "same"))
    remote = run(*export_args(f"s3://{bucket}/p1", "same"))
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    doc = json.loads(remote.stdout)
    assert doc["run_dir"] == f"s3://{bucket}/p1/lake/runs/run_id=same"
    assert doc["manifest"] == json.loads(local.stdout)["manifest"]
    run_dir = tmp_path / "lake/runs/run_id=same"
    on_disk = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    in_bucket = objects(bucket, "p1/lake/runs/run_id=same")
    assert sorted(in_bucket) == sorted(on_disk) and len(on_disk) > 4
    assert in_bucket == on_disk  # every file byte for byte, manifest.json included
    assert not [k for k in objects(bucket, "p1/lake") if "/.locks/" in k]  # lease released


def test_s3_run_reads_back_everywhere(bucket, tmp_path, s3_server):
    import lakeslice as ls

    assert run(*export_args(f"s3://{bucket}/r", "rd")).returncode == 0
    assert run(*export_args(tmp_path, "rd")).returncode == 0
    url = f"s3://{bucket}/r/lake/runs/run_id=rd"
    local = tmp_path / "lake/runs/run_id=rd"
    key = ["mint", "ts"]
    want = ls.scan_run(local).collect().sort(key)
    assert ls.scan_run(url).collect().sort(key).equals(want) and want.height > 0
    assert ls.scan_coverage(url).collect().equals(ls.scan_coverage(local).collect())
    assert ls.scan_windows(url).collect().equals(ls.scan_windows(local).collect())
    # the README recipes: Polars with storage_options, pyarrow with S3FileSystem
    opts = {k.lower(): v for k, v in s3_server.env().items()}
    hive = {"interval": pl.String, "window": pl.String, "mint_bucket": pl.String}
    pl_rows = pl.scan_parquet(f"{url}/slices/", storage_options=opts, hive_schema=hive).collect()
    assert (
        pl_rows.drop("interval", "window")
        .sort(key)
        .equals(want.select(pl_rows.drop("interval", "window").columns).sort(key))
    )
    from lakeslice.lake.store import s3_filesystem

    table = ds.dataset(f"{bucket}/r/lake/runs/run_id=rd/slices", filesystem=s3_filesystem(), format="parquet")
    assert table.count_rows() == want.height
    for cmd in ("verify", "show"):
        proc = run(cmd, url)
        assert proc.returncode == 0, proc.stderr
    assert "rd" in run("show", url).stdout


def test_verify_catches_tampered_missing_and_extra_objects(bucket):
    assert run(*export_args(f"s3://{bucket}/v", "v")).returncode == 0
    url = f"s3://{bucket}/v/lake/runs/run_id=v"
    store = ObjectStore(url)
    parts = [k for k in store.list("slices/") if k.endswith(".parquet")]
    assert len(parts) >= 3
    tampered, missing = parts[0], parts[1]
    data = bytearray(store.get(tampered))
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only a hash of the bytes sees it
    store.put(tampered, bytes(data))
    store.delete([missing])
    store.put("slices/extra.parquet", b"PAR1")
    proc = run("verify", url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    from lakeslice.lake.read import verify_url

    problems = verify_url(url)[0].problems
    assert any(tampered in p and "sha256" in p for p in problems), problems
    assert any(missing in p and "missing" in p for p in problems), problems
    assert any("slices/extra.parquet" in p and "not listed" in p for p in problems), problems


def test_unsupported_scheme_is_refused(tmp_path):
    for root in ("gs://lake/p1", "file:///tmp/x", "S3X://b"):
        proc = run(*export_args(root, "x"), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "unsupported scheme" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert json.loads(proc.stdout)["error"]["code"]
    assert list(tmp_path.iterdir()) == []  # no local directory named 'gs:' or 'file:'
    args = export_args("s3://b/p", "x")
    del args[args.index("--source") : args.index("--source") + 2]
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "--source" in proc.stderr, proc.stderr
    with pytest.raises(InputError):
        open_store("s3://")


def test_wrong_credentials_one_clean_line(bucket, s3_server):
    wrong = "WRONG-secret-" + secrets.token_hex(6)
    proc = run(*export_args(f"s3://{bucket}/w", "w"), env_extra={"AWS_SECRET_ACCESS_KEY": wrong})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "access denied" in lines[0] and f"s3://{bucket}/w" in lines[0]
    assert wrong not in proc.stderr + proc.stdout
    assert s3_server.env()["AWS_SECRET_ACCESS_KEY"] not in proc.stderr + proc.stdout
    assert json.loads(proc.stdout)["error"]["message"] == lines[0].removeprefix("lakeslice: error: ")
    assert objects(bucket, "w") == {}


def test_missing_bucket_one_clean_line(bucket):
    proc = run(*export_args("s3://no-such-bucket-here/p", "m"))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bucket 'no-such-bucket-here' does not exist" in lines[0], lines
    assert "Traceback" not in proc.stderr


def test_sealed_run_needs_overwrite_and_overwrite_replaces(bucket, tmp_path):
    root = f"s3://{bucket}/o"
    assert run(*export_args(root, "o")).returncode == 0
    again = run(*export_args(root, "o"))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    other = tmp_path / "two.csv"
    other.write_text("\n".join(ALERTS_CSV.read_text().splitlines()[:3]) + "\n")
    done = run(*export_args(root, "o", alerts=other, extra=["--overwrite"]))
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout)["manifest"]
    keys = set(objects(bucket, "o/lake/runs/run_id=o"))
    assert keys == {f["path"] for f in m["files"]} | {"manifest.json"}  # nothing of the old run left


def test_lease_races_exactly_one_wins(bucket):
    """10 races of 8 writers for one lease; then 10 races to take over an expired lease."""
    store = ObjectStore(f"s3://{bucket}/lease")
    for race in range(10):
        key = f"lake/.locks/race{race}.lease"
        leases = [Lease(store, key, seconds=30) for _ in range(8)]
        wins = _race(leases, lambda lease: lease.acquire("race"))
        assert wins == 1, race
        for lease in leases:
            lease._stop.set()
        expired = json.dumps({"owner": "dead", "expires": time.time() - 1}).encode()
        store.put(key, expired)
        takers = [Lease(store, key, seconds=30) for _ in range(8)]
        assert _race(takers, lambda lease: lease.acquire("race")) == 1, race
        for lease in takers:
            lease._stop.set()


def _race(leases, fn) -> int:
    barrier = threading.Barrier(len(leases))
    wins = []

    def go(lease):
        barrier.wait()
        try:
            fn(lease)
            wins.append(lease)
        except RunError:
            pass

    threads = [threading.Thread(target=go, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(wins)


@pytest.mark.slow
def test_two_exporters_race_for_one_run_id(bucket, tmp_path):
    """10 races of two CLI exports: exactly one seals, the other is refused with one line."""
    root = f"s3://{bucket}/race"
    for race in range(10):
        procs = [
            subprocess.Popen(
                [LAKESLICE, *map(str, export_args(root, f"r{race}"))],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
            )
            for _ in range(2)
        ]
        outs = [(p.wait(180), *p.communicate()) for p in procs]
        codes = sorted(o[0] for o in outs)
        assert codes[0] == 0 and codes[1] != 0, outs
        loser = next(o for o in outs if o[0] != 0)
        assert "in progress" in loser[2] or "already sealed" in loser[2], loser
        assert run("verify", f"{root}/lake/runs/run_id=r{race}").returncode == 0


@pytest.mark.slow
def test_kill_9_mid_export_then_rerun(bucket, tmp_path):
    """A SIGKILLed export leaves no run a reader takes; the rerun seals the same content."""
    import lakeslice as ls
    from lakeslice.synthetic import synthetic_alerts, synthetic_candles

    src, al = tmp_path / "candles.parquet", tmp_path / "alerts.parquet"
    synthetic_candles(mints=40, candles_per_mint=4000, seed=7).write_parquet(src)
    synthetic_alerts(alerts=200, mints=40, candles_per_mint=4000).write_parquet(al)
    root = f"s3://{bucket}/k"
    url = f"{root}/lake/runs/run_id=k"
    args = export_args(root, "k", alerts=al, source=src, extra=["--target-file-mb", "0.002"])
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "LAKESLICE_LEASE_SECONDS": "2"}
    proc = subprocess.Popen(
        [LAKESLICE, *map(str, args)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    store = ObjectStore(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(k.startswith("slices/") for k in store.list("")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(k.startswith("slices/") for k in store.list("")), "killed before writing anything"
    assert "manifest.json" not in store.list("")
    with pytest.raises(RunError, match="unsealed"):
        ls.scan_run(url)
    assert run("verify", url).returncode == 1
    time.sleep(2.5)  # the dead writer's lease expires
    again = run(*args, env_extra={"LAKESLICE_LEASE_SECONDS": "2"})
    assert again.returncode == 0, again.stderr
    clean = run(*export_args(tmp_path, "k", alerts=al, source=src, extra=["--target-file-mb", "0.002"]))
    assert json.loads(again.stdout)["manifest"] == json.loads(clean.stdout)["manifest"]
    assert run("verify", url).returncode == 0  # nothing of the killed export is left


def test_corpus_on_s3_matches_local_and_feeds_corpus_source(bucket, tmp_path):
    args = ["corpus", "--interval", "1m", "--from", "2024-01-01", "--to", "2024-01-03"]
    args += ["--source", f"parquet://{CANDLES_PQ}", "--format", "json", "--target-file-mb", "0.01"]
    local = run(*args, "--data-root", tmp_path)
    remote = run(*args, "--data-root", f"s3://{bucket}/c")
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert [d["content_sha256"] for d in a["days"]] == [d["content_sha256"] for d in b["days"]]
    assert a["total_rows"] > 0
    base = tmp_path / "lake/corpus"
    on_disk = {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}
    assert objects(bucket, "c/lake/corpus") == on_disk
    assert run("verify", f"s3://{bucket}/c/lake/corpus/ohlcv").returncode == 0
    # a run export reading the S3 corpus equals one reading the local corpus
    outs = []
    for i, src in enumerate((f"corpus://{tmp_path}", f"corpus://s3://{bucket}/c")):
        cmd = export_args(tmp_path / f"out{i}", "x")
        cmd[cmd.index("--source") + 1] = src
        proc = run(*cmd)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout)["manifest"]["content_sha256"])
    assert outs[0] == outs[1]
    import lakeslice as ls

    got = ls.scan_corpus(f"s3://{bucket}/c", interval="1m", start="2024-01-01", end="2024-01-03").collect()
    assert got.height == a["total_rows"] and got["mint_bucket"].dtype == pl.String
    assert (
        hashlib.sha256(got.sort("mint", "ts").write_csv().encode()).hexdigest()
        == hashlib.sha256(
            ls.scan_corpus(tmp_path, interval="1m").collect().sort("mint", "ts").write_csv().encode()
        ).hexdigest()
    )


def test_failed_overwrite_keeps_the_old_run_sealed(bucket, tmp_path):
    """An --overwrite that fails while fetching leaves the old run sealed and intact."""
    import lakeslice as ls

    root = f"s3://{bucket}/f"
    url = f"{root}/lake/runs/run_id=f"
    first = run(*export_args(root, "f"))
    assert first.returncode == 0, first.stderr
    before = objects(bucket, "f/lake/runs/run_id=f")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not parquet PAR1")
    failed = run(*export_args(root, "f", source=broken, extra=["--overwrite"]))
    assert failed.returncode == 1, failed.stderr
    assert objects(bucket, "f/lake/runs/run_id=f") == before
    assert not [k for k in objects(bucket, "f/lake") if "/.staging/" in k or "/.locks/" in k]
    assert run("verify", url).returncode == 0
    assert ls.scan_run(url).collect().height == json.loads(first.stdout)["total_rows"]


def test_unreachable_endpoint_one_clean_line(bucket):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run(
        *export_args(f"s3://{bucket}/u", "u"), env_extra={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "AWS_ENDPOINT_URL" in lines[0] and f"s3://{bucket}/u" in lines[0], lines
