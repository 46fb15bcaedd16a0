"""``lakeslice diff``: checked against a plain-Python diff of the seals and coverage files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.cli import run_cli
from support.data import ALERTS_CSV, CANDLES_PQ, REPO

import lakeslice as ls
from lakeslice.diff import COVERAGE_FIELDS, diff_runs, render_diff


def _export(root: Path, run_id: str, *, alerts=ALERTS_CSV, window="pre10_post20", **kwargs) -> Path:
    return ls.export_run_slices(
        str(alerts),
        interval="1m",
        window=window,
        source=f"parquet://{CANDLES_PQ}",
        run_id=run_id,
        data_root=root,
        **kwargs,
    ).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("diff")
    base = _export(root, "base")
    copy = tmp_path_factory.mktemp("elsewhere") / "run_id=copy"
    shutil.copytree(base, copy)
    lines = ALERTS_CSV.read_text("utf-8").splitlines()
    other = root / "other_alerts.csv"
    # drop a2, add z9 on a known mint, move a5 by ten minutes
    kept = [ln for ln in lines if not ln.startswith("a2,")]
    kept = [re.sub(r"^a5,(.*),(\d+)$", lambda m: f"a5,{m[1]},{int(m[2]) + 600_000}", ln) for ln in kept]
    other.write_text(
        "\n".join([*kept, "z9,So11111111111111111111111111111111111111112,1704070000000"]) + "\n"
    )
    return {
        "base": base,
        "copy": copy,
        "strict": _export(root, "strict", strict_coverage=True, min_required_pre=9, target_total=27),
        "window": _export(root, "window", window="pre5_post30"),
        "alerts": _export(root, "alerts", alerts=other),
        "snappy": _export(root, "snappy", compression="snappy"),
    }


def ref_diff(run_a: Path, run_b: Path) -> dict:
    """The same questions answered from the JSON seals and coverage rows, one by one."""
    ma = json.loads((run_a / "manifest.json").read_text())
    mb = json.loads((run_b / "manifest.json").read_text())
    fa = {f["path"]: f for f in ma["files"]}
    fb = {f["path"]: f for f in mb["files"]}

    def buckets(files):
        out = {}
        for path, f in files.items():
            m = re.search(r"mint_bucket=(..)/", path)
            if m:
                rows, n = out.get(m[1], (0, 0))
                out[m[1]] = (rows + f["rows"], n + 1)
        return out

    ba, bb = buckets(fa), buckets(fb)
    ca = {r["alert_id"]: r for r in pq.read_table(run_a / "outputs/coverage.parquet").to_pylist()}
    cb = {r["alert_id"]: r for r in pq.read_table(run_b / "outputs/coverage.parquet").to_pylist()}
    return {
        "identical": ma["content_sha256"] == mb["content_sha256"],
        "window": (ma["slice_spec"]["window"], mb["slice_spec"]["window"]),
        "added": sorted(set(fb) - set(fa)),
        "removed": sorted(set(fa) - set(fb)),
        "changed": sorted(p for p in set(fa) & set(fb) if fa[p]["sha256"] != fb[p]["sha256"]),
        "buckets": {
            k: (ba.get(k, (0, 0))[0], bb.get(k, (0, 0))[0], ba.get(k, (0, 0))[1], bb.get(k, (0, 0))[1])
            for k in sorted(set(ba) | set(bb))
        },
        "alerts_added": sorted(set(cb) - set(ca)),
        "alerts_removed": sorted(set(ca) - set(cb)),
        "alerts_changed": {
            k: {f: (ca[k][f], cb[k][f]) for f in COVERAGE_FIELDS if ca[k][f] != cb[k][f]}
            for k in sorted(set(ca) & set(cb))
            if any(ca[k][f] != cb[k][f] for f in COVERAGE_FIELDS)
        },
    }


@pytest.mark.parametrize("other", ["base", "copy", "strict", "window", "alerts", "snappy"])
def test_diff_matches_reference(runs, other):
    got = diff_runs(runs["base"], runs[other])
    want = ref_diff(runs["base"], runs[other])
    assert got["identical"] == want["identical"]
    assert got["files"]["added"] == want["added"]
    assert got["files"]["removed"] == want["removed"]
    assert [c["path"] for c in got["files"]["changed"]] == want["changed"]
    assert {
        x["bucket"]: (x["rows_a"], x["rows_b"], x["files_a"], x["files_b"]) for x in got["buckets"]
    } == want["buckets"]
    assert all(x["delta"] == x["rows_b"] - x["rows_a"] for x in got["buckets"])
    assert got["coverage"]["added"] == want["alerts_added"]
    assert got["coverage"]["removed"] == want["alerts_removed"]
    changed = {
        c["alert_id"]: {f: (c["a"][f], c["b"][f]) for f in c["a"] if c["a"][f] != c["b"][f]}
        for c in got["coverage"]["changed"]
    }
    assert changed == want["alerts_changed"]
    spec = {s["key"]: (s["a"], s["b"]) for s in got["spec"]}
    if want["window"][0] != want["window"][1]:
        assert spec["slice_spec.window"] == want["window"]
    if other in ("base", "copy"):
        assert got["identical"] and got["spec"] == [] and got["coverage"]["changed"] == []
        assert got["files"]["unchanged"] == len(
            json.loads((runs["base"] / "manifest.json").read_text())["files"]
        )


def test_diff_names_the_settings_that_changed(runs):
    spec = {s["key"]: (s["a"], s["b"]) for s in diff_runs(runs["base"], runs["strict"])["spec"]}
    assert spec["coverage.strict"] == (False, True)
    base = json.loads((runs["base"] / "manifest.json").read_text())["coverage"]["min_required_pre"]
    assert spec["coverage.min_required_pre"] == (base, 9) and base != 9
    assert spec["coverage.kept_events"][0] == 8
    assert "inputs.source_snapshot.as_of" not in spec
    spec = {s["key"]: (s["a"], s["b"]) for s in diff_runs(runs["base"], runs["snappy"])["spec"]}
    assert spec["outputs.slices.compression"] == ("zstd", "snappy")
    spec = {s["key"]: (s["a"], s["b"]) for s in diff_runs(runs["base"], runs["alerts"])["spec"]}
    assert spec["inputs.alerts.name"] == ("alerts.csv", "other_alerts.csv")


def _cli(*args: object):
    return run_cli(*args, cwd=REPO)


def test_cli_diff_text_and_json(runs):
    res = _cli("diff", runs["base"], runs["alerts"], "--format", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == json.loads(json.dumps(diff_runs(runs["base"], runs["alerts"])))
    text = _cli("diff", runs["base"], runs["alerts"])
    assert text.returncode == 0
    assert text.stdout.strip() == render_diff(diff_runs(runs["base"], runs["alerts"]))
    assert "  + z9" in text.stdout and "  - a2" in text.stdout and "  ~ a5: " in text.stdout
    same = _cli("diff", runs["base"], runs["copy"])
    assert "same data (content_sha256 equal)" in same.stdout


def test_cli_diff_refuses_unsealed_in_one_line(runs, tmp_path):
    res = _cli("diff", runs["base"], tmp_path)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "unsealed" in res.stderr and "Traceback" not in res.stderr
    res = _cli("diff", runs["base"], tmp_path, "--format", "json")
    assert res.returncode == 1 and "unsealed" in json.loads(res.stdout)["error"]["message"]
