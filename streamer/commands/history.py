"""`moodstream history`: what was heard, from the history database (``[history] path``).

Prints minutes per mood, the switches and the longest stretch of each mood over a range (the last
``--since``, ``--from``/``--to``, or a session bracketed by marks); ``--csv`` exports the hops and
``--plot`` draws the timeline (matplotlib, the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import csv
import io
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from streamer import config as config_mod
from streamer.commands.history_plot import PlotUnavailable, plot  # imports matplotlib only when it draws
from streamer.config import ConfigError
from streamer.sinks.history import Hop, find_session, open_readonly, parse_duration, read_hops, read_marks, summarise
from streamer.util.atomic import write_atomic


class HistoryError(RuntimeError):
    """A bad request (exit 2) or an unreadable database (exit 1)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--db", type=Path, help="the history database (default: [history] path of the config)")
    a("--config", type=Path, help=f"TOML settings (default: {config_mod.SYSTEM_CONFIG} if it exists)")
    a("--since", help="the last 90s, 30m, 2h, 1d... (default: 1d)")
    a("--from", dest="start", metavar="T", help="start: 2026-11-30T14:00, 14:00 (today) or epoch seconds")
    a("--to", dest="end", metavar="T", help="end (default: now)")
    a("--session", metavar="NAME", help='the range between the marks "NAME start" and "NAME end"')
    a("--csv", metavar="FILE", help="export the hops as CSV to FILE, or - for stdout")
    a("--plot", metavar="FILE", help="draw the timeline to FILE.png or FILE.svg (needs the plot extra)")


def main(args: argparse.Namespace) -> int:
    try:
        db = args.db or _configured_db(args.config)
        try:
            conn = open_readonly(db)
        except FileNotFoundError as exc:
            raise HistoryError(f"{exc} (is [history] path set, and has the daemon run?)") from None
        try:
            start, end, title = _range(args, conn)
            hops, marks = read_hops(conn, start, end), read_marks(conn, start, end)
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read {db}: {exc}", code=1) from None
        finally:
            conn.close()
        summary = summarise(hops)
        if args.csv:
            _export(hops, args.csv)
        if args.csv != "-":
            print(report(summary, title))
        if args.plot:
            plot(hops, marks, Path(args.plot), title)
            print(f"plot written to {args.plot}", file=sys.stderr if args.csv == "-" else sys.stdout)
    except PlotUnavailable as exc:
        print(f"moodstream history: {exc}", file=sys.stderr)
        return 1
    except (HistoryError, ConfigError, ValueError) as exc:
        print(f"moodstream history: {exc}", file=sys.stderr)
        return getattr(exc, "code", 2)
    except OSError as exc:
        print(f"moodstream history: {exc.strerror or exc}: {getattr(exc, 'filename', '')}", file=sys.stderr)
        return 1
    return 0


def _configured_db(config: Path | None) -> Path:
    path = config_mod.load(config).history.path
    if not path:
        raise HistoryError("no history database: give --db PATH or set [history] path in the config")
    return Path(path)


def _range(args: argparse.Namespace, conn: sqlite3.Connection) -> tuple[float, float, str]:
    now = time.time()
    if args.session:
        if args.since or args.start or args.end:
            raise HistoryError("--session takes no --since, --from or --to")
        found = find_session(read_marks(conn), args.session, now)
        if found is None:
            names = sorted({m.message for m in read_marks(conn)})
            raise HistoryError(f"no session {args.session!r} in the marks ({', '.join(names) or 'there are none'})")
        return found[0], found[1] + 1e-6, f"session {args.session}"
    if args.since and (args.start or args.end):
        raise HistoryError("give --since or --from/--to, not both")
    if args.start or args.end:
        end = parse_time(args.end, now) if args.end else now
        start = parse_time(args.start, now) if args.start else end - 86400.0
    else:
        start, end = now - parse_duration(args.since or "1d"), now
    if not start < end:
        raise HistoryError("the range is empty: --from must be before --to")
    return start, end, f"{_clock(start)} to {_clock(end)}"


def parse_time(text: str, now: float) -> float:
    """Epoch seconds, an ISO date-time (local time unless it says otherwise) or HH:MM today."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        if len(text) <= 8 and ":" in text:  # 14:00 or 14:00:30, today
            clock = datetime.strptime(text, "%H:%M:%S" if text.count(":") == 2 else "%H:%M").time()
            return datetime.combine(datetime.fromtimestamp(now).date(), clock).timestamp()
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise HistoryError(f"not a time: {text!r} (try 2026-11-30T14:00, 14:00 or epoch seconds)") from None


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def report(summary: dict[str, Any], title: str) -> str:
    """The summary as text: minutes per mood, switches, longest stretches."""
    if not summary["hops"]:
        return f"{title}: no hops recorded"
    lines = [f"{title}: {summary['hops']} hops from {_clock(summary['from'])} to {_clock(summary['to'])}"]
    for label, minutes in summary["minutes"].items():
        longest = summary["longest"].get(label)
        stretch = f"  longest {_span(longest['seconds'])} from {_clock(longest['from'])}" if longest else ""
        lines.append(f"  {label:10s} {minutes:8.1f} min{stretch}")
    for state, minutes in summary["other_minutes"].items():
        lines.append(f"  {state.replace('_', ' '):10s} {minutes:8.1f} min (no mood claimed)")
    lines.append(f"  switches   {summary['switches']}")
    return "\n".join(lines)


def _span(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def csv_text(hops: list[Hop]) -> str:
    labels: list[str] = []
    for hop in hops:
        labels += [k for k in hop.probabilities if k not in labels]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "iso_time", "seq", "state", "label", "confidence", *labels, "rms_dbfs", "model"])
    for h in hops:
        probs = [f"{h.probabilities[k]:.4f}" if k in h.probabilities else "" for k in labels]
        iso = datetime.fromtimestamp(h.time).isoformat(timespec="milliseconds")
        row = [f"{h.time:.3f}", iso, h.seq, h.state, h.label or "", f"{h.confidence:.4f}", *probs, h.rms_dbfs, h.model]
        writer.writerow(row)
    return out.getvalue()


def _export(hops: list[Hop], target: str) -> None:
    text = csv_text(hops)
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(target, text)
