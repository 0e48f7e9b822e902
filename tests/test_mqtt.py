"""The MQTT sink, Home Assistant discovery and the fleet view against a real Mosquitto (tests/broker.py):
no mocks. The daemon runs in-process for what it publishes, as a subprocess for what a kill -9, a
broker restart or a wrong password do to it."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console
from websockets.asyncio.client import connect

from streamer import cli
from streamer.audio.sources import build_source
from streamer.audio.synth import mood_audio
from streamer.commands.fleet import watch_fleet
from streamer.config import MqttSettings, ServerSettings, Settings, SourceSettings, block_seconds_for
from streamer.core.events import EventBus, StatusEvent
from streamer.daemon import Daemon
from streamer.model.runner import ModelRunner
from streamer.model.shipped import shipped_models_dir
from streamer.sinks import discovery
from streamer.sinks.dashboard import Fleet
from streamer.sinks.mqtt import MqttSink
from tests.broker import Broker, Recorder, free_port, needs_mosquitto, recording, self_signed, until
from tests.wire import emotion

pytestmark = needs_mosquitto
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "home-assistant.md"


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def sink_settings(broker: Broker, device: str, **kw: Any) -> MqttSettings:
    return MqttSettings(url=broker.url, client_id=device, **kw)


async def run_sink(sink: MqttSink, bus: EventBus) -> tuple[asyncio.Task[None], asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(bus, stop))
    await until(sink.connected.is_set, 10, "the sink to connect")
    return task, stop


def daemon_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    environment.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", "--source", "demo", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_process(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stderr.read() if proc.stderr else ""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def documented_fields() -> dict[str, list[str]]:
    """The entity table of docs/home-assistant.md: entity key -> the fields it documents."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 4 and cells[0] in discovery.ENTITIES:
            rows[cells[0]] = [f.strip().strip("`") for f in cells[3].split(",")]
    return rows


def test_discovery_configs_parse_and_carry_the_documented_fields(broker: Broker) -> None:
    async def main() -> None:
        bus = EventBus()
        settings = sink_settings(broker, "Living Room")
        sink = MqttSink(settings, "tiny", -50.0)
        task, stop = await run_sink(sink, bus)
        bus.publish(emotion(0, "happy"))
        async with recording(broker, "moodstream/living_room/attributes") as first:
            await until(lambda: first.messages, 10, "the attributes")
        stop.set()
        await asyncio.wait_for(task, 10)
        # a subscriber that comes later gets everything from the broker's retained store
        async with recording(broker, "homeassistant/#", "moodstream/#") as rec:
            await until(lambda: len(rec.messages) >= 7, 10, "four configs, state, attributes, availability")

        configs = {t: json.loads(p) for t, p, retained in rec.messages if t.startswith("homeassistant/") and retained}
        assert set(configs) == {
            "homeassistant/sensor/living_room/mood/config",
            "homeassistant/sensor/living_room/confidence/config",
            "homeassistant/sensor/living_room/level/config",
            "homeassistant/binary_sensor/living_room/playing/config",
        }
        documented = documented_fields()
        assert set(documented) == set(discovery.ENTITIES)
        by_key = {topic.split("/")[3]: config for topic, config in configs.items()}
        for key, config in by_key.items():
            missing = [f for f in documented[key] if f not in config]
            assert not missing, f"{key} lacks documented fields {missing}"
            assert config["availability_topic"] == "moodstream/living_room/availability"
            assert config["device"] == by_key["mood"]["device"]  # one device block
        assert len({c["unique_id"] for c in configs.values()}) == 4
        assert by_key["mood"]["device"]["identifiers"] == ["moodstream_living_room"]
        assert by_key["mood"]["state_topic"] == "moodstream/living_room/state"
        assert by_key["mood"]["json_attributes_topic"] == "moodstream/living_room/attributes"
        # the templates read fields that the attributes carry
        attributes = json.loads(rec.payloads("moodstream/living_room/attributes")[0])
        for key in ("confidence", "level_dbfs", "playing"):
            assert any(f"value_json.{key}" in c.get("value_template", "") for c in configs.values())
            assert key in attributes

    asyncio.run(main())


@pytest.mark.slow
def test_state_and_attributes_arrive_for_a_file_source(broker: Broker, tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    audio = np.concatenate([mood_audio("angry", 13.0), np.zeros(3 * 16000, np.float32)])  # 13 s music, 3 s silence
    sf.write(clip, audio, 16000)
    settings = Settings(
        source=SourceSettings(kind="file", path=str(clip)),
        server=ServerSettings(enabled=False),
        mqtt=sink_settings(broker, "kitchen"),
    )

    async def main() -> Daemon:
        runner = ModelRunner(shipped_models_dir() / "moodstream-3class.tflite")  # its 10 s window
        source = build_source(dataclasses.replace(settings.source, block_seconds=block_seconds_for(settings)))
        daemon = Daemon(settings, runner, source)
        async with recording(broker, "moodstream/kitchen/#") as rec:
            await asyncio.wait_for(daemon.run(asyncio.Event()), 60)
            await until(lambda: "offline" in rec.payloads("moodstream/kitchen/availability"), 10, "offline")
        daemon.rec = rec  # type: ignore[attr-defined]
        return daemon

    daemon = asyncio.run(main())
    rec: Recorder = daemon.rec  # type: ignore[attr-defined]
    attributes = [json.loads(p) for p in rec.payloads("moodstream/kitchen/attributes")]
    states = rec.payloads("moodstream/kitchen/state")
    assert [a["seq"] for a in attributes] == list(range(16))  # every hop, none lost
    assert states[:9] == ["warming_up"] * 9 and states[-3:] == ["silence"] * 3  # the window is 10 s
    # the state is the claimed label or "uncertain" (no label): the first classified hop claims none
    # yet (a label must lead clearly for switch_hops = 2 hops), and by the last music hop one is claimed
    assert states[9] == "uncertain" and states[12] in ("angry", "happy", "sad"), states
    for state, attrs in zip(states[9:13], attributes[9:13], strict=True):
        assert set(attrs["probabilities"]) == {"angry", "happy", "sad"} and attrs["state"] in ("uncertain", "emotion")
        if state == "uncertain":
            assert attrs["label"] is None and attrs["confidence"] == 0 and attrs["color"] == "#9e9e9e"
        else:
            assert state == attrs["label"] == max(attrs["probabilities"], key=attrs["probabilities"].get)
    last = daemon.bus.last_emotion
    assert last is not None and attributes[-1]["timestamp"] == last.timestamp
    emotional = attributes[12]
    assert emotional["playing"] is True and emotional["model"] == daemon.runner.name
    assert attributes[-1]["playing"] is False and attributes[-1]["level_dbfs"] == -120.0
    kinds = [json.loads(p)["kind"] for p in rec.payloads("moodstream/kitchen/status")]
    # the sinks subscribe before the source's first status, which waits in the outbox for the broker
    assert sorted(kinds[:2]) == ["mqtt_connected", "source_connected"] and kinds[-1] == "stopped"
    assert rec.payloads("moodstream/kitchen/availability") == ["online", "offline"]
    counters = daemon.describe()["counters"]
    assert counters["mqtt_published"] >= 16 * 2 and counters["mqtt_dropped"] == 0


def test_a_broker_that_is_away_costs_a_bounded_queue_and_the_oldest_messages(tmp_path: Path) -> None:
    """Broker down from the start: the sink keeps retrying, the bus never waits, the outbox stays at its size."""
    settings = MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}", queue=50, backoff_initial_s=0.05, backoff_max_s=0.2)

    async def main() -> MqttSink:
        bus, stop = EventBus(), asyncio.Event()
        sink = MqttSink(settings, "tiny", -50.0)
        task = asyncio.create_task(sink.run(bus, stop))
        await asyncio.sleep(0.1)
        tracemalloc.start()
        for seq in range(200):  # warm-up: the outbox fills
            bus.publish(emotion(seq))
            await asyncio.sleep(0)
        before = tracemalloc.take_snapshot()
        started = time.perf_counter()
        for seq in range(200, 5200):
            bus.publish(emotion(seq))
            await asyncio.sleep(0)
        publishing_s = time.perf_counter() - started
        growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        await until(lambda: sink.stats()["mqtt_connect_failures"] >= 3, 10, "retries")
        stop.set()
        await asyncio.wait_for(task, 10)
        assert growth < 200_000, f"memory grew by {growth} bytes over 5000 hops"
        assert publishing_s < 5.0
        return sink

    sink = asyncio.run(main())
    stats = sink.stats()
    assert stats["mqtt_queued"] == 50 and len(sink.outbox) == 50
    # each hop the sink took is two messages (state, attributes), plus one status event per failed
    # attempt; all but the newest 50 were dropped, and counted
    made = 2 * (5200 - stats["mqtt_missed_events"])
    assert made > 5000 and 0 <= stats["mqtt_dropped"] + 50 - made <= stats["mqtt_connect_failures"]
    assert stats["mqtt_published"] == 0 and stats["mqtt_connects"] == 0


@pytest.mark.slow
def test_the_last_will_says_offline_when_the_daemon_is_killed(broker: Broker) -> None:
    async def main() -> None:
        async with recording(broker, "moodstream/den/availability") as rec:
            proc = daemon_process("--no-server", "--mqtt", broker.url, "--mqtt-client-id", "den")
            try:
                await until(lambda: rec.payloads("moodstream/den/availability")[-1:] == ["online"], 30, "online")
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                killed = time.monotonic()
                await until(lambda: rec.payloads("moodstream/den/availability")[-1:] == ["offline"], 10, "the will")
                assert time.monotonic() - killed < 5
            finally:
                stop_process(proc)
        async with recording(broker, "moodstream/den/availability") as late:  # and it is retained
            await until(lambda: late.messages == [("moodstream/den/availability", "offline", True)], 5, "retained")

    asyncio.run(main())


@pytest.mark.slow
def test_publishing_resumes_after_the_broker_is_away_for_5_s(broker: Broker) -> None:
    async def main() -> None:
        proc = daemon_process("--no-server", "--hop", "0.25", "--mqtt", broker.url, "--mqtt-client-id", "attic")
        try:
            async with recording(broker, "moodstream/attic/#") as rec:
                await until(lambda: len(rec.payloads("moodstream/attic/attributes")) >= 40, 60, "10 s of hops")
            rss_before = rss_kib(proc.pid)
            last_seq = json.loads(rec.payloads("moodstream/attic/attributes")[-1])["seq"]
            broker.stop()
            await asyncio.sleep(5)
            broker.start()
            back = time.monotonic()
            async with recording(broker, "moodstream/attic/#", "homeassistant/#") as after:
                await until(
                    lambda: any(json.loads(p)["seq"] > last_seq for p in after.payloads("moodstream/attic/attributes")),
                    10,
                    "a new hop within 10 s of the broker's return",
                )
                resumed_s = time.monotonic() - back
                await until(lambda: len(after.payloads("moodstream/attic/attributes")) >= 40, 30, "10 s more")
            assert proc.poll() is None, "the daemon died"
            rss_after = rss_kib(proc.pid)
            # the broker had no persistence: discovery and the retained state came back from the daemon
            assert len([t for t, _, _ in after.messages if t.startswith("homeassistant/")]) >= 4
            assert "online" in after.payloads("moodstream/attic/availability")
            kinds = [json.loads(p)["kind"] for p in after.payloads("moodstream/attic/status")]
            assert "mqtt_connected" in kinds
            assert rss_after - rss_before < 4096, f"RSS grew from {rss_before} to {rss_after} KiB"
            print(f"resumed {resumed_s:.1f} s after the broker's return; RSS {rss_before} -> {rss_after} KiB")
        finally:
            err = stop_process(proc)
        assert proc.returncode == 0, err
        assert "lost MQTT broker" in err and "reconnected to MQTT broker" in err
        assert "Traceback" not in err

    asyncio.run(main())


@pytest.mark.slow
def test_a_wrong_password_is_one_clear_line_while_websocket_clients_are_served(tmp_path: Path) -> None:
    broker = Broker(tmp_path, users={"alice": "right"})
    broker.start()
    port = free_port()
    proc = daemon_process(
        "--port",
        str(port),
        "--hop",
        "0.5",
        "--mqtt",
        broker.url,
        "--mqtt-username",
        "alice",
        env={"MOODSTREAM_MQTT_PASSWORD": "wrong"},
    )

    async def main() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while True:
            try:
                async with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
                    async with asyncio.timeout(30):
                        async for text in ws:
                            seen.append(json.loads(text))
                            emotions = [m for m in seen if m["type"] == "emotion"]
                            if len(emotions) >= 4 and any(m.get("kind") == "mqtt_auth_failed" for m in seen):
                                return seen
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

        # and the right password does connect (the broker is not simply refusing everyone)

    try:
        seen = asyncio.run(main())

        async def right() -> None:
            sink = MqttSink(MqttSettings(url=broker.url, username="alice", password="right", client_id="ok"), "t", -50)
            task, stop = await run_sink(sink, EventBus())
            stop.set()
            await asyncio.wait_for(task, 10)

        asyncio.run(right())
    finally:
        err = stop_process(proc)
        broker.stop()
    failure = next(m for m in seen if m.get("kind") == "mqtt_auth_failed")
    assert "refused the credentials (user 'alice')" in failure["message"]
    lines = [line for line in err.splitlines() if "refused the credentials" in line]
    assert len(lines) == 1, err  # rate-limited: one line, though it retried
    assert "MOODSTREAM_MQTT_PASSWORD" in lines[0] and "wrong" not in lines[0]
    assert proc.returncode == 0 and "Traceback" not in err


def test_watch_mqtt_shows_every_device_on_the_broker(broker: Broker) -> None:
    async def main() -> str:
        sinks = {}
        for device, label in (("room-a", "happy"), ("room-b", "sad")):
            bus = EventBus()
            sink = MqttSink(sink_settings(broker, device), "tiny", -50.0)
            sinks[device] = (*await run_sink(sink, bus), bus)
            bus.publish(emotion(1, label))
        console = Console(width=120, record=True, force_terminal=True, file=io.StringIO())
        fleet, stop = Fleet(broker.url), asyncio.Event()
        settings = MqttSettings(url=broker.url, client_id="watcher")
        watching = asyncio.create_task(watch_fleet(settings, console, stop, print, fleet))

        def shown(device: str, key: str, value: Any) -> bool:
            row = fleet.devices.get(device, {})
            return row.get(key) == value or row.get("attributes", {}).get(key) == value

        await until(lambda: shown("room-a", "label", "happy") and shown("room-b", "label", "sad"), 10, "two rows")
        await until(lambda: shown("room-a", "availability", "online"), 5, "availability")
        await asyncio.sleep(0.6)  # one refresh of the screen
        first = console.export_text()
        task, sink_stop, _ = sinks["room-b"]
        sink_stop.set()  # room-b goes away cleanly: offline
        await asyncio.wait_for(task, 10)
        await until(lambda: shown("room-b", "availability", "offline"), 10, "room-b offline")
        await asyncio.sleep(0.6)
        stop.set()
        await asyncio.wait_for(watching, 10)
        task, sink_stop, _ = sinks["room-a"]
        sink_stop.set()
        await asyncio.wait_for(task, 10)
        return first + "\n=====\n" + console.export_text()

    screens = asyncio.run(main())
    first, last = screens.split("\n=====\n")
    assert "2 devices" in first
    row_a = next(line for line in first.splitlines() if "room-a" in line)
    row_b = next(line for line in first.splitlines() if "room-b" in line)
    assert "HAPPY" in row_a and "80%" in row_a and "-20.0" in row_a and "online" in row_a
    assert "SAD" in row_b and "online" in row_b
    assert "offline" in next(line for line in last.splitlines()[::-1] if "room-b" in line)


def test_mqtt_forget_clears_the_retained_discovery_and_state(
    broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    async def publish() -> int:
        bus = EventBus()
        sink = MqttSink(sink_settings(broker, "porch"), "tiny", -50.0)
        task, stop = await run_sink(sink, bus)
        bus.publish(emotion(0))
        async with recording(broker, "moodstream/porch/attributes") as rec:
            await until(lambda: rec.messages, 10, "attributes")
        stop.set()
        await asyncio.wait_for(task, 10)
        async with recording(broker, "homeassistant/#", "moodstream/#") as before:
            await until(lambda: len(before.messages) >= 7, 5, "the retained topics")
        return len(before.messages)

    async def left() -> list[tuple[str, str, bool]]:
        async with recording(broker, "homeassistant/#", "moodstream/#") as after:
            await asyncio.sleep(1.0)
        return after.messages

    assert asyncio.run(publish()) == 7
    assert cli.main(["mqtt-forget", "--mqtt", broker.url, "--mqtt-client-id", "porch"]) == 0
    out = capsys.readouterr().out
    assert "cleared homeassistant/sensor/porch/mood/config" in out and len(out.splitlines()) == 7
    assert asyncio.run(left()) == []
    assert cli.main(["mqtt-forget"]) == 2
    assert "no broker: give --mqtt URL" in capsys.readouterr().err


def test_tls_with_the_right_ca_connects_and_a_wrong_one_is_a_clear_failure(tmp_path: Path) -> None:
    broker = Broker(tmp_path, tls=True)
    broker.start()
    other_ca = self_signed(tmp_path, "someone-else")

    async def main() -> list[StatusEvent]:
        right = MqttSink(sink_settings(broker, "tls-ok", ca_file=str(broker.ca_file)), "tiny", -50.0)
        task, stop = await run_sink(right, EventBus())
        stop.set()
        await asyncio.wait_for(task, 10)
        bus = EventBus()
        seen = bus.subscribe(100)
        wrong = MqttSink(sink_settings(broker, "tls-wrong", ca_file=str(other_ca)), "tiny", -50.0)
        stop = asyncio.Event()
        task = asyncio.create_task(wrong.run(bus, stop))
        await until(lambda: wrong.stats()["mqtt_connect_failures"] >= 1, 10, "a failed attempt")
        stop.set()
        await asyncio.wait_for(task, 10)
        events = []
        while seen.pending():
            events.append(await seen.get())
        return [e for e in events if isinstance(e, StatusEvent)]

    try:
        statuses = asyncio.run(main())
    finally:
        broker.stop()
    failed = [e for e in statuses if e.kind == "mqtt_tls_failed"]
    assert failed and "TLS with MQTT broker mqtts://127.0.0.1" in failed[0].message
    assert "CERTIFICATE_VERIFY_FAILED" in failed[0].message


@pytest.mark.slow
def test_the_fleet_benchmark_counts_every_hop() -> None:
    from bench import mqtt_load

    result = mqtt_load.measure(4, 2, processes=2)
    assert result["connected"] == 4 and result["published_hops"] == 8 and result["publisher_processes"] == 2
    assert result["received_hops"] + result["lost"] == 8 and result["duplicates"] == 0
    assert 0 <= result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]


@pytest.mark.slow
def test_watch_mqtt_without_a_terminal_prints_a_line_per_device_message(broker: Broker) -> None:
    async def main() -> str:
        sinks = []
        for device, label in (("hall", "angry"), ("study", "sad")):
            bus = EventBus()
            sink = MqttSink(sink_settings(broker, device), "tiny", -50.0)
            sinks.append(await run_sink(sink, bus))
            bus.publish(emotion(3, label))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamer.cli",
            "watch",
            broker.url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        lines: list[str] = []
        try:
            async with asyncio.timeout(30):
                while not ({"hall angry 0.80 rms -20.0 dBFS", "study sad 0.80 rms -20.0 dBFS"} <= set(lines)):
                    assert proc.stdout is not None
                    lines.append((await proc.stdout.readline()).decode().strip())
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            for task, stop in sinks:
                stop.set()
                await asyncio.wait_for(task, 10)
        return "\n".join(lines)

    text = asyncio.run(main())
    assert "hall online" in text and "study online" in text
    assert "\x1b[" not in text


def test_watch_mqtt_gives_up_on_refused_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = Broker(tmp_path, users={"viewer": "right"})
    broker.start()
    monkeypatch.setenv("MOODSTREAM_MQTT_PASSWORD", "wrong")
    try:
        assert cli.main(["watch", broker.url, "--mqtt-username", "viewer"]) == 2
    finally:
        broker.stop()
    assert "refused the credentials (user 'viewer')" in capsys.readouterr().err
