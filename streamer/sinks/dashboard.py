"""The terminal dashboard: one renderer for `run --dashboard` (local bus), `watch` (WebSocket) and the
fleet view of `watch mqtt://` (:class:`Fleet`, one row per device, with the same colours and meters).

:class:`Dashboard` consumes wire-format messages only (hello/state snapshots, emotion and status
events, as in docs/protocol.md), so the local daemon and a remote one look the same. Without a
terminal there is no dashboard: :class:`Screen` writes one plain line per event instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.align import Align
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streamer.core.events import EventBus, Subscription, to_dict
from streamer.sinks import protocol

log = logging.getLogger(__name__)

Message = dict[str, Any]

TIMELINE_HOPS = 60
STATUS_LINES = 4
BAR_WIDTH = 30
METER_FLOOR_DBFS = -60.0
CLIP_HOLD_S = 3.0  # keep the clipping mark this long after the last clipped hop
REFRESH_S = 1.0  # how often counters are refreshed (describe() locally, get_state remotely)
GREY = "#9e9e9e"
HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")  # a colour from the wire must not reach rich's style parser


class Dashboard:
    """What the screen shows, built from protocol messages; :meth:`render` draws it."""

    def __init__(self, source_label: str = "local") -> None:
        self.source_label = source_label  # "local" or the URL watched
        self.connection = "connected"
        self.connected = True
        self.info: Message = {}
        self.last: Message | None = None
        self.timeline: deque[tuple[str, str | None]] = deque(maxlen=TIMELINE_HOPS)
        self.statuses: deque[str] = deque(maxlen=STATUS_LINES)
        self.processing: deque[float] = deque(maxlen=TIMELINE_HOPS)
        self.clipped_at = -float("inf")
        self.events = 0
        self.gaps = 0  # hops missed (sequence numbers skipped) since connecting
        self._last_seq: int | None = None

    def set_connection(self, text: str, ok: bool) -> None:
        self.connection, self.connected = text, ok

    def apply(self, message: Message) -> None:
        kind = message.get("type")
        if kind in ("hello", "state"):
            self.info = message
            state = message.get("state")
            if kind == "hello":  # a (re)started daemon numbers hops from its own start
                self._last_seq = state["seq"] if state else None
            if state and (kind == "hello" or self.last is None):
                self.last = state
        elif kind == "emotion":
            self._emotion(message)
        elif kind == "status":
            stamp = time.strftime("%H:%M:%S", time.localtime(message.get("timestamp", time.time())))
            self.statuses.append(f"{stamp} {message.get('kind')}: {message.get('message')}")

    def _emotion(self, event: Message) -> None:
        seq = event["seq"]
        if self._last_seq is not None and seq > self._last_seq + 1:
            self.gaps += seq - self._last_seq - 1
        self._last_seq = seq
        self.last = event
        self.events += 1
        self.timeline.append((event["state"], event.get("label")))
        self.processing.append(float(event.get("processing_ms") or 0.0))
        if event.get("level", {}).get("clipped"):
            self.clipped_at = time.monotonic()

    def color(self, label: str | None) -> str:
        if label is None:
            return GREY
        color = (self.info.get("model", {}).get("colors") or {}).get(label)
        return color if isinstance(color, str) and HEX_COLOR.fullmatch(color) else protocol.label_color(label)

    def labels(self) -> list[str]:
        labels = self.info.get("model", {}).get("labels")
        if labels:
            return list(labels)
        return list((self.last or {}).get("probabilities", {}))

    # drawing

    def render(self) -> RenderableType:
        return Group(self._hero(), self._bars(), self._timeline(), self._meter(), self._facts(), self._status_panel())

    def _hero(self) -> RenderableType:
        event = self.last
        if event is None:
            word, detail, color = "waiting", "no hop yet", GREY
        elif event["state"] == "emotion":
            word, color = event["label"], self.color(event["label"])
            detail = f"{100 * event['confidence']:.0f}% confident · hop {event['seq']}"
        elif event["state"] == "uncertain":
            word, color = "uncertain", GREY
            detail = f"no mood leads clearly · hop {event['seq']}"
        else:
            word, color = event["state"].replace("_", " "), GREY
            detail = f"hop {event['seq']}"
        big = Text("  ".join(word.upper()), style=f"bold {_ink(color)}")
        body = Group(Align.center(big), Align.center(Text(detail, style=_ink(color))))
        return Panel(body, style=f"on {color}", padding=(1, 2), title="moodstream", subtitle=Text(self.source_label))

    def _bars(self) -> RenderableType:
        table = Table.grid(padding=(0, 1))
        table.add_column(min_width=8)
        table.add_column()
        table.add_column(justify="right", min_width=4)
        table.add_column(style="dim")
        probs = (self.last or {}).get("probabilities") or {}
        raw = (self.last or {}).get("raw") or {}
        for label in self.labels():
            p, r = float(probs.get(label, 0.0)), float(raw.get(label, 0.0))
            table.add_row(
                Text(label, style=self.color(label)),
                _bar(p, self.color(label)),
                Text(f"{100 * p:.0f}%"),
                Text(f"raw {_bar_text(r, BAR_WIDTH // 2)} {100 * r:.0f}%"),
            )
        return Panel(table, title="probabilities (smoothed, raw)", title_align="left")

    def _timeline(self) -> RenderableType:
        text = Text()
        for state, label in self.timeline:
            if state == "emotion":
                text.append("█", style=self.color(label))
            else:
                text.append({"silence": "·", "uncertain": "▒"}.get(state, "░"), style=GREY)
        legend = Text("  ")
        for label in self.labels():
            legend.append("█ ", style=self.color(label)).append(f"{label}  ")
        legend.append("▒ uncertain  · silence  ░ warming up", style=GREY)
        return Panel(Group(text, legend), title=f"last {TIMELINE_HOPS} hops", title_align="left")

    def _meter(self) -> RenderableType:
        level = (self.last or {}).get("level") or {}
        rms, peak = level.get("rms_dbfs"), level.get("peak_dbfs")
        line = _meter_line(rms, peak, 40)
        clipping = time.monotonic() - self.clipped_at < CLIP_HOLD_S
        line.append("  CLIP" if clipping else "      ", style="bold white on red" if clipping else "")
        line.append(f"  rms {_db(rms)}  peak {_db(peak)} dBFS")
        return Panel(line, title="input level", title_align="left")

    def _facts(self) -> RenderableType:
        model = self.info.get("model", {})
        source = self.info.get("source", {})
        server = self.info.get("server", {})
        proc = list(self.processing)
        rows = [
            (
                "model",
                f"{model.get('name', '?')} ({model.get('architecture', '?')}, {model.get('backend', '?')})",
                "window / hop",
                f"{model.get('window_seconds', '?')} s / {model.get('hop_seconds', '?')} s",
            ),
            (
                "source",
                f"{source.get('kind', '?')} {source.get('name', '')} [{source.get('state', '?')}]",
                "processing",
                f"{proc[-1]:.1f} ms (mean {sum(proc) / len(proc):.1f})" if proc else "-",
            ),
            (
                "clients",
                server.get("clients", "-"),
                "dropped clients",
                server.get("dropped_clients", "-"),
            ),
            ("overflows", source.get("overflows", "-"), "reconnects", source.get("reconnects", "-")),
            ("hops seen", self.events, "hops missed", self.gaps + int(server.get("missed_events", 0))),
        ]
        table = Table.grid(padding=(0, 2))
        for _ in range(4):
            table.add_column()
        for row in rows:  # Text, not markup: names from the daemon are shown as they are
            table.add_row(*(Text(str(cell)) for cell in row))
        connection = Text(self.connection, style="green" if self.connected else "bold red")
        return Panel(Group(table, connection), title="service", title_align="left")

    def _status_panel(self) -> RenderableType:
        body = Text(
            "\n".join(self.statuses) if self.statuses else "no status messages yet", style="" if self.statuses else GREY
        )
        return Panel(body, title="status", title_align="left")


def plain_line(message: Message) -> str | None:
    """One log line for a message (no terminal), or None for messages not worth a line."""
    kind = message.get("type")
    if kind == "emotion":
        level = message.get("level") or {}
        head = f"hop {message['seq']} "
        probs = " ".join(f"{k} {v:.2f}" for k, v in message["probabilities"].items())
        if message["state"] == "uncertain":
            return f"{head}uncertain ({probs})"
        if message["state"] != "emotion":
            return head + message["state"]
        return (
            f"{head}{message['label']} {message['confidence']:.2f} ({probs}) "
            f"rms {_db(level.get('rms_dbfs'))} dBFS{' CLIPPED' if level.get('clipped') else ''} "
            f"{message['processing_ms']:.1f} ms"
        )
    if kind == "status":
        return f"status {message.get('kind')}: {message.get('message')}"
    if kind == "hello":
        model = message.get("model", {})
        return f"connected: model {model.get('name')} labels {', '.join(model.get('labels', []))}"
    if kind == "error":
        return f"error from server: {message.get('message')}"
    if kind == "device":
        if "availability" in message:
            return f"{message['device']} {message['availability']}"
        attrs = message.get("attributes") or {}
        confidence = _number(attrs.get("confidence")) or 0.0
        return (
            f"{message['device']} {attrs.get('label') or attrs.get('state')} {confidence:.2f} "
            f"rms {_db(attrs.get('level_dbfs'))} dBFS"
        )
    return None


class Screen:
    """The live dashboard on a terminal, else plain lines through ``emit``."""

    def __init__(self, dashboard: Dashboard | Fleet, console: Console, emit: Callable[[str], None]) -> None:
        self.dashboard = dashboard
        self.console = console
        self.emit = emit
        self._live: Live | None = None
        self._moved: list[logging.StreamHandler] = []
        self._stderr = sys.stderr

    def __enter__(self) -> Screen:
        if self.console.is_terminal:
            stderr = sys.stderr
            self._live = Live(self.dashboard.render(), console=self.console, auto_refresh=False, redirect_stderr=True)
            self._live.__enter__()
            # Log handlers hold the real stderr: point them at rich's proxy so that log lines
            # print above the dashboard instead of tearing it.
            self._moved = [
                h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and h.stream is stderr
            ]
            for handler in self._moved:
                handler.setStream(sys.stderr)
            self._stderr = stderr
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            for handler in self._moved:
                handler.setStream(self._stderr)
            self._live.__exit__(None, None, None)

    def show(self, message: Message) -> None:
        self.dashboard.apply(message)
        if self._live is None:
            if (line := plain_line(message)) is not None:
                self.emit(line)
        else:
            self.refresh()

    @property
    def live(self) -> bool:
        """True when drawing on a terminal (callers may then batch updates and refresh themselves)."""
        return self._live is not None

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.dashboard.render(), refresh=True)

    def connection(self, text: str, ok: bool) -> None:
        self.dashboard.set_connection(text, ok)
        if self._live is None:
            self.emit(text)
        self.refresh()


class LocalDashboard:
    """`run --dashboard`: the dashboard of this process's bus until ``stop`` or the bus closes;
    ``describe`` (the daemon's snapshot) refreshes its counters every REFRESH_S."""

    name = "dashboard"

    def __init__(self, describe: Callable[[], dict[str, Any]], console: Console | None = None) -> None:
        self._describe = describe
        self._console = console or Console()
        self._subscription: Subscription | None = None

    def stats(self) -> dict[str, int]:
        return {"dashboard_dropped": self._subscription.dropped if self._subscription else 0}

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None:
        subscription = self._subscription = bus.subscribe(256)
        if not self._console.is_terminal:
            log.warning("no terminal: no dashboard; events are logged as plain lines")
        with Screen(Dashboard("local"), self._console, log.info) as screen:
            screen.show({"type": "state", **self._describe()})
            try:
                while not stop.is_set():
                    try:
                        event = await asyncio.wait_for(subscription.get(), REFRESH_S)
                    except TimeoutError:
                        screen.show({"type": "state", **self._describe()})
                        continue
                    if event is None:
                        break
                    screen.show(to_dict(event))
            finally:
                subscription.close()


class Fleet:
    """`watch mqtt://BROKER`: one row per device on the broker (mood, confidence, level, availability),
    drawn with the dashboard's colours, bars and level meter. It consumes ``device`` messages:
    ``{"type": "device", "device": ID, "availability": ...}`` or ``{..., "attributes": {...}}`` (the
    MQTT sink's topics, docs/home-assistant.md)."""

    def __init__(self, source_label: str) -> None:
        self.source_label = source_label
        self.connection = "connecting"
        self.connected = False
        self.devices: dict[str, Message] = {}

    def set_connection(self, text: str, ok: bool) -> None:
        self.connection, self.connected = text, ok

    def apply(self, message: Message) -> None:
        if message.get("type") != "device":
            return
        row = self.devices.setdefault(str(message["device"]), {"availability": "?", "attributes": {}})
        for key in ("availability", "attributes"):
            if key in message:
                row[key] = message[key]

    def render(self) -> RenderableType:
        table = Table(expand=True, box=None, padding=(0, 1))
        for name in ("device", "mood", "confidence", "input level (rms dBFS)", "availability"):
            table.add_column(name)
        for device, row in sorted(self.devices.items()):
            attrs = row["attributes"] if isinstance(row["attributes"], dict) else {}
            label, state = attrs.get("label"), attrs.get("state") or "-"
            color = protocol.label_color(label) if isinstance(label, str) and state == "emotion" else GREY
            word = label if isinstance(label, str) and state == "emotion" else str(state).replace("_", " ")
            confidence = _number(attrs.get("confidence"))
            rms = _number(attrs.get("level_dbfs"))
            online = row["availability"] == "online"
            table.add_row(
                Text(device),
                Text(f" {word.upper()} ", style=f"bold {_ink(color)} on {color}"),
                Text(_bar_text(confidence or 0.0, 10), style=color).append(f" {100 * (confidence or 0):3.0f}%", ""),
                _meter_line(rms, _number(attrs.get("peak_dbfs")), 20).append(f" {_db(rms)}"),
                Text(str(row["availability"]), style="green" if online else "bold red"),
            )
        if not self.devices:
            table.add_row(Text("no moodstream device on this broker yet", style=GREY), "", "", "", "")
        connection = Text(self.connection, style="green" if self.connected else "bold red")
        title = f"moodstream fleet: {len(self.devices)} device{'s' if len(self.devices) != 1 else ''}"
        return Panel(Group(table, connection), title=title, subtitle=Text(self.source_label))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _meter_line(rms: float | None, peak: float | None, width: int) -> Text:
    """The level meter: rms filled green-yellow-red, the peak as a mark."""
    line = Text()
    filled = _meter_cells(rms, width)
    peak_at = _meter_cells(peak, width)
    for i in range(width):
        style = "green" if i < 0.7 * width else "yellow" if i < 0.9 * width else "red"
        char = "█" if i < filled else ("│" if i == max(peak_at - 1, 0) and peak is not None else "─")
        line.append(char, style=style if i < filled or char == "│" else "grey30")
    return line


def _bar(value: float, color: str) -> Text:
    return Text(_bar_text(value, BAR_WIDTH), style=color)


def _bar_text(value: float, width: int) -> str:
    """A bar with eighth-cell resolution."""
    eighths = round(max(0.0, min(1.0, value)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)


def _meter_cells(dbfs: float | None, width: int) -> int:
    if dbfs is None:
        return 0
    fraction = (max(METER_FLOOR_DBFS, min(0.0, dbfs)) - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS
    return round(fraction * width)


def _db(value: float | None) -> str:
    return "-inf" if value is None else f"{value:.1f}"


def _ink(background: str) -> str:
    """Black or white text, whichever reads better on ``background`` (#rrggbb)."""
    r, g, b = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"
