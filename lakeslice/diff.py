"""Compare sealed runs: what changed from one run to another.

``diff_runs`` reads two seals and their coverage files and says which spec settings differ,
which files were added, removed or changed (by path and SHA-256), the rows per bucket on each
side and the alerts whose coverage changed. It trusts the seals (``lakeslice verify`` checks
them against the files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import polars as pl

from .lake.manifest import Manifest, read_manifest

# Manifest sections compared key by key; the rest (run_id, created_at, files, content_sha256)
# is the run's identity, shown apart.
SPEC_SECTIONS = ("slice_spec", "coverage", "inputs", "outputs", "exporter")
# Differ between any two runs without saying anything about the data.
IGNORED_KEYS = {"inputs.source_snapshot.as_of", "coverage.path", "inputs.alerts.path"}
COVERAGE_FIELDS = ("status", "kept", "available_pre", "available_post", "available_total", "anchor_ts_ms")
BUCKET = r"mint_bucket=([0-9a-f]{2})/"


def diff_runs(run_a: str | Path, run_b: str | Path) -> dict[str, Any]:
    """A JSON-ready dict: ``a``, ``b``, ``identical``, ``spec``, ``files``, ``buckets``,
    ``coverage``. Both runs must be sealed.

    >>> import tempfile, lakeslice as ls
    >>> root = tempfile.mkdtemp()
    >>> def export(run_id, window):
    ...     return ls.export_run_slices(
    ...         "fixtures/alerts.csv", interval="1m", window=window,
    ...         source="parquet://fixtures/candles.parquet", run_id=run_id, data_root=root,
    ...     ).run_dir
    >>> d = diff_runs(export("a", "pre2_post3"), export("b", "pre2_post4"))
    >>> d["identical"], [s["key"] for s in d["spec"]][:3]
    (False, ['slice_spec.post', 'slice_spec.window', 'coverage.complete'])
    >>> len(d["files"]["added"]) == len(d["files"]["removed"]) == 4  # every bucket's window dir moved
    True
    """
    run_a, run_b = Path(run_a), Path(run_b)
    ma, mb = read_manifest(run_a), read_manifest(run_b)
    return {
        "a": _identity(run_a, ma),
        "b": _identity(run_b, mb),
        "identical": ma["content_sha256"] == mb["content_sha256"],
        "spec": _spec_diff(ma, mb),
        "files": _file_diff(ma, mb),
        "buckets": _bucket_rows(ma, mb),
        "coverage": _coverage_diff(run_a, ma, run_b, mb),
    }


def _identity(run_dir: Path, m: Manifest) -> dict[str, Any]:
    return {
        "run_dir": str(run_dir),
        "run_id": m["run_id"],
        "created_at": m["created_at"],
        "content_sha256": m["content_sha256"],
    }


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def _spec_diff(ma: Manifest, mb: Manifest) -> list[dict[str, Any]]:
    """Every setting that differs, as ``{key, a, b}`` (``None`` where a side lacks it)."""
    diffs = []
    for section in SPEC_SECTIONS:
        # Sections by name: plain dicts here, the TypedDict only knows literal keys.
        da, db = cast(dict[str, Any], ma), cast(dict[str, Any], mb)
        fa, fb = _flatten(da.get(section), section), _flatten(db.get(section), section)
        for key in [*fa, *(k for k in fb if k not in fa)]:
            if key not in IGNORED_KEYS and fa.get(key) != fb.get(key):
                diffs.append({"key": key, "a": fa.get(key), "b": fb.get(key)})
    return diffs


def _files(m: Manifest) -> pl.DataFrame:
    return pl.DataFrame(
        m["files"], schema={"path": pl.String, "rows": pl.Int64, "bytes": pl.Int64, "sha256": pl.String}
    )


def _file_diff(ma: Manifest, mb: Manifest) -> dict[str, Any]:
    both = _files(ma).join(_files(mb), on="path", how="full", coalesce=True, suffix="_b").sort("path")
    added = both.filter(pl.col("sha256").is_null())
    removed = both.filter(pl.col("sha256_b").is_null())
    changed = both.filter(pl.col("sha256") != pl.col("sha256_b"))
    return {
        "added": added["path"].to_list(),
        "removed": removed["path"].to_list(),
        "changed": json.loads(
            changed.select(
                "path",
                a=pl.struct("rows", "bytes", "sha256"),
                b=pl.struct(rows="rows_b", bytes="bytes_b", sha256="sha256_b"),
            ).write_json()
        ),
        "unchanged": both.filter(pl.col("sha256") == pl.col("sha256_b")).height,
    }


def _bucket_rows(ma: Manifest, mb: Manifest) -> list[dict[str, Any]]:
    """Rows and files per mint bucket on each side (0 where a side has none), by bucket."""

    def per_bucket(m: Manifest) -> pl.DataFrame:
        return (
            _files(m)
            .with_columns(bucket=pl.col("path").str.extract(BUCKET, 1))
            .filter(pl.col("bucket").is_not_null())
            .group_by("bucket")
            .agg(rows=pl.col("rows").sum(), files=pl.len().cast(pl.Int64))
        )

    both = per_bucket(ma).join(per_bucket(mb), on="bucket", how="full", coalesce=True, suffix="_b")
    table = (
        both.select(
            "bucket",
            rows_a=pl.col("rows").fill_null(0),
            rows_b=pl.col("rows_b").fill_null(0),
            files_a=pl.col("files").fill_null(0),
            files_b=pl.col("files_b").fill_null(0),
        )
        .with_columns(delta=pl.col("rows_b") - pl.col("rows_a"))
        .sort("bucket")
    )
    return json.loads(table.write_json())


def _coverage(run_dir: Path, m: Manifest) -> pl.DataFrame:
    return pl.read_parquet(run_dir / m["coverage"]["path"], columns=["alert_id", "mint", *COVERAGE_FIELDS])


def _coverage_diff(run_a: Path, ma: Manifest, run_b: Path, mb: Manifest) -> dict[str, Any]:
    """Alerts only on one side, and alerts whose coverage fields differ (both values given)."""
    a, b = _coverage(run_a, ma), _coverage(run_b, mb)
    both = a.join(b, on="alert_id", how="full", coalesce=True, suffix="_b").sort("alert_id")
    only_a = both.filter(pl.col("mint_b").is_null())
    only_b = both.filter(pl.col("mint").is_null())
    differs = pl.any_horizontal(pl.col(f).ne_missing(pl.col(f"{f}_b")) for f in COVERAGE_FIELDS)
    changed = both.filter(pl.col("mint").is_not_null() & pl.col("mint_b").is_not_null() & differs).select(
        "alert_id",
        "mint",
        a=pl.struct(*COVERAGE_FIELDS),
        b=pl.struct(pl.col(f"{f}_b").alias(f) for f in COVERAGE_FIELDS),
    )
    return {
        "added": only_b["alert_id"].to_list(),
        "removed": only_a["alert_id"].to_list(),
        "changed": json.loads(changed.write_json()),
    }


def render_diff(d: dict[str, Any], *, limit: int = 20) -> str:
    """The diff as text for a terminal; lists are cut at ``limit`` lines each."""
    a, b = d["a"], d["b"]
    lines = [
        f"a: {a['run_id']} ({a['created_at']}) content_sha256 {a['content_sha256']}",
        f"b: {b['run_id']} ({b['created_at']}) content_sha256 {b['content_sha256']}",
        "same data (content_sha256 equal)" if d["identical"] else "data differs",
        "",
        f"spec: {len(d['spec'])} difference(s)",
    ]
    lines += _cut([f"  {s['key']}: {s['a']!r} -> {s['b']!r}" for s in d["spec"]], limit)
    f = d["files"]
    changed_files = [f"  ~ {c['path']}: {c['a']['rows']} -> {c['b']['rows']} rows" for c in f["changed"]]
    lines += _section("files", f, f"changed, {f['unchanged']} unchanged", changed_files, limit)
    moved = [x for x in d["buckets"] if x["rows_a"] != x["rows_b"] or x["files_a"] != x["files_b"]]
    lines += ["", f"rows per bucket: {len(moved)} of {len(d['buckets'])} bucket(s) differ"]
    lines += _cut(
        [
            f"  {x['bucket']}: {x['rows_a']} -> {x['rows_b']} rows ({x['delta']:+d}), "
            f"{x['files_a']} -> {x['files_b']} files"
            for x in moved
        ],
        limit,
    )
    c = d["coverage"]
    changed_alerts = [f"  ~ {x['alert_id']}: {_changes(x['a'], x['b'])}" for x in c["changed"]]
    lines += _section("alerts", c, "with changed coverage", changed_alerts, limit)
    return "\n".join(lines)


def _section(name: str, part: dict[str, Any], changed_word: str, changed: list[str], limit: int) -> list[str]:
    """A section of the text diff: its counts, then ``+`` added, ``-`` removed, ``~`` changed."""
    return [
        "",
        f"{name}: {len(part['added'])} added, {len(part['removed'])} removed, "
        f"{len(part['changed'])} {changed_word}",
        *_cut([f"  + {x}" for x in part["added"]], limit),
        *_cut([f"  - {x}" for x in part["removed"]], limit),
        *_cut(changed, limit),
    ]


def _changes(a: dict, b: dict) -> str:
    return ", ".join(f"{k} {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k])


def _cut(lines: list[str], limit: int) -> list[str]:
    return lines if len(lines) <= limit else [*lines[:limit], f"  … {len(lines) - limit} more"]
