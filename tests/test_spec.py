"""lakeslice.spec: intervals, windows, run ids, compressions (SPEC §1, §5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakeslice.spec import (
    InputError,
    Window,
    check_compression,
    check_run_id,
    format_interval,
    parse_interval,
    parse_window,
)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1s", 1),
        ("15s", 15),
        ("1m", 60),
        ("5m", 300),
        ("15m", 900),
        ("1h", 3600),
        ("4h", 14_400),
        ("1d", 86_400),
        ("7d", 604_800),
        ("60", 60),
        ("1", 1),
        (" 1m ", 60),
        (1, 1),
        (60, 60),
        (86_400, 86_400),
        ("90s", 90),
        ("0001m", 60),
    ],
)
def test_parse_interval_good(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0s",
        "0m",
        "-1",
        "-1m",
        "1x",
        "m",
        "1.5m",
        "1 m s",
        "1M",
        "1ms",
        "1w",
        "abc",
        0,
        -60,
        True,
        False,
    ],
)
def test_parse_interval_bad_names_the_text(text):
    with pytest.raises(InputError) as e:
        parse_interval(text)
    assert repr(text) in str(e.value)
    assert "interval" in str(e.value)
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    "seconds, text",
    [
        (1, "1s"),
        (15, "15s"),
        (59, "59s"),
        (60, "1m"),
        (90, "90s"),
        (300, "5m"),
        (3600, "1h"),
        (5400, "90m"),
        (86_400, "1d"),
        (90_000, "25h"),
        (172_800, "2d"),
    ],
)
def test_format_interval(seconds, text):
    assert format_interval(seconds) == text
    assert parse_interval(text) == seconds


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10 * 86_400))
def test_format_parse_round_trip(seconds):
    text = format_interval(seconds)
    assert parse_interval(text) == seconds
    # the largest unit that divides it
    unit = text[-1]
    assert unit in "smhd"
    bigger = {"s": 60, "m": 3600, "h": 86_400, "d": None}[unit]
    assert bigger is None or seconds % bigger != 0


@pytest.mark.parametrize(
    "text, pre, post",
    [
        ("pre52_post4948", 52, 4948),
        ("pre0_post0", 0, 0),
        ("pre0_post10", 0, 10),
        (" pre3_post1 ", 3, 1),
        ("pre007_post02", 7, 2),
    ],
)
def test_parse_window_good(text, pre, post):
    w = parse_window(text)
    assert (w.pre, w.post) == (pre, post)
    assert w == Window(pre, post)
    assert w.slots == pre + 1 + post
    assert w.name == f"pre{pre}_post{post}" == str(w)
    assert parse_window(w) is w


@pytest.mark.parametrize(
    "text",
    [
        "",
        "pre52",
        "post3",
        "pre-1_post2",
        "pre1_post-2",
        "pre1_post",
        "prex_post1",
        "PRE1_POST1",
        "pre1-post1",
        "pre1_post1_",
        "pre1.5_post1",
        "pre 1_post 1",
        "pre1_post1x",
    ],
)
def test_parse_window_bad_names_the_text(text):
    with pytest.raises(InputError) as e:
        parse_window(text)
    assert repr(text) in str(e.value)
    assert "preN_postM" in str(e.value)


@pytest.mark.parametrize("run_id", ["2024-01-01T00-00-00Z_ab12", "run.1", "a_b-c", "x", "a..b"])
def test_run_id_good(run_id):
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize(
    "run_id",
    ["", ".", "..", "...", "a/b", "../x", "/abs", "a\\b", "a b", "é", "abc\n", "\nabc", "a\x00b", "a:b"],
)
def test_run_id_bad(run_id):
    with pytest.raises(InputError) as e:
        check_run_id(run_id)
    assert repr(run_id) in str(e.value)


def test_compressions():
    for c in ("zstd", "snappy", "none"):  # the names the CLI documents
        assert check_compression(c) == c
    for bad in ("gzip", "ZSTD", "", "lz4"):
        with pytest.raises(InputError, match=repr(bad)):
            check_compression(bad)
