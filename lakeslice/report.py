"""``lakeslice report``: one self-contained HTML page about a sealed run, charts inlined.

The page shows the run's spec and seal (with a fresh verify), its coverage, the lake's
buckets and parts, and the event profile around the anchor. Charts are Vega-Lite specs built
with Altair and rendered in the page by the Vega libraries that vl-convert bundles, inlined in
a ``<script>``: the page needs no network. ``--png DIR`` renders the same specs with vl-convert.

Altair and vl-convert come with the ``report`` extra (``pip install 'lakeslice[report]'``);
nothing else in lakeslice imports this module.

>>> import tempfile, lakeslice as ls
>>> from lakeslice.report import write_report
>>> out = tempfile.mkdtemp()
>>> run = ls.export_run_slices(
...     "fixtures/alerts.csv", interval="1m", window="pre2_post3",
...     source="parquet://fixtures/candles.parquet", run_id="doc", data_root=out,
... )
>>> page = write_report(run.run_dir, output=f"{out}/report.html", png_dir=f"{out}/png")
>>> "https://cdn" in page.read_text(), sorted(p.name for p in Path(f"{out}/png").iterdir())[:2]
(False, ['available_total.png', 'buckets.png'])
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from .lake.manifest import Manifest, SliceSpec, read_manifest
from .lake.verify import verify_dir
from .spec import LakesliceError, RunError
from .study import event_profile, event_returns, scan_windows

INSTALL_HINT = "pip install 'lakeslice[report]'"
MB = 1024 * 1024
# Above this many distinct (pre, post) pairs the scatter is binned so the page stays small.
MAX_SCATTER_POINTS = 2_500
# Counts are whole numbers: label only whole ticks (Vega may still place ticks at 0.5).
COUNT_AXIS = {"labelExpr": "datum.value % 1 ? '' : format(datum.value, ',d')", "tickMinStep": 1}
STATUS_COLORS = {"complete": "#54a24b", "partial": "#f58518", "insufficient": "#e45756"}


class MissingExtra(LakesliceError):
    """The plotting libraries of the ``report`` extra are not installed."""

    code = "missing_dependency"
    exit_code = 1


def _plotting() -> tuple[Any, Any]:
    """Altair and vl-convert, or one line saying how to install them."""
    try:
        import altair as alt
        import vl_convert as vlc
    except ImportError as exc:
        raise MissingExtra(f"the report needs {exc.name or 'altair'}: {INSTALL_HINT}") from exc
    return alt, vlc


@dataclass
class Report:
    """What the page shows: the manifest, the verify outcome and the Vega-Lite specs by id."""

    run_dir: Path
    manifest: Manifest
    problems: list[str]
    no_base: int
    charts: dict[str, dict] = field(default_factory=dict)


def build_report(run_dir: str | Path, *, base_k: int = 0, kind: str = "log") -> Report:
    """Read a sealed run and build every chart's spec (no file is written)."""
    alt, _ = _plotting()
    run_dir = Path(run_dir)
    # Lazy: checks the options and the seal before the (longer) verify.
    returns = event_returns(scan_windows(run_dir, dense=True), base_k=base_k, kind=kind)
    manifest = read_manifest(run_dir)
    problems = verify_dir(run_dir).problems
    cov = pl.read_parquet(run_dir / manifest["coverage"]["path"])
    files = _files(manifest)
    profile = event_profile(returns).collect()
    spec = manifest["slice_spec"]
    target_mb = float(manifest["outputs"]["slices"].get("target_file_mb") or 0)
    charts = {
        "status": _status_chart(alt, cov),
        "available_total": _total_chart(alt, cov, slots=int(spec["pre"]) + 1 + int(spec["post"])),
        "pre_post": _pre_post_chart(alt, cov, pre=int(spec["pre"]), post=int(spec["post"])),
        "buckets": _bucket_chart(alt, files),
        "parts": _parts_chart(alt, files, target_mb=target_mb),
        "profile": _profile_chart(alt, profile, spec=spec, kind=kind, base_k=base_k),
        "profile_n": _profile_n_chart(alt, profile, spec=spec),
    }
    no_base = int(profile.select(pl.col("n_no_base").max()).item() or 0) if profile.height else 0
    return Report(run_dir, manifest, problems, no_base, {k: v.to_dict() for k, v in charts.items()})


def write_report(
    run_dir: str | Path,
    *,
    output: str | Path = "report.html",
    png_dir: str | Path | None = None,
    base_k: int = 0,
    kind: str = "log",
) -> Path:
    """Write the page (atomically) and, with ``png_dir``, one PNG per chart; return the page.

    Needs the ``report`` extra.

    >>> import tempfile, lakeslice as ls
    >>> root = tempfile.mkdtemp()
    >>> run = ls.export_run_slices(
    ...     "fixtures/alerts.csv", interval="1m", window="pre2_post3",
    ...     source="parquet://fixtures/candles.parquet", run_id="doc", data_root=root,
    ... )
    >>> ls.write_report(run.run_dir, output=f"{root}/report.html").name
    'report.html'
    """
    report = build_report(run_dir, base_k=base_k, kind=kind)
    _, vlc = _plotting()
    output = Path(output)
    page = render_html(report, bundle=vlc.javascript_bundle(vl_version=_vl_version()))
    _write_atomic(output, page.encode("utf-8"))
    if png_dir is not None:
        png_dir = Path(png_dir)
        png_dir.mkdir(parents=True, exist_ok=True)
        for name, spec in report.charts.items():
            _write_atomic(png_dir / f"{name}.png", vlc.vegalite_to_png(spec, scale=2))
    return output


def _vl_version() -> str:
    """The Vega-Lite version Altair wrote the specs for, as vl-convert names it."""
    from altair.utils._importers import vl_version_for_vl_convert

    return vl_version_for_vl_convert()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunError(f"{path}: cannot write the report ({exc.strerror or exc})") from exc


# --------------------------------------------------------------------------------------------
# Data for the charts: small aggregates, never one mark per candle.


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Row-oriented JSON values for a Vega data source (Polars serializes, no row loop here)."""
    return json.loads(frame.write_json())


def _files(manifest: Manifest) -> pl.DataFrame:
    """The seal's slice files with their bucket and part size in MB."""
    listed = pl.DataFrame(
        manifest["files"],
        schema={"path": pl.String, "rows": pl.Int64, "bytes": pl.Int64, "sha256": pl.String},
    )
    return listed.filter(pl.col("path").str.starts_with("slices/")).with_columns(
        bucket=pl.col("path").str.extract(r"mint_bucket=([0-9a-f]{2})/", 1),
        part=pl.col("path").str.extract(r"/([^/]+)\.parquet$", 1),
        mb=pl.col("bytes") / MB,
    )


def _status_chart(alt: Any, cov: pl.DataFrame) -> Any:
    counts = (
        pl.DataFrame({"status": ["complete", "partial", "insufficient"]})
        .join(cov.group_by("status").agg(alerts=pl.len(), kept=pl.col("kept").sum()), on="status", how="left")
        .fill_null(0)
        .with_columns(dropped=pl.col("alerts") - pl.col("kept"))
    )
    return (
        alt.Chart(alt.Data(values=_records(counts)), title="Alerts by coverage status")
        .mark_bar()
        .encode(
            x=alt.X("status:N", sort=["complete", "partial", "insufficient"], title=None),
            y=alt.Y("alerts:Q", title="alerts", axis=COUNT_AXIS),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=list(STATUS_COLORS), range=list(STATUS_COLORS.values())),
                legend=None,
            ),
            tooltip=["status:N", "alerts:Q", "kept:Q", "dropped:Q"],
        )
        .properties(width=260, height=200)
    )


def _total_chart(alt: Any, cov: pl.DataFrame, *, slots: int) -> Any:
    """Histogram of candles per alert against the window's slots (a rule at N+1+M)."""
    step = max(1, -(-(slots + 1) // 50))
    hist = (
        cov.group_by(lo=(pl.col("available_total") // step) * step)
        .agg(alerts=pl.len())
        .with_columns(hi=pl.col("lo") + step)
        .sort("lo")
    )
    bars = (
        alt.Chart(alt.Data(values=_records(hist)))
        .mark_bar()
        .encode(
            x=alt.X(
                "lo:Q",
                bin="binned",  # pre-binned: vertical bars from lo to hi, not ranged ticks
                title="candles in the window (available_total)",
                scale=alt.Scale(domain=[0, slots + step]),
            ),
            x2="hi:Q",
            y=alt.Y("alerts:Q", title="alerts", axis=COUNT_AXIS),
            tooltip=["lo:Q", "hi:Q", "alerts:Q"],
        )
    )
    rule = _mark_at(alt, "x", "slots", slots, title="window slots N+1+M")
    return alt.layer(bars, rule, title=f"Candles per alert (window has {slots} slots)").properties(
        width=420, height=200
    )


def _pre_post_chart(alt: Any, cov: pl.DataFrame, *, pre: int, post: int) -> Any:
    """Candles before vs from the anchor, one point per distinct pair sized by alerts."""
    pairs = cov.group_by("available_pre", "available_post").agg(alerts=pl.len())
    if pairs.height > MAX_SCATTER_POINTS:
        bx, by = max(1, -(-(pre + 1) // 50)), max(1, -(-(post + 2) // 50))
        pairs = cov.group_by(
            available_pre=(pl.col("available_pre") // bx) * bx,
            available_post=(pl.col("available_post") // by) * by,
        ).agg(alerts=pl.len())
    pairs = pairs.sort("available_pre", "available_post")
    points = (
        alt.Chart(alt.Data(values=_records(pairs)))
        .mark_circle(opacity=0.7)
        .encode(
            x=alt.X(
                "available_pre:Q", title=f"available_pre (of {pre})", scale=alt.Scale(domain=[0, max(pre, 1)])
            ),
            y=alt.Y(
                "available_post:Q",
                title=f"available_post (of {post + 1})",
                scale=alt.Scale(domain=[0, post + 1]),
            ),
            size=alt.Size(
                "alerts:Q", title="alerts", legend=alt.Legend(values=_legend_counts(pairs["alerts"]))
            ),
            tooltip=["available_pre:Q", "available_post:Q", "alerts:Q"],
        )
    )
    return points.properties(title="Candles before vs from the anchor", width=300, height=260)


def _legend_counts(counts: pl.Series) -> list[int]:
    """At most five whole counts spread over the data, for a size legend without 0.5s."""
    distinct = counts.unique().sort()
    picks = pl.int_range(0, 5, eager=True) * max(distinct.len() - 1, 0) // 4
    return distinct.gather(picks.unique().sort()).to_list()


def _bucket_chart(alt: Any, files: pl.DataFrame) -> Any:
    per_bucket = (
        files.group_by("bucket")
        .agg(rows=pl.col("rows").sum(), mb=pl.col("bytes").sum() / MB, files=pl.len())
        .sort("bucket")
    )
    base = alt.Chart(alt.Data(values=_records(per_bucket))).encode(
        x=alt.X(
            "bucket:N", title="mint_bucket", sort="ascending", axis=alt.Axis(labels=per_bucket.height <= 64)
        ),
        tooltip=["bucket:N", "rows:Q", alt.Tooltip("mb:Q", format=".3f"), "files:Q"],
    )
    rows = base.mark_bar().encode(y=alt.Y("rows:Q", title="rows", axis=COUNT_AXIS)).properties(height=120)
    size = base.mark_bar(color="#e45756").encode(y=alt.Y("mb:Q", title="MB")).properties(height=120)
    count = base.mark_bar(color="#72b7b2").encode(y=alt.Y("files:Q", title="files", axis=COUNT_AXIS))
    count = count.properties(height=80)
    return alt.vconcat(
        rows.properties(width=640), size.properties(width=640), count.properties(width=640)
    ).properties(title="Rows, bytes and files per bucket")


def _parts_chart(alt: Any, files: pl.DataFrame, *, target_mb: float) -> Any:
    """Every part's size on a log scale, with the --target-file-mb rule."""
    parts = files.select("path", "bucket", "part", "rows", "mb").sort("path")
    points = (
        alt.Chart(alt.Data(values=_records(parts)))
        .mark_tick(thickness=2, size=14)
        .encode(
            x=alt.X("bucket:N", title="mint_bucket", axis=alt.Axis(labels=parts.height <= 64)),
            y=alt.Y("mb:Q", title="part size (MB, log)", scale=alt.Scale(type="log")),
            tooltip=["path:N", "rows:Q", alt.Tooltip("mb:Q", format=".4f")],
        )
    )
    rule = _mark_at(alt, "y", "target_mb", target_mb, title="--target-file-mb")
    return alt.layer(points, rule, title=f"Part sizes against --target-file-mb {target_mb:g}").properties(
        width=640, height=200
    )


def _mark_at(alt: Any, channel: str, field: str, value: float, *, title: str) -> Any:
    """A dashed red rule at ``value`` on the ``x`` or ``y`` channel, the limit a chart is read against."""
    return (
        alt.Chart(alt.Data(values=[{field: value}]))
        .mark_rule(color="firebrick", strokeDash=[4, 3])
        .encode(**{channel: f"{field}:Q"}, tooltip=[alt.Tooltip(f"{field}:Q", title=title)])
    )


def _k_axis(alt: Any, spec: SliceSpec, title: str) -> Any:
    """k from -pre to post, the window's slots, whatever the data holds."""
    return alt.X(
        "k:Q", title=title, scale=alt.Scale(domain=[-int(spec["pre"]), int(spec["post"])], nice=False)
    )


def _profile_chart(alt: Any, profile: pl.DataFrame, *, spec: SliceSpec, kind: str, base_k: int) -> Any:
    """Mean and median return by k, with a band of two standard errors around the mean."""
    data = profile.select(
        "k",
        "n",
        "mean",
        "median",
        lo=pl.col("mean") - 2 * pl.col("se"),
        hi=pl.col("mean") + 2 * pl.col("se"),
    ).filter(pl.col("n") > 0)
    base = alt.Chart(alt.Data(values=_records(data))).encode(
        x=_k_axis(alt, spec, "k (candles from the anchor)")
    )
    band = base.mark_area(opacity=0.25, color="#4c78a8").encode(
        y=alt.Y("lo:Q", title=f"{kind} return vs k={base_k}"), y2="hi:Q"
    )
    lines = (
        base.transform_fold(["mean", "median"], as_=["statistic", "value"])
        .mark_line()
        .encode(
            y="value:Q",
            color=alt.Color("statistic:N", scale=alt.Scale(range=["#4c78a8", "#f58518"])),
            tooltip=[
                "k:Q",
                "n:Q",
                alt.Tooltip("mean:Q", format=".5f"),
                alt.Tooltip("median:Q", format=".5f"),
            ],
        )
    )
    zero = alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(color="gray").encode(y="y:Q")
    return alt.layer(band, lines, zero, title="Event profile: mean and median return, ±2 SE").properties(
        width=640, height=260
    )


def _profile_n_chart(alt: Any, profile: pl.DataFrame, *, spec: SliceSpec) -> Any:
    data = profile.select("k", "n")
    return (
        alt.Chart(alt.Data(values=_records(data)), title="Alerts with a return at each k")
        .mark_bar(color="#54a24b")
        .encode(
            x=_k_axis(alt, spec, "k"), y=alt.Y("n:Q", title="alerts", axis=COUNT_AXIS), tooltip=["k:Q", "n:Q"]
        )
        .properties(width=640, height=120)
    )


# --------------------------------------------------------------------------------------------
# The page


SECTIONS = (
    ("Coverage", ("status", "available_total", "pre_post")),
    ("The lake", ("buckets", "parts")),
    ("Event profile", ("profile", "profile_n")),
)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table.kv td { padding: .15em .8em .15em 0; vertical-align: top; } table.kv td:first-child { color: #666; }
code { font-size: 12px; word-break: break-all; }
.ok { color: #2a7a2a; font-weight: bold; } .bad { color: #b00020; font-weight: bold; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
"""

# Embeds every spec, then publishes the views (window.lakesliceViews) and a promise that
# settles when all are drawn, so a browser (or a test) can tell that the page rendered.
EMBED = """
const specs = %s;
window.lakesliceReport = Promise.all(Object.keys(specs).map(function (id) {
  return vegaEmbed("#" + id, specs[id], {renderer: "svg", actions: false}).then(function (r) {
    return [id, r.view];
  });
})).then(function (views) {
  window.lakesliceViews = Object.fromEntries(views);
  document.body.setAttribute("data-rendered", String(views.length));
  return views.length;
}, function (error) {
  document.body.setAttribute("data-error", String(error));
  console.error(error);
  throw error;
});
"""


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no '</' can close it early)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False).replace("</", "<\\/")


def _kv(rows: list[tuple[str, str]]) -> str:
    """A two-column table; values are already escaped HTML."""
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _summary(report: Report) -> str:
    m = report.manifest
    spec, snap = m["slice_spec"], m["inputs"]["source_snapshot"]
    slices, cov = m["outputs"]["slices"], m["coverage"]
    e = html.escape
    writers = ", ".join(f"{k} {v}" for k, v in sorted(m["exporter"].get("writers", {}).items()))
    if report.problems:
        shown = "; ".join(report.problems[:5]) + (" …" if len(report.problems) > 5 else "")
        verdict = f'<span class="bad">does not verify</span>: {e(shown)}'
    else:
        verdict = '<span class="ok">verified</span>: every file, hash and row count matches the seal'
    spec_rows = [
        ("interval / window", e(f"{spec['interval']} ({spec['interval_s']} s) / {spec['window']}")),
        ("chain", e(str(spec.get("chain", "")))),
        ("source", e(" ".join(str(snap[k]) for k in ("kind", "host", "database", "table") if snap.get(k)))),
        ("alerts", e(f"{m['inputs']['alerts']['rows']:,}")),
        (
            "kept / dropped",
            e(f"{cov['kept_events']:,} / {cov['dropped_events']:,}" + (" (strict)" if cov["strict"] else "")),
        ),
        (
            "complete / partial / insufficient",
            e(f"{cov['complete']:,} / {cov['partial']:,} / {cov['insufficient']:,}"),
        ),
        ("buckets / files", e(f"{slices['mint_buckets']} / {slices['files']}")),
        ("rows / bytes", e(f"{slices['rows']:,} / {slices['bytes']:,}")),
        ("exporter", e(f"lakeslice {m['exporter']['version']} ({writers})")),
    ]
    seal_rows = [
        ("content_sha256", f"<code>{e(m['content_sha256'])}</code>"),
        ("created_at", e(m["created_at"])),
        ("verify", verdict),
    ]
    return f"<h2>Spec</h2>{_kv(spec_rows)}<h2>Seal</h2>{_kv(seal_rows)}"


def render_html(report: Report, *, bundle: str) -> str:
    """The whole page; the same report and bundle always give the same text."""
    run_id = html.escape(report.manifest["run_id"])
    sections = []
    for title, ids in SECTIONS:
        divs = "".join(f'<div class="chart" id="{i}"></div>' for i in ids)
        note = ""
        if title == "Event profile":
            note = (
                f"<p>{report.no_base:,} kept alert(s) have no usable price at or before the base "
                "slot and are left out of the returns (see <code>event_returns</code>).</p>"
            )
        sections.append(f'<h2>{title}</h2>{note}<div class="charts">{divs}</div>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>lakeslice run {run_id}</title>\n<style>{STYLE}</style>\n"
        f"<script>{bundle}</script>\n</head>\n<body>\n"
        f"<h1>Run {run_id}</h1>\n{_summary(report)}\n{''.join(sections)}\n"
        f"<script>{EMBED % _script_json(report.charts)}</script>\n</body>\n</html>\n"
    )
