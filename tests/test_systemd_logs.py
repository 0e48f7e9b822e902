"""Logs for journald: stderr, "<N>" level prefixes under the journal, repeats rate-limited."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest

from streamer.util import logs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args, name: str = "streamer.x", level: int = logging.WARNING):
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_beyond_the_burst_are_dropped_then_counted() -> None:
    clock = Clock()
    f = logs.RateLimitFilter(burst=3, period_s=10, clock=clock)
    passed = [f.filter(record("input overflow (%d so far)", i)) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert f.filter(record("another message"))  # other templates are counted apart
    assert f.filter(record("input overflow (%d so far)", 1, level=logging.ERROR))
    clock.now = 10.0
    summary = record("input overflow (%d so far)", 11)
    assert f.filter(summary)
    assert summary.getMessage() == "input overflow (11 so far) (7 similar messages suppressed)"
    assert f.filter(record("input overflow (%d so far)", 12))  # a fresh period, a fresh burst


def test_unique_messages_do_not_grow_the_table_forever() -> None:
    clock = Clock()
    f = logs.RateLimitFilter(period_s=1, clock=clock)
    for i in range(3000):
        clock.now = i * 0.01
        assert f.filter(record(f"unique {i}"))
    assert len(f._seen) <= 1001 + 100


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_setup_writes_plain_lines_with_time_outside_the_journal() -> None:
    out = io.StringIO()
    logs.setup("info", stream=out, environ={})
    logging.getLogger("streamer.test").info("hello %s", "pi")
    logging.getLogger("streamer.test").debug("not at info")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("INFO streamer.test: hello pi")


def test_setup_under_journald_uses_priority_prefixes(tmp_path: Path) -> None:
    with open(tmp_path / "journal", "w+") as stream:
        st = os.fstat(stream.fileno())
        logs.setup("debug", stream=stream, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        log = logging.getLogger("streamer.test")
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e\nsecond line")
        stream.seek(0)
        assert stream.read().splitlines() == [
            "<7>streamer.test: d",
            "<6>streamer.test: i",
            "<4>streamer.test: w",
            "<3>streamer.test: e",
            "<3>second line",
        ]


@pytest.mark.parametrize("value", ["", "1:2", "x:y"])
def test_a_journal_stream_that_is_not_ours_is_ignored(tmp_path: Path, value: str) -> None:
    with open(tmp_path / "log", "w") as stream:
        assert not logs._under_journald(stream, {"JOURNAL_STREAM": value})
