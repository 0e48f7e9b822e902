"""The dashboard: one renderer fed with wire messages, locally from the bus or over `watch`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re

from rich.console import Console

from streamer.core.events import EventBus, to_dict
from streamer.sinks import protocol
from streamer.sinks.dashboard import Dashboard, LocalDashboard, plain_line
from tests.wire import describe_for, emotion, status

SERVER = {"clients": 3, "dropped_clients": 2, "max_clients": 64, "missed_events": 0}


def _text(dashboard: Dashboard) -> str:
    console = Console(width=100, record=True, file=open(os.devnull, "w"))  # noqa: SIM115 (devnull, closed at exit)
    console.print(dashboard.render())
    return console.export_text()


def _hello(bus: EventBus) -> dict:
    return protocol.snapshot("hello", describe_for(bus)(), SERVER)


def test_dashboard_shows_label_bars_timeline_level_and_counters() -> None:
    bus = EventBus()
    dash = Dashboard("ws://pi:8765/")
    dash.apply(_hello(bus))
    assert "W  A  I  T  I  N  G" in _text(dash)
    for seq in range(5):
        dash.apply(to_dict(emotion(seq, "sad")))
    clipped = emotion(5, "angry")
    clipped = dataclasses.replace(clipped, level=dataclasses.replace(clipped.level, clipped=True), processing_ms=4.5)
    dash.apply(to_dict(clipped))
    dash.apply(to_dict(emotion(6, state="uncertain")))
    assert "U  N  C  E  R  T  A  I  N" in _text(dash) and "no mood leads clearly" in _text(dash)
    dash.apply(to_dict(emotion(7, state="silence")))
    dash.apply(to_dict(status("source_recovered")))
    text = _text(dash)
    assert "S  I  L  E  N  C  E" in text and "hop 7" in text
    assert "██████▒·" in text  # five sad hops, an angry one, an uncertain and a silent one
    assert "CLIP" in text and "rms -20.0  peak -3.0 dBFS" in text
    assert "clients    3" in text and "dropped clients  2" in text
    assert "tiny (cnn, ai-edge-litert)" in text and "file x.wav [connected]" in text
    assert "source_recovered: test source_recovered" in text
    assert "80%" in text and "raw" in text
    assert "hops seen  8" in text


def test_dashboard_colours_the_label_with_the_palette() -> None:
    dash = Dashboard()
    dash.apply(_hello(EventBus()))
    dash.apply(to_dict(emotion(0, "happy")))
    console = Console(width=100, record=True, force_terminal=True, color_system="truecolor", file=open(os.devnull, "w"))  # noqa: SIM115 (devnull, closed at exit)
    console.print(dash.render())
    html = console.export_html(inline_styles=True)
    assert protocol.PALETTE["happy"] in html and "H  A  P  P  Y" in html


def test_a_snapshot_shows_the_last_hop_before_the_next_one_comes() -> None:
    bus = EventBus()
    bus.publish(emotion(3, "angry"))
    dash = Dashboard()
    dash.apply({"type": "state", **describe_for(bus)()})  # what LocalDashboard starts with
    assert "A  N  G  R  Y" in _text(dash)


def test_sequence_gaps_are_counted_and_reset_by_a_new_hello() -> None:
    bus = EventBus()
    dash = Dashboard()
    dash.apply(_hello(bus))
    for seq in (0, 1, 4, 5):
        dash.apply(to_dict(emotion(seq)))
    assert dash.gaps == 2
    dash.apply(_hello(EventBus()))  # the daemon restarted: hops start again at 0
    dash.apply(to_dict(emotion(0)))
    assert dash.gaps == 2


def test_plain_lines() -> None:
    assert plain_line(to_dict(emotion(3, "happy"))) == (
        "hop 3 happy 0.80 (angry 0.10 happy 0.80 sad 0.10) rms -20.0 dBFS 1.5 ms"
    )
    assert plain_line(to_dict(emotion(4, state="warming_up"))) == "hop 4 warming_up"
    assert plain_line(to_dict(emotion(5, state="uncertain"))) == "hop 5 uncertain (angry 0.32 happy 0.38 sad 0.30)"
    assert plain_line(to_dict(status("source_lost"))) == "status source_lost: test source_lost"
    assert plain_line(protocol.pong()) is None


def test_local_dashboard_without_a_terminal_logs_plain_lines(caplog) -> None:
    async def main() -> None:
        bus = EventBus()
        console = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - not a terminal
        task = asyncio.create_task(LocalDashboard(describe_for(bus), console).run(bus, asyncio.Event()))
        await asyncio.sleep(0.05)
        bus.publish(emotion(1, "angry"))
        bus.close()
        await asyncio.wait_for(task, 5)

    with caplog.at_level(logging.INFO, logger="streamer.sinks.dashboard"):
        asyncio.run(main())
    assert "no terminal: no dashboard" in caplog.text
    assert "hop 1 angry 0.80" in caplog.text


def test_local_dashboard_on_a_terminal_renders_until_stopped() -> None:
    async def main() -> str:
        bus = EventBus()
        stop = asyncio.Event()
        console = Console(width=100, height=60, record=True, force_terminal=True, file=open(os.devnull, "w"))  # noqa: SIM115 (devnull, closed at exit)
        task = asyncio.create_task(LocalDashboard(describe_for(bus), console).run(bus, stop))
        await asyncio.sleep(0.05)
        bus.publish(emotion(1, "happy"))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert bus.subscriber_count == 0
        return console.export_text()

    text = asyncio.run(main())
    assert "H  A  P  P  Y" in text and "subtitle" not in text and "local" in text


def test_log_lines_print_above_the_live_dashboard_not_through_it() -> None:
    import io
    import sys

    from streamer.sinks.dashboard import Screen

    out = io.StringIO()
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(handler)
    try:
        console = Console(width=100, height=60, file=out, force_terminal=True)
        with Screen(Dashboard(), console, print) as screen:
            assert handler.stream is not screen._stderr
            logging.getLogger("streamer.test").warning("a log line")
            screen.refresh()
        assert handler.stream is sys.stderr
    finally:
        logging.getLogger().removeHandler(handler)
    # the frame is erased (cursor up, erase line), the log line printed on a line of its own, and
    # the dashboard drawn again below it
    before, after = out.getvalue().split("a log line\n", 1)
    assert before.endswith("\x1b[1A\x1b[2K") and " moodstream " in before
    assert re.match(r"(\x1b\[[0-9;]*m)*╭", after) and " moodstream " in after
