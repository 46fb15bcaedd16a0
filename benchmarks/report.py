"""What ``make bench`` shows of a results document: terminal tables, a markdown block ready to
paste into benchmarks/README.md, and a chart (SVG, rendered offline by vl-convert).

The document is the results JSON of :mod:`benchmarks.run` (``meta``, ``contenders``, ``ratios``,
``targets``, ``startup_importtime`` and, with a second scale, ``big``).
"""

from __future__ import annotations

import shutil

COLUMNS = (
    "contender",
    "runs",
    "median wall s",
    "CPU s",
    "rows",
    "rows/s",
    "MB written",
    "MB/s",
    "peak RSS MiB",
)


def scales(doc: dict) -> list[tuple[float, dict, dict]]:
    """``(scale, data stamp, contenders)`` of every scale in the document, main scale first."""
    out = [(doc["meta"]["scale"], doc["meta"]["data"], doc["contenders"])]
    if "big" in doc:
        out.append((doc["big"]["scale"], doc["big"]["data"], doc["big"]["contenders"]))
    return out


def contender_rows(res: dict) -> list[list[str]]:
    """One row of :data:`COLUMNS` per contender.

    >>> run = {"runs": [1], "median_wall_s": 2.0, "median_cpu_s": 3.0, "rows": 10, "rows_per_s": 5.0,
    ...        "bytes": 2e6, "mb_per_s": 1.0, "peak_rss_mib": 99.6}
    >>> contender_rows({"x": run})
    [['x', '1', '2.00', '3.00', '10', '5', '2.0', '1.0', '100']]
    """
    return [
        [
            name,
            str(len(r["runs"])),
            f"{r['median_wall_s']:.2f}",
            f"{r['median_cpu_s']:.2f}",
            f"{r['rows']:,}" if r["rows"] else "-",
            f"{r['rows_per_s']:,.0f}" if r["rows_per_s"] else "-",
            f"{r['bytes'] / 1e6:.1f}",
            f"{r['mb_per_s']:.1f}",
            f"{r['peak_rss_mib']:.0f}",
        ]
        for name, r in res.items()
    ]


def scale_title(scale: float, data: dict) -> str:
    return f"scale {scale:g} ({data['candles']:,} candles, {data['alerts']:,} alerts, {data['window']})"


def target_rows(doc: dict) -> list[list[str]]:
    """``target, value, limit, goal, ok/MISS``.

    >>> target_rows({"targets": [{"target": "t", "value": 1.25, "limit": 1.3, "goal": 1.0, "ok": True}]})
    [['t', '1.25', '<= 1.3', '1', 'ok']]
    """
    return [
        [
            t["target"],
            f"{t['value']:.2f}" if t["value"] < 100 else f"{t['value']:.0f}",
            f"<= {t['limit']:g}",
            f"{t['goal']:g}" if t.get("goal") is not None else "",
            "ok" if t["ok"] else "MISS",
        ]
        for t in doc["targets"]
    ]


def floor_line(doc: dict) -> str:
    floor = doc["ratios"].get("floor")
    if not floor:
        return ""
    return (
        f"floor = fetch {floor['fetch_s']:.2f} s + write {floor['write_s']:.2f} s = {floor['total_s']:.2f} s"
    )


def load_heading(doc: dict) -> str:
    """How loaded the machine was: the README heading says it."""
    meta = doc["meta"]
    cpus, top, med = meta["machine"]["cpus"], meta["loadavg_1m_max"], meta.get("loadavg_1m_median", 0)
    if top > cpus:
        return f"preliminary, loaded machine (load {med:.1f} median, {top:.1f} max, on {cpus} cores)"
    return f"idle machine (load <= {top:.1f} on {cpus} cores)"


def md_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    """A markdown table.

    >>> print(md_table(["a", "b"], [["1", "2"]]))
    | a | b |
    | --- | --- |
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def markdown(doc: dict, name: str) -> str:
    """The README section of this run (replace the previous one with it)."""
    meta, v = doc["meta"], doc["meta"]["versions"]
    out = [
        f"## Measured: {load_heading(doc)}",
        "",
        f"`benchmarks/results/{name}.json`, lakeslice at `{v.get('git', '?')}`, Polars {v['polars']}, "
        f"pyarrow {v['pyarrow']}, DuckDB {v['duckdb']}, chdb {v['chdb']}; "
        f"{meta['bench_seconds']:.0f} s in all, of which {meta.get('prepare_seconds', 0):.0f} s data "
        f"preparation and server starts (untimed); repeats {meta['repeats']} "
        f"(slow ones {meta['slow_repeats']}, "
        f"big scale {meta.get('big_repeats', 1)}).",
        "",
        "![median wall time and peak RSS per contender and scale](results/latest.svg)",
    ]
    for scale, data, res in scales(doc):
        out += ["", f"### {scale_title(scale, data)}", "", md_table(COLUMNS, contender_rows(res))]
        if scale == meta["scale"] and floor_line(doc):
            out += ["", floor_line(doc) + "."]
    ratios = [[k, f"{v:.2f}"] for k, v in doc["ratios"].items() if k != "floor"]
    out += ["", "### Ratios", "", md_table(["ratio", "value"], ratios)]
    out += [
        "",
        "### Targets (issue 13)",
        "",
        md_table(["target", "value", "limit", "goal", ""], target_rows(doc)),
    ]
    imports = doc.get("startup_importtime") or {}
    if imports:
        rows = [
            [name, f"{t['total_us'] / 1e6:.2f}", str(t["modules"])]
            + [", ".join(f"{m} {us / 1e3:.0f} ms" for m, us in t["top_cumulative"][:6])]
            for name, t in imports.items()
        ]
        out += [
            "",
            "### Start-up imports (`python -X importtime`, once, untimed; full lists in the JSON)",
            "",
            md_table(["command", "imports s", "modules", "heaviest (cumulative)"], rows),
        ]
    return "\n".join(out) + "\n"


def print_report(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, width=max(shutil.get_terminal_size((140, 24)).columns, 140))
    for scale, data, res in scales(doc):
        t = Table(title=f"lakeslice benchmarks, {scale_title(scale, data)}")
        for col in COLUMNS:
            t.add_column(col, justify="left" if col == "contender" else "right")
        for row in contender_rows(res):
            t.add_row(*row)
        con.print(t)
    if floor_line(doc):
        con.print(floor_line(doc))
    for k, v in doc["ratios"].items():
        if k != "floor":
            con.print(f"  {k:40s} {v:7.2f}")
    for target, value, limit, goal, ok in target_rows(doc):
        mark = "[green]ok  [/]" if ok == "ok" else "[red]MISS[/]"
        con.print(f"  {mark} {target:45s} {value:>8s} {limit:>8s}" + (f"  (goal {goal})" if goal else ""))


def chart_svg(doc: dict) -> str:
    """:func:`chart_spec` rendered offline to SVG."""
    import vl_convert

    return vl_convert.vegalite_to_svg(chart_spec(doc))


def chart_spec(doc: dict) -> dict:
    """Median wall time and peak RSS per contender, one bar per scale (a Vega-Lite spec)."""
    import altair as alt

    rows = [
        {
            "contender": name,
            "scale": f"scale {scale:g}",
            "median wall s": r["median_wall_s"],
            "peak RSS MiB": r["peak_rss_mib"],
        }
        for scale, _data, res in scales(doc)
        for name, r in res.items()
    ]
    order = list(dict.fromkeys(r["contender"] for r in rows))
    base = alt.Chart(alt.Data(values=rows)).encode(
        y=alt.Y("contender:N", sort=order, title=None),
        yOffset=alt.YOffset("scale:N"),
        color=alt.Color("scale:N", legend=alt.Legend(title=None, orient="bottom")),
    )
    size = {"width": 320, "height": 22 * len(order)}
    wall = base.mark_bar().encode(x=alt.X("median wall s:Q")).properties(**size)
    rss = base.mark_bar().encode(x=alt.X("peak RSS MiB:Q", title="peak RSS MiB"))
    target = alt.Chart(alt.Data(values=[{"MiB": 512}])).mark_rule(color="red", strokeDash=[4, 3])
    rss_panel = alt.layer(rss, target.encode(x=alt.X("MiB:Q", title="peak RSS MiB"))).properties(
        **size, title="dashed: the 512 MiB target"
    )
    panels = [wall, rss_panel]
    title = f"make bench: {load_heading(doc)}, {doc['meta']['created_at']}"
    return alt.hconcat(*panels).properties(title=title).to_dict()
