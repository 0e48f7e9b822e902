"""The WebSocket server alone under load, through helper script ``bench.ws_load``: the real
``streamer.sinks.server.Server`` publishing synthetic events (no audio, no model) to 100 and 500 loopback
clients in two client processes; missed hops and latency from publish to receipt."""

from __future__ import annotations

from bench import ws_load
from bench.common import Section, fmt, table


def run(quick: bool = False) -> Section:
    hops, hop = (3, 0.25) if quick else (20, 0.5)
    results = [ws_load.measure(n, hops, hop) for n in ((5,) if quick else (100, 500))]
    rows = [
        [
            r["clients"],
            r["connected"],
            r["messages"],
            r["missed_hops"],
            r["dropped_by_server"],
            fmt(r["latency_ms"]["p50"]) if r["latency_ms"] else "-",
            fmt(r["latency_ms"]["p99"]) if r["latency_ms"] else "-",
            fmt(r["latency_ms"]["max"]) if r["latency_ms"] else "-",
            fmt(r["load_average"][0], 2),
        ]
        for r in results
    ]
    md = (
        f"`bench/ws_load.py`: a server process runs `streamer.sinks.server.Server` on an EventBus and publishes one "
        f"synthetic emotion event every {hop:g} s ({hops} hops); clients in {results[0]['client_processes']} "
        "processes record receipt minus the event's wall-clock stamp (numpy percentiles). This isolates the "
        "fan-out; the end-to-end figure with the pipeline is the latency section above.\n\n"
        + table(
            [
                "clients",
                "connected",
                "messages",
                "missed hops",
                "dropped by server",
                "p50 ms",
                "p99 ms",
                "max ms",
                "load avg",
            ],
            rows,
        )
    )
    return Section("fanout", "WebSocket fan-out under load (bench/ws_load.py)", {"runs": results}, md)
