"""Progress in Jupyter: a real IPython kernel (started here, on loopback) runs an export with
``lakeslice.progress_bar()``; its iopub messages must carry rich's progress display.

rich draws a live display in Jupyter into an ``ipywidgets`` Output widget: the kernel opens the
widget (``display_data`` of a widget view), then each redraw is a ``clear_output`` and a
``display_data`` (text/plain with ANSI styles, text/html) routed into that widget. The expected
group count comes from the plain-Python reference (SHA-1 buckets of the alerts' mints).
"""

from __future__ import annotations

import json
import queue
import re
import sys
import time

import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from support.cli import clean_env
from support.data import ALERTS_CSV, CANDLES_PQ, REPO
from support.reference import alerts_csv, bucket_group_count

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WIDGET = "application/vnd.jupyter.widget-view+json"
#: Stages an export goes through, in order (lakeslice.progress.STAGES).
STAGES = ("planning", "fetching", "writing", "sealing")

CODE = """
import json
import lakeslice as ls
from lakeslice.sources.parquet import ParquetSource
ParquetSource.group_rows = 1  # a group per bucket: several groups from the small fixture
with ls.progress_bar() as bar:
    res = ls.export_run_slices({alerts!r}, interval="1m", window="pre2_post3", source={source!r},
                               data_root={root!r}, run_id="nb", progress=bar)
print(json.dumps({{"bar": type(bar).__name__, "rows_fetched": res.rows_fetched}}))
"""


@pytest.fixture
def kernel(tmp_path):
    """A client of a fresh IPython kernel running this interpreter, on 127.0.0.1."""
    spec = tmp_path / "kernels" / "lakeslice-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "t", "language": "python"}))
    manager = KernelManager(
        kernel_name="lakeslice-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]),
        transport="tcp",
        ip="127.0.0.1",
        connection_file=str(tmp_path / "connection.json"),
    )
    env = clean_env(IPYTHONDIR=str(tmp_path / "ipython"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    manager.start_kernel(cwd=str(REPO), env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run_cell(client, code: str, *, timeout: float = 300) -> list[dict]:
    """Execute ``code``; every iopub message it caused, until the kernel is idle again."""
    msg_id = client.execute(code)
    messages, deadline = [], time.monotonic() + timeout
    while True:
        try:
            msg = client.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            raise AssertionError(f"no idle from the kernel in {timeout} s: {messages[-3:]}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages


def test_progress_is_a_rich_display_in_jupyter(kernel, tmp_path):
    code = CODE.format(alerts=str(ALERTS_CSV), source=f"parquet://{CANDLES_PQ}", root=str(tmp_path / "d"))
    messages = run_cell(kernel, code)
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert not errors, errors
    stdout = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["bar"] == "_Bar"  # a bar was drawn, not the no-op of a pipe

    # the bar lives in one Output widget, opened once and left open (its last frame stays)
    widgets = [m for m in messages if m["msg_type"] == "display_data" and WIDGET in m["content"]["data"]]
    assert len(widgets) == 1
    assert not [m for m in messages if m["msg_type"] == "comm_close"]

    frames = [
        ANSI.sub("", m["content"]["data"]["text/plain"]).strip()
        for m in messages
        if m["msg_type"] == "display_data" and "text/html" in m["content"]["data"]
    ]
    frames = [f for f in frames if f.split() and f.split()[0] in STAGES]
    assert frames, [m["msg_type"] for m in messages]
    order = list(dict.fromkeys(f.split()[0] for f in frames))
    assert order == list(STAGES), order

    mints = {a["mint"] for a in alerts_csv(ALERTS_CSV)}
    total = bucket_group_count(dict.fromkeys(mints, 1), 1)
    assert total == 5
    fetching = [f for f in frames if f.startswith("fetching")]
    assert f" 0/{total} " in fetching[0]  # the total from the first frame of the stage
    assert all(f"/{total} " in f for f in fetching) and "?" not in "".join(frames)
    # the frame left in the cell is drawn after the export: every fetched row is counted
    rows = re.search(r"· ([\d,]+) rows ·", frames[-1])
    assert rows and int(rows.group(1).replace(",", "")) == result["rows_fetched"] > 0


def test_without_ipywidgets_jupyter_says_which_extra(kernel):
    code = (
        "import sys; sys.modules['ipywidgets'] = None\n"
        "import lakeslice as ls\n"
        "with ls.progress_bar() as bar:\n"
        "    print('bar', bar)\n"
    )
    messages = run_cell(kernel, code)
    streams = {"stdout": "", "stderr": ""}
    for m in messages:
        if m["msg_type"] == "stream":
            streams[m["content"]["name"]] += m["content"]["text"]
    assert streams["stdout"].strip() == "bar None"  # no bar, and the export goes on without one
    assert "ipywidgets (pip install 'lakeslice[notebook]')" in streams["stderr"]
    assert 'install "ipywidgets"' not in streams["stderr"]  # not rich's warning at every redraw
    assert not [m for m in messages if m["msg_type"] in ("error", "display_data")]
