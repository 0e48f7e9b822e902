"""The [mqtt] settings: flags, the password's sources, refusals by name; what the sink makes of events
(no broker needed for that); and a daemon without [mqtt] never imports aiomqtt."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer import cli
from streamer.config import ConfigError, MqttSettings, load, overrides_from_args

ROOT = Path(__file__).resolve().parent.parent


def run_args(*argv: str):
    return cli.build_parser().parse_args(["run", *argv])


def test_the_mqtt_flag_turns_the_sink_on_and_the_password_comes_from_the_environment() -> None:
    args = run_args("--mqtt", "mqtt://broker.local", "--mqtt-username", "ms", "--mqtt-client-id", "Living Room")
    settings = load(None, overrides_from_args(args), {"MOODSTREAM_MQTT_PASSWORD": "pw"}).mqtt
    assert (settings.url, settings.username, settings.password) == ("mqtt://broker.local", "ms", "pw")
    assert settings.device_id == "living_room" and settings.topic == "moodstream/living_room"
    assert load(None, {}).mqtt == MqttSettings()  # off by default


def test_there_is_no_password_flag() -> None:
    with pytest.raises(SystemExit):
        run_args("--mqtt", "mqtt://b", "--mqtt-password", "x")


@pytest.mark.parametrize(
    "url, message",
    [
        ("mqtt://user:pw@broker", "no credentials in the URL"),
        ("http://broker", "expected mqtt://HOST"),
        ("mqtt://broker:99999", "not an MQTT URL"),
        ("mqtt://broker/topic", "only a host and a port"),
    ],
)
def test_bad_urls_are_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(None, {"mqtt": {"url": url}})


def test_a_config_file_with_the_password_must_not_be_world_readable(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[mqtt]\nurl = "mqtt://b"\nusername = "u"\npassword = "pw"\n')
    config.chmod(0o644)
    with pytest.raises(ConfigError, match="every user can read it: chmod 640"):
        load(config)
    config.chmod(0o640)
    assert load(config).mqtt.password == "pw"


def test_the_readme_mqtt_block_is_the_defaults(tmp_path: Path) -> None:
    for doc in (ROOT / "README.md", ROOT / "docs" / "home-assistant.md"):
        block = "[mqtt]\n" + doc.read_text().split("```toml\n[mqtt]\n", 1)[1].split("```", 1)[0]
        config = tmp_path / "config.toml"
        config.write_text(block)
        assert load(config).mqtt == MqttSettings(), doc


def test_the_password_is_not_in_the_daemons_snapshot(tmp_path: Path) -> None:
    from streamer.audio.sources import DemoSource
    from streamer.daemon import Daemon
    from streamer.model.runner import ModelRunner
    from streamer.model.shipped import default_model_path

    settings = load(None, {"mqtt": {"url": "mqtt://b", "username": "u", "password": "s3cret"}})
    daemon = Daemon(settings, ModelRunner(default_model_path()), DemoSource(0.25))
    assert "s3cret" not in repr(daemon.describe())


def test_a_daemon_without_mqtt_never_imports_aiomqtt(tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.zeros(16000, np.float32), 16000)
    code = (
        "import sys; from streamer import cli; "
        f"rc = cli.main(['run', '--source', 'file:{clip}', '--no-server']); "
        "print('aiomqtt' in sys.modules, 'paho' in sys.modules, rc)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert out.stdout.split() == ["False", "False", "0"], out.stderr


def test_publish_on_change_sends_a_state_change_and_otherwise_every_interval() -> None:
    from streamer.sinks.mqtt import MqttSink
    from tests.wire import emotion

    async def main() -> list[str]:  # the sink's outbox wants a running loop
        sink = MqttSink(MqttSettings(url="mqtt://b", client_id="x", publish="change", interval_s=0.2), "t", -50.0)
        for seq, label in enumerate(["happy", "happy", "happy", "sad", "sad"]):
            sink.offer(emotion(seq, label))
        await asyncio.sleep(0.25)
        sink.offer(emotion(5, "sad"))  # unchanged, but interval_s has passed
        sink.offer(emotion(6, "sad", state="silence"))
        states = []
        while sink.outbox:
            message = sink.outbox.peek()
            sink.outbox.pop()
            if message.topic.endswith("/attributes"):
                states.append(f"{json.loads(message.payload)['seq']}:{json.loads(message.payload)['state']}")
        return states

    assert asyncio.run(main()) == ["0:emotion", "3:emotion", "5:emotion", "6:silence"]


def test_an_uncertain_hop_publishes_the_state_uncertain_and_no_label() -> None:
    from streamer.sinks.mqtt import MqttSink
    from tests.wire import emotion

    async def main() -> list[tuple[str, str]]:  # the sink's outbox wants a running loop
        sink = MqttSink(MqttSettings(url="mqtt://b", client_id="x", publish="change"), "t", -50.0)
        for seq, (label, state) in enumerate([("happy", "emotion"), ("happy", "uncertain"), ("happy", "uncertain")]):
            sink.offer(emotion(seq, label, state=state))
        messages = []
        while sink.outbox:
            message = sink.outbox.peek()
            sink.outbox.pop()
            messages.append((message.topic.rsplit("/", 1)[1], message.payload))
        return messages

    messages = asyncio.run(main())
    assert [payload for topic, payload in messages if topic == "state"] == ["happy", "uncertain"]  # a change, once
    uncertain = json.loads([payload for topic, payload in messages if topic == "attributes"][-1])
    assert uncertain["state"] == "uncertain" and uncertain["label"] is None and uncertain["confidence"] == 0
    assert uncertain["color"] == "#9e9e9e" and uncertain["probabilities"] == {"angry": 0.32, "happy": 0.38, "sad": 0.3}
