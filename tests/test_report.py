"""``lakeslice report``: the page renders in a real headless Chromium, offline, every chart drawn.

Expected mark counts are computed here from the run's files (pyarrow, plain Python), not from
lakeslice. The screenshot is kept in build/artifacts/ for a human to look at.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.browser import Browser, find_chromium
from support.cli import run_cli
from support.data import ALERTS_CSV, CANDLES_PQ, REPO

import lakeslice as ls
from lakeslice.report import write_report

ARTIFACTS = REPO / "build" / "artifacts"
CHARTS = ("status", "available_total", "pre_post", "buckets", "parts", "profile", "profile_n")
PRE, POST = 10, 20


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    return ls.export_run_slices(
        str(ALERTS_CSV),
        interval="1m",
        window=f"pre{PRE}_post{POST}",
        source=f"parquet://{CANDLES_PQ}",
        run_id="rep",
        data_root=root,
    ).run_dir


@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("page")
    return write_report(run, output=out / "report.html", png_dir=out / "png")


def expected_marks(run_dir: Path) -> dict[str, list[tuple[str, int]]]:
    """Per chart, the (mark class, number of marks) Vega must draw, from the files themselves."""
    cov = pq.read_table(run_dir / "outputs/coverage.parquet").to_pylist()
    parts = sorted(p for p in run_dir.rglob("part-*.parquet"))
    buckets = {p.parent.name for p in parts}
    totals = {c["available_total"] for c in cov}  # 31 slots: histogram bins of width 1
    pairs = {(c["available_pre"], c["available_post"]) for c in cov}
    return {
        "status": [("mark-rect", 3)],
        "available_total": [("mark-rect", len(totals)), ("mark-rule", 1)],
        "pre_post": [("mark-symbol", len(pairs))],
        "buckets": [("mark-rect", len(buckets))] * 3,
        "parts": [("mark-rect", len(parts)), ("mark-rule", 1)],  # ticks are drawn as rects
        "profile": [("mark-area", 1), ("mark-line", 1), ("mark-line", 1), ("mark-rule", 1)],
        "profile_n": [("mark-rect", PRE + 1 + POST)],  # dense windows: a bar at every k
    }


MARKS_JS = """Object.fromEntries(Object.keys(window.lakesliceViews).map(id => [id,
  Array.from(document.querySelectorAll('#' + id + ' g.role-mark')).map(
    g => [g.getAttribute('class').split(' ')[0], g.childElementCount])]))"""

ITEMS_JS = """Object.fromEntries(Object.entries(window.lakesliceViews).map(([id, view]) => {
  let n = 0;
  (function walk(node) {
    (node.items || []).forEach(item => { if (item.mark && item.mark.role === 'mark') n++; walk(item); });
  })(view.scenegraph().root);
  return [id, n];
}))"""


def test_report_renders_offline_in_chromium(run, page, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.fail(
            "chromium is not installed: run `make chromium` (or set LAKESLICE_TEST_CHROMIUM)", pytrace=False
        )
    browser = Browser(binary, tmp_path / "profile")
    try:
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.page(f"{domain}.enable")
        browser.page(
            "Network.emulateNetworkConditions",
            offline=True,
            latency=0,
            downloadThroughput=-1,
            uploadThroughput=-1,
        )
        browser.page("Page.navigate", url=page.resolve().as_uri())
        browser.wait_event("Page.loadEventFired")
        drawn = browser.page("Runtime.evaluate", expression="window.lakesliceReport", awaitPromise=True)
        assert drawn["result"].get("value") == len(CHARTS), drawn
        marks = browser.page("Runtime.evaluate", expression=MARKS_JS, returnByValue=True)["result"]["value"]
        items = browser.page("Runtime.evaluate", expression=ITEMS_JS, returnByValue=True)["result"]["value"]
        metrics = browser.page("Page.getLayoutMetrics")
        height = int(metrics["cssContentSize"]["height"])
        browser.page(
            "Emulation.setDeviceMetricsOverride", width=1200, height=height, deviceScaleFactor=1, mobile=False
        )
        shot = base64.b64decode(browser.page("Page.captureScreenshot", format="png")["data"])
        events = list(browser.events)
    finally:
        browser.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(shot)
    shutil.copy(page, ARTIFACTS / "report.html")

    want = expected_marks(run)
    assert sorted(marks) == sorted(CHARTS)
    for chart in CHARTS:
        assert marks[chart] == [list(m) for m in want[chart]], chart
        assert items[chart] >= sum(n for _, n in want[chart]) > 0, chart  # the view's scenegraph
    problems = [
        e["params"]
        for e in events
        if (
            e.get("method") == "Runtime.consoleAPICalled"
            and e["params"]["type"] in ("error", "warning", "assert")
        )
        or e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning"))
    ]
    assert problems == []
    urls = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert urls and all(u.startswith("file://") for u in urls), urls  # nothing but the page itself
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and height > 1500


def test_page_states_spec_and_full_seal(run, page):
    manifest = json.loads((run / "manifest.json").read_text())
    text = page.read_text("utf-8")
    assert manifest["content_sha256"] in text  # the full hash, not a prefix
    assert ">verified<" in text and "pre10_post20" in text
    # no resource is fetched from anywhere: no src/href to a URL, no stylesheet link
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link" not in text


def test_report_is_deterministic(run, page, tmp_path):
    """Same run, same bytes: again in this process, and in one with a single Polars thread."""
    again = write_report(run, output=tmp_path / "again.html")
    assert again.read_bytes() == page.read_bytes()
    res = _cli("report", run, "-o", tmp_path / "one.html", env={"POLARS_MAX_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "one.html").read_bytes() == page.read_bytes()


def test_png_per_chart(page):
    pngs = sorted((page.parent / "png").iterdir())
    assert [p.stem for p in pngs] == sorted(CHARTS)
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, p


def test_tampered_run_is_reported_as_not_verifying(run, tmp_path):
    copy = tmp_path / "run_id=rep"
    shutil.copytree(run, copy)
    (copy / "notes.txt").write_text("hello")
    text = write_report(copy, output=tmp_path / "r.html").read_text("utf-8")
    assert "does not verify" in text and "notes.txt: not listed in the seal" in text


def _cli(*args: object, env: dict[str, str | None] | None = None):
    return run_cli(*args, cwd=REPO, env=env)


def test_cli_report_writes_page_and_pngs(run, tmp_path):
    res = _cli("report", run, "-o", tmp_path / "r.html", "--png", tmp_path / "png", "--kind", "simple")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "r.html")
    assert "simple return vs k=0" in (tmp_path / "r.html").read_text("utf-8")
    assert len(list((tmp_path / "png").glob("*.png"))) == len(CHARTS)


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (["{tmp}/nope"], 1, "no such run directory"),
        (["{tmp}"], 1, "unsealed"),
        (["{run}", "--kind", "pct"], 2, "kind 'pct'"),
    ],
)
def test_cli_report_errors_are_one_line(run, tmp_path, args, status, needle):
    res = _cli("report", *(a.format(tmp=tmp_path, run=run) for a in args), "-o", tmp_path / "x.html")
    assert res.returncode == status, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "x.html").exists()


def test_plotting_libraries_are_optional(run, tmp_path):
    """``import lakeslice`` does not load them; without them the CLI says how to install."""
    probe = "import sys, lakeslice; print(sorted({'altair', 'vl_convert'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
    hide = (
        "import sys; sys.modules['altair'] = None; sys.modules['vl_convert'] = None; "
        "from lakeslice.cli import main; sys.argv = ['lakeslice'] + sys.argv[1:]; main()"
    )
    env = {**os.environ, "LAKESLICE_DEBUG": ""}
    res = subprocess.run(
        [sys.executable, "-c", hide, "report", str(run), "-o", str(tmp_path / "x.html")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "lakeslice: error: the report needs altair: pip install 'lakeslice[report]'"
    ]


def test_run_without_any_candle_still_gets_a_page(tmp_path):
    alerts = tmp_path / "alerts.csv"
    alerts.write_text("alert_id,mint,ts_ms\nx,NoSuchMint,1704069000000\n")
    run = ls.export_run_slices(
        str(alerts),
        interval="1m",
        window="pre2_post3",
        source=f"parquet://{CANDLES_PQ}",
        run_id="empty",
        data_root=tmp_path,
    ).run_dir
    text = write_report(run, output=tmp_path / "r.html").read_text("utf-8")
    assert "1 kept alert(s) have no usable price" in text and ">verified<" in text
    specs = json.loads(re.search(r"const specs = (.*);\n", text)[1].replace("<\\/", "</"))
    assert specs["profile_n"]["data"]["values"] == [{"k": k, "n": 0} for k in range(-2, 4)]


def test_readme_event_study_runs_as_written(run, tmp_path):
    """The README's section, on this run instead of the demo one: the code and the report."""
    section = (REPO / "README.md").read_text("utf-8").split("## Event study\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    demo = "data/lake/runs/run_id=demo"
    assert demo in code
    res = subprocess.run(
        [sys.executable, "-c", code.replace(demo, str(run))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "alert(s) without a base price" in res.stdout
    command = re.search(r"```sh\n(.*?)\n```", section, re.S)[1].split()
    assert command[:3] == [".venv/bin/lakeslice", "report", demo]
    res = _cli(*[a.replace(demo, str(run)).replace("data/", f"{tmp_path}/") for a in command[1:]])
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "demo-report.html").is_file() and len(
        list((tmp_path / "demo-charts").glob("*.png"))
    ) == 7
