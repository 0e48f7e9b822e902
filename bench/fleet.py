"""A fleet of rooms on one broker, through helper script ``bench.mqtt_load``: N simulated daemons
(the real ``streamer.sinks.mqtt.MqttSink``) publishing at 1 Hz to one local Mosquitto, in one process per
core; delivery latency to one subscriber and lost hops, at 50 and 500 devices."""

from __future__ import annotations

from bench import mqtt_load
from bench.common import Section, Skipped, fmt, table


def run(quick: bool = False) -> Section:
    seconds = 3 if quick else 30
    try:
        results = [mqtt_load.measure(n, seconds) for n in ((5,) if quick else (50, 500))]
    except mqtt_load.Skip as exc:
        raise Skipped(str(exc)) from None
    rows = [
        [
            r["devices"],
            r["connected"],
            r["published_hops"],
            r["lost"],
            r["dropped_by_sinks"],
            fmt(r["messages_per_s"]),
            fmt(r["latency_ms"]["p50"]) if r["latency_ms"] else "-",
            fmt(r["latency_ms"]["p99"]) if r["latency_ms"] else "-",
            fmt(r["latency_ms"]["max"]) if r["latency_ms"] else "-",
            fmt(r["broker_cpu_s"], 2),
            fmt(r["load_average"][0], 2),
        ]
        for r in results
    ]
    md = (
        f"`bench/mqtt_load.py`: a private Mosquitto (Debian's) on loopback; N simulated daemons, each the real "
        f"`MqttSink` with its own client id and EventBus, fed one synthetic hop per second for {seconds} s "
        f"(phases spread over the second) from {results[0]['publisher_processes']} publisher processes (one per "
        "core); each hop is two messages (state and attributes, retained) as the daemon sends them. One subscriber "
        "on `moodstream/+/attributes` records receipt minus the hop's wall-clock stamp (numpy percentiles); lost = "
        "hops published minus distinct hops received. QoS 0.\n\n"
        + table(
            [
                "devices",
                "connected",
                "hops published",
                "lost",
                "dropped by sinks",
                "messages/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "broker CPU s (whole run)",
                "load avg",
            ],
            rows,
        )
    )
    return Section("fleet", "A fleet of rooms on one MQTT broker (bench/mqtt_load.py)", {"runs": results}, md)
