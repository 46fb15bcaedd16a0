"""Walk the README top to bottom: every ``sh`` and ``python`` block runs, as written, in a copy
of the repository on the demo data.

A block preceded by ``<!-- readme-test: skip (why) -->`` is illustrative (a server that is not
there); ``<!-- readme-test: setup (why) -->`` marks the block this test performs itself
(``make demo``, run here as ``make -o install demo`` against the installed venv).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import clean_env

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<mark>\w+) \((?P<why>[^)]+)\) -->\n)?```(?P<lang>sh|python)\n(?P<body>.*?)```",
    re.S,
)


def blocks() -> list[dict]:
    return [m.groupdict() for m in BLOCK.finditer((REPO / "README.md").read_text("utf-8"))]


def repo_copy(dst: Path) -> Path:
    """The files git knows (tracked, or new and not ignored), and the installed venv."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            (dst / name).write_bytes(src.read_bytes())
    (dst / ".venv").symlink_to(Path(sys.executable).parent.parent, target_is_directory=True)
    return dst


def test_readme_marks_are_explained():
    found = blocks()
    assert len(found) >= 7
    for b in found:
        assert b["mark"] in (None, "skip", "setup"), b["mark"]
        assert b["mark"] is None or len(b["why"]) > 10


@pytest.mark.slow
def test_readme_walk(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    env = clean_env(COLUMNS="100")
    ran = 0
    for b in blocks():
        if b["mark"] == "skip":
            continue
        if b["mark"] == "setup":
            cmd = ["make", "-o", "install", "demo"]
        elif b["lang"] == "sh":
            cmd = ["bash", "-euo", "pipefail", "-c", b["body"]]
        else:
            cmd = [sys.executable, "-c", b["body"]]
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"README block failed:\n{b['body']}\n--- stderr:\n{proc.stderr[-3000:]}"
        ran += 1
    assert ran >= 6
    # what the README says of the demo's coverage and of a strict run on it
    runs = repo / "data" / "lake" / "runs"
    demo = json.loads((runs / "run_id=demo" / "manifest.json").read_text())["coverage"]
    strict = json.loads((runs / "run_id=demo-strict" / "manifest.json").read_text())["coverage"]
    total = demo["complete"] + demo["partial"] + demo["insufficient"]
    assert demo["complete"] / total == pytest.approx(0.7, abs=0.1)
    assert demo["partial"] / total == pytest.approx(0.2, abs=0.1)
    assert demo["insufficient"] / total == pytest.approx(0.1, abs=0.1)
    assert strict["kept_events"] == demo["complete"]
    corpus = json.loads((runs / "run_id=from-corpus" / "manifest.json").read_text())["coverage"]
    assert {k: corpus[k] for k in ("complete", "partial", "insufficient")} == {
        k: demo[k] for k in ("complete", "partial", "insufficient")
    }


def test_readme_packaging_matches_the_package():
    """The Packaging section names every extra pyproject declares, and the installed metadata
    is what it says: SPDX license, classifiers (typed), no project URLs yet."""
    text = (REPO / "README.md").read_text("utf-8")
    packaging = text[text.index("## Packaging") :]
    meta = importlib.metadata.metadata("lakeslice")  # built from pyproject.toml
    extras = set(meta.get_all("Provides-Extra"))
    named = set(re.findall(r"`(\w+)` \(", packaging)) | {"all"} & set(re.findall(r"`(\w+)`", packaging))
    assert named == extras - {"test"}
    assert meta["License-Expression"] == "MIT"
    assert "Typing :: Typed" in meta.get_all("Classifier") and (REPO / "lakeslice" / "py.typed").is_file()
    assert meta.get_all("Project-URL") is None and "no project URLs" in packaging
