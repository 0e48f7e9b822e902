"""The adversarial suite's numbers (issue 17): tests/test_adversarial.py run with
MOODSTREAM_ADVERSARIAL_LOG, each case's JSON line turned into a table row and the issue's targets.

    python -m bench --only adversarial      # about 2 minutes; needs PulseAudio for two cases
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, Section, Skipped, table, target

HOP_S = 0.5  # tests/test_adversarial.py's hop
FLOODS = ("get_state", "ping", "headers", "idle")
WHAT = {
    "get_state": "8 connections from one address flood get_state (bursts of 500, reconnecting)",
    "ping": "the same with protocol pings",
    "headers": "150 connections from 150 addresses, 1 MiB of never-ending headers each",
    "idle": "150 idle connections from one address (half handshaking, half open)",
}


def run(quick: bool = False) -> Section:
    if quick:
        raise Skipped("the adversarial suite runs a real daemon for minutes: not in --quick")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "adversarial.jsonl"
        env = dict(os.environ, MOODSTREAM_ADVERSARIAL_LOG=str(log))
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_adversarial.py"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if not records:
        raise RuntimeError(f"the suite recorded nothing: {done.stdout[-2000:]}")
    section = section_from(records)
    section.data["pytest_exit"] = done.returncode
    return section


def section_from(records: list[dict[str, Any]]) -> Section:
    """The section for these records (the last of each case counts)."""
    cases = {r["case"]: r for r in records}
    rows, targets = [], []
    for name in FLOODS:
        r = cases.get(name)
        if r is None:
            continue
        rows.append(
            [
                WHAT[name],
                str(r["hops"]),
                str(r["missing"]),
                f"{r['max_gap_s']:.2f} s ({r['max_gap_s'] / HOP_S:.2f} hops)",
                f"{r['rss_before_mib']:.1f} / {r['rss_end_of_attack_mib']:.1f} / {r['rss_after_mib']:.1f}",
                f"{r['sigterm_s']:.2f} s",
                str(r.get("load_1min", "")),
            ]
        )
        targets.append(target(f"largest gap a bystander sees, {name} attack", r["max_gap_s"] / HOP_S, 1.5, "hops"))
        targets.append(target(f"hops missing, {name} attack", r["missing"], 0, "hops"))
        targets.append(
            target(
                f"RSS growth once settled (≤ 30 s) after the {name} attack",
                r["rss_after_mib"] - r["rss_before_mib"],
                10,
                "MiB",
            )
        )
    markdown = [
        "`tests/test_adversarial.py` (`make test` runs it): `moodstream run --source demo` with the "
        f"shipped 4-class model and a hop of {HOP_S:g} s, at its default log level, attacked by "
        "`tests/hostile.py` in a process of its own from 127.0.0.2 (or 127.0.x.y) while a bystander "
        "client on 127.0.0.1 records when each event arrives. Gap = the longest time between two "
        "events the bystander received; RSS of the daemon before the attack, at its end, and once "
        "settled (within 30 s).",
        "",
        table(
            ["attack", "hops seen", "missing", "largest gap", "RSS before / end / after MiB", "SIGTERM", "load avg"],
            rows,
        ),
    ]
    lines = []
    if "pulse_frozen_12s" in cases:
        r = cases["pulse_frozen_12s"]
        lines.append(
            f"- PulseAudio (the null-sink harness) stopped with SIGSTOP for 12 s, then resumed: statuses "
            f"{', '.join(r['statuses'])}; the first event {r['events_back_s']:.2f} s after the resume "
            f"(target ≤ 10 s); SIGTERM afterwards {r['sigterm_s']:.2f} s."
        )
        targets.append(target("events resume after a 12 s sound-server freeze", r["events_back_s"], 10, "s"))
    for key, what in (
        ("sigterm_stuck_open", "SIGTERM while the first open hangs in a frozen PulseAudio"),
        ("sigterm_frozen_server", "SIGTERM while PulseAudio is frozen mid-run (a close abandoned and stuck)"),
    ):
        if key in cases:
            r = cases[key]
            lines.append(f"- {what}: exit {r['exit']} after {r['sigterm_s']:.2f} s (target ≤ 2 s).")
            targets.append(target(what, cases[key]["sigterm_s"], 2, "s"))
    if "stdin_reset" in cases:
        r = cases["stdin_reset"]
        lines.append(
            f"- stdin a TCP socket reset by its peer: `{r['status']}` {r['seconds_to_status']:.2f} s later, "
            f"exit {r['exit']}."
        )
    if "model_3gb" in cases:
        lines.append(f"- a 3 GB `--model`: refused (exit 2) after {cases['model_3gb']['seconds']:.2f} s, unread.")
    if "sighup" in cases:
        r = cases["sighup"]
        lines.append(
            f"- SIGHUP: stopped and running again (same process), its first hop "
            f"{r['restart_to_first_hop_s']:.2f} s later; with the config made wrong, SIGHUP is refused "
            "(`reload_failed`, the key named) and the daemon runs on; fixed, the next SIGHUP restarts it."
        )
    if "sighup_storm" in cases:
        r = cases["sighup_storm"]
        lines.append(
            f"- {r['signals']} SIGHUPs (20 at 50 ms, then pairs 0.1 to 0.3 s apart): still running, the same "
            f"process ({r['restarts_seen']} restarts seen), SIGTERM afterwards {r['sigterm_s']:.2f} s."
        )
    if "sigterm_history_locked" in cases:
        r = cases["sigterm_history_locked"]
        lines.append(
            f"- SIGTERM while another process holds the history database locked: exit {r['exit']} after "
            f"{r['sigterm_s']:.2f} s (the unit's TimeoutStopSec is 15 s), {r['rows_spooled']} rows spooled "
            "and written at the next start."
        )
        targets.append(target("SIGTERM while the history database is locked", r["sigterm_s"], 7.5, "s"))
    if "malformed_get_history" in cases:
        codes = ", ".join(str(c) for c in cases["malformed_get_history"]["codes"])
        lines.append(
            f"- get_history with `to` a string, null, [1], an object or 1e999: errors {codes}; connection kept."
        )
    if "escape_in_mark" in cases:
        code = cases["escape_in_mark"]["mark_exit"]
        lines.append(
            f"- a mark holding escape sequences: refused (`moodstream mark` exit {code}); "
            "`moodstream watch` piped printed no control character."
        )
    if "history_week_4_clients" in cases:
        r = cases["history_week_4_clients"]
        lines.append(
            f"- 4 clients ask for a week of history at once ({r['hops']:,} hops, 2000 bins): replies in "
            f"{r['reply_s']:.2f} s, the daemon's RSS +{r['rss_growth_mib']:.1f} MiB at its peak, a bystander's "
            f'largest gap between hops {r["max_gap_s"]:.2f} s (hops 1 s apart; the month: "A month of history" below).'
        )
    if lines:
        markdown += ["", *lines]
    return Section(
        "adversarial",
        "Hostile clients and a frozen sound server (issue 17)",
        {"cases": cases},
        "\n".join(markdown),
        targets,
    )
