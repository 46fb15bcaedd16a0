"""The output bytes of a fixed export are pinned: a change of any output byte fails here.

A small deterministic export (seeded synthetic candles with gaps and duplicate rows, seeded
alerts) through the real CLI from a Parquet file and from chdb. Its manifest's
``content_sha256`` (the digest of every output file's path and SHA-256) and the SHA-256 of two
files are literals below, computed once on the code before the speed work of issue 13: work
that only makes the export faster must leave them as they are.

When a change is meant to change the bytes (a new column, another encoding, a Polars or
pyarrow upgrade: the lock pins both), update the literals in the same commit and say why.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from support.cli import clean_env, run_cli

from lakeslice.synthetic import synthetic_alerts, synthetic_candles

MINTS, CANDLES_PER_MINT = 40, 600
WINDOW = "pre10_post30"

BUCKET_00 = "slices/ohlcv/interval=1m/window=pre10_post30/mint_bucket=00/part-0000.parquet"
#: Per source: the manifest's content_sha256, and the SHA-256 of single files (paths relative
#: to the run directory). The slice files differ between sources only by the ``source`` label
#: column (``parquet:candles.parquet``, ``chdb:default.ohlcv_candles``): see the last test.
PINNED = {
    "parquet": {
        "content_sha256": "e9f0d591a361d4815b714dd881c842904f67c6a3d8aeacbf1f452385e444126d",
        "outputs/coverage.parquet": "e0326eecfa9e5da570dfb629ea217e71618145b811c191c484b7980562e5e01e",
        BUCKET_00: "1b843b4df0a4881a1d3913aa021f4473f3e545d71fd8b83e0a58d5b393e38e9d",
    },
    "chdb": {
        "content_sha256": "320f96f312ab7495bd2af085d69874fa1d668d382886ff307bbfc8e49da86953",
        "outputs/coverage.parquet": "e0326eecfa9e5da570dfb629ea217e71618145b811c191c484b7980562e5e01e",
        BUCKET_00: "89064e0f50523788974d2f0204823c6412f0982fa0d2252c233344e5ed5f8540",
    },
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The candles as a Parquet file and a chdb database (seeded in a child: chdb holds one data
    path per process), and the alerts."""
    root = tmp_path_factory.mktemp("pinned")
    candles = synthetic_candles(
        mints=MINTS, candles_per_mint=CANDLES_PER_MINT, gap_fraction=0.05, duplicate_fraction=0.02, seed=7
    )
    alerts = synthetic_alerts(alerts=200, mints=MINTS, candles_per_mint=CANDLES_PER_MINT, seed=3)
    alerts = alerts.unique(["mint", "ts_ms"], maintain_order=True)
    paths = {"candles": root / "candles.parquet", "alerts": root / "alerts.parquet", "chdb": root / "chdb"}
    candles.write_parquet(paths["candles"])
    alerts.write_parquet(paths["alerts"])
    seed = (
        "import sys, polars as pl\n"
        "from lakeslice.sources.embedded import seed_chdb\n"
        "seed_chdb(sys.argv[1], pl.read_parquet(sys.argv[2]))\n"
    )
    subprocess.run(
        [sys.executable, "-c", seed, str(paths["chdb"]), str(paths["candles"])],
        check=True,
        env=clean_env(),
        timeout=120,
    )
    return {**paths, "root": root}


def export(inputs: dict[str, Path], source: str, name: str) -> tuple[dict, Path]:
    """``lakeslice export`` of the fixed job from ``source``: (manifest, run directory)."""
    root = inputs["root"] / name
    res = run_cli(
        "export",
        "--alerts",
        inputs["alerts"],
        "--interval",
        "1m",
        "--window",
        WINDOW,
        "--source",
        source,
        "--data-root",
        root,
        "--run-id",
        "pinned",
        "--format",
        "json",
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    return out["manifest"], Path(out["run_dir"])


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(inputs) -> dict[str, tuple[dict, Path]]:
    """The fixed export from each source: (manifest, run directory)."""
    return {
        "parquet": export(inputs, f"parquet://{inputs['candles']}", "parquet"),
        "chdb": export(inputs, f"chdb://{inputs['chdb']}", "chdb"),
    }


@pytest.mark.parametrize("source", ["parquet", "chdb"])
def test_export_bytes_are_pinned(runs, source):
    manifest, run_dir = runs[source]
    assert manifest["inputs"]["source_snapshot"]["kind"] == source
    listed = sorted(f"{f['path']} {f['sha256']}\n" for f in manifest["files"])
    # the digest is what the manifest says it is, so the pinned literal covers every file
    assert manifest["content_sha256"] == hashlib.sha256("".join(listed).encode()).hexdigest()
    assert manifest["outputs"]["slices"]["rows"] > 5_000  # a real export, not an empty one
    pinned = PINNED[source]
    assert manifest["content_sha256"] == pinned["content_sha256"]
    for rel, digest in pinned.items():
        if rel != "content_sha256":
            assert sha256_of(run_dir / rel) == digest, rel


def test_sources_differ_only_by_the_source_label(runs):
    """Same files; alerts and coverage byte for byte; slice rows equal but for ``source``."""
    (pq_manifest, pq_dir), (ch_manifest, ch_dir) = runs["parquet"], runs["chdb"]
    pq_files = {f["path"]: f for f in pq_manifest["files"]}
    ch_files = {f["path"]: f for f in ch_manifest["files"]}
    assert pq_files.keys() == ch_files.keys()
    for path, entry in pq_files.items():
        if not path.startswith("slices/"):
            assert entry == ch_files[path], path
            continue
        a, b = pl.read_parquet(pq_dir / path), pl.read_parquet(ch_dir / path)
        assert a.drop("source").equals(b.drop("source")), path
        assert a["source"].unique().to_list() == ["parquet:candles.parquet"]
        assert b["source"].unique().to_list() == ["chdb:default.ohlcv_candles"]
