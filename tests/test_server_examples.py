"""The examples against a real server: the minimal consumer, and the lighting one driving a
(loopback stand-in for a) WLED light through its JSON HTTP API."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from streamer.core.events import EventBus, to_dict
from streamer.sinks import protocol
from tests.wire import emotion, serving, url

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lighting = _load("lighting")
COLORS = {label: protocol.label_color(label) for label in ("angry", "happy", "sad")}


def test_colour_is_the_probability_weighted_mix_and_silence_dims() -> None:
    event = {"state": "emotion", "probabilities": {"angry": 0.0, "happy": 1.0, "sad": 0.0}}
    assert lighting.target_color(event, COLORS, lighting.OFF) == lighting.hex_to_rgb(COLORS["happy"])
    half = {"state": "emotion", "probabilities": {"angry": 0.5, "happy": 0.0, "sad": 0.5}}
    mixed = lighting.target_color(half, COLORS, lighting.OFF)
    a, s = lighting.hex_to_rgb(COLORS["angry"]), lighting.hex_to_rgb(COLORS["sad"])
    assert mixed == pytest.approx([(x + y) / 2 for x, y in zip(a, s, strict=True)])
    quiet = lighting.target_color({**event, "state": "silence"}, COLORS, lighting.OFF)
    assert max(quiet) < 0.1 * 255
    assert lighting.target_color({"state": "warming_up"}, COLORS, (1.0, 2.0, 3.0)) == (1.0, 2.0, 3.0)


def test_fader_gets_95_percent_of_the_way_in_the_fade_time() -> None:
    fader = lighting.Fader(1.0)
    fader.target = (200.0, 100.0, 0.0)
    first = fader.step(0.1)
    assert 0 < first[0] < 200  # smooth, not a jump
    for _ in range(9):
        rgb = fader.step(0.1)
    assert rgb[0] == pytest.approx(0.95 * 200, abs=2) and rgb[1] == pytest.approx(95, abs=2)


class _Wled(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, dict]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Wled.posts.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"success":true}')

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_lighting_fades_a_wled_light_to_the_mood() -> None:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Wled)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    mood = to_dict(emotion(0, "happy"))  # happy 0.8, angry and sad 0.1: mostly yellow
    target = [round(c) for c in lighting.target_color(mood, COLORS, lighting.OFF)]

    async def main() -> None:
        bus = EventBus()
        async with serving(bus, token="lt") as server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "examples" / "lighting.py"),
                url(server),
                "--token",
                "lt",
                "--wled",
                f"127.0.0.1:{http.server_address[1]}",
                "--fade",
                "0.3",
                "--rate",
                "20",
            )
            try:
                async with asyncio.timeout(30):
                    while server.client_count == 0:
                        await asyncio.sleep(0.05)
                    while not _Wled.posts or _Wled.posts[-1][1]["seg"][0]["col"][0] != target:
                        bus.publish(emotion(0, "happy"))
                        await asyncio.sleep(0.1)
            finally:
                proc.kill()
                await proc.wait()

    try:
        asyncio.run(main())
    finally:
        http.shutdown()
    path, body = _Wled.posts[-1]
    assert path == "/json/state" and body["on"] is True
    colours = [p[1]["seg"][0]["col"][0] for p in _Wled.posts]
    assert len(colours) > 3 and colours[0] != target  # it faded there, in steps


@pytest.mark.slow
def test_minimal_consumer_prints_the_label() -> None:
    async def main() -> str:
        bus = EventBus()
        async with serving(bus) as server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "examples" / "minimal.py"),
                url(server),
                stdout=asyncio.subprocess.PIPE,
            )
            try:
                async with asyncio.timeout(30):
                    while server.client_count == 0:
                        await asyncio.sleep(0.05)
                    bus.publish(emotion(7, "sad"))
                    return (await proc.stdout.readline()).decode()
            finally:
                proc.kill()
                await proc.wait()

    assert asyncio.run(main()).startswith("7 sad {'angry': 0.1")
