"""The discovery payloads against Home Assistant's own MQTT discovery rules, restated here as data
from its documentation and source (November 2026; home-assistant/home-assistant.io
source/_integrations/{sensor,binary_sensor}.mqtt.markdown and mqtt.markdown; home-assistant/core
homeassistant/components/mqtt/{sensor,entity}.py): the keys each platform documents (a key it does
not know is dropped without a word), the abbreviations its discovery expands, the enum sensor's
rules, the attribute names it keeps for itself, and a valid entity id. Plus what HA would show:
each value template rendered (with Jinja, as HA does) on real attributes."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from streamer.config import MqttSettings
from streamer.model.metadata import read_metadata
from streamer.model.shipped import shipped
from streamer.sinks import discovery
from streamer.sinks.mqtt import attributes, state_of
from tests.wire import emotion

DOCS = Path(__file__).resolve().parents[1] / "docs" / "home-assistant.md"

# keys every MQTT entity documents (availability, device, naming, attributes...)
COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic", "default_entity_id",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture",
    "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic", "name",
    "object_id", "origin", "payload_available", "payload_not_available", "platform", "qos", "state_topic",
    "unique_id", "value_template",
}  # fmt: skip
DOCUMENTED = {
    "sensor": COMMON | {"last_reset_value_template", "options", "state_class", "suggested_display_precision",
                        "unit_of_measurement"},
    "binary_sensor": COMMON | {"off_delay", "payload_off", "payload_on"},
}  # fmt: skip
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}}
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id", "name",
    "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
# the documented abbreviations of the keys above (discovery expands them before validating)
ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "def_ent_id": "default_entity_id", "dev": "device",
    "dev_cla": "device_class", "e": "encoding", "en": "enabled_by_default", "ent_cat": "entity_category",
    "ent_pic": "entity_picture", "exp_aft": "expire_after", "frc_upd": "force_update", "ic": "icon",
    "json_attr_t": "json_attributes_topic", "json_attr_tpl": "json_attributes_template",
    "lrst_val_tpl": "last_reset_value_template", "name": "name", "o": "origin", "obj_id": "object_id",
    "off_dly": "off_delay", "ops": "options", "p": "platform", "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available", "pl_off": "payload_off", "pl_on": "payload_on", "qos": "qos",
    "stat_cla": "state_class", "stat_t": "state_topic", "sug_dsp_prc": "suggested_display_precision",
    "uniq_id": "unique_id", "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template",
}  # fmt: skip
DEVICE_ABBREVIATIONS = {
    "cns": "connections", "cu": "configuration_url", "hw": "hw_version", "ids": "identifiers",
    "mf": "manufacturer", "mdl": "model", "mdl_id": "model_id", "name": "name", "sa": "suggested_area",
    "sn": "serial_number", "sw": "sw_version", "via_device": "via_device",
}  # fmt: skip
ORIGIN_ABBREVIATIONS = {"name": "name", "sw": "sw_version", "url": "support_url"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
BINARY_SENSOR_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas",
    "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power",
    "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}  # fmt: skip
# JSON attribute names the MQTT integration keeps for itself (entity.py MQTT_ATTRIBUTES_BLOCKED,
# sensor.py MQTT_SENSOR_ATTRIBUTES_BLOCKED): such an attribute is dropped
ATTRIBUTES_BLOCKED = {
    "assumed_state", "available", "device_class", "device_info", "entity_category", "entity_picture",
    "entity_registry_enabled_default", "extra_state_attributes", "force_update", "friendly_name", "icon",
    "should_poll", "state", "supported_features", "unique_id", "unit_of_measurement", "last_reset", "state_class",
}  # fmt: skip
ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")  # core's valid_entity_id
DISCOVERY_TOPIC = re.compile(r"^[^/]+/(sensor|binary_sensor)/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$")


def expand(payload: dict[str, Any]) -> dict[str, Any]:
    """What discovery does first: every abbreviated key (also in the device and origin blocks) to its name."""
    out = {ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    for key, table in (("device", DEVICE_ABBREVIATIONS), ("origin", ORIGIN_ABBREVIATIONS)):
        if isinstance(out.get(key), dict):
            out[key] = {table.get(k, k): v for k, v in out[key].items()}
    return out


def ha_refusals(component: str, config: dict[str, Any]) -> list[str]:
    """Why Home Assistant would refuse (or silently cut) a discovery config; empty when it takes it whole."""
    problems = [f"unknown key {k} (dropped)" for k in config if k not in DOCUMENTED[component]]
    problems += [f"missing {k}" for k in REQUIRED[component] - set(config)]
    if "availability" in config and "availability_topic" in config:
        problems.append("availability and availability_topic together")
    device = config.get("device", {})
    problems += [f"unknown device key {k}" for k in device if k not in DEVICE_KEYS]
    if device and not (device.get("identifiers") or device.get("connections")):
        problems.append("a device needs identifiers or connections")
    origin = config.get("origin", {})
    problems += [f"unknown origin key {k}" for k in origin if k not in ORIGIN_KEYS]
    if origin and "name" not in origin:
        problems.append("origin needs a name")
    if (entity := config.get("default_entity_id")) is not None and (
        not ENTITY_ID.match(entity) or entity.split(".")[0] != component
    ):
        problems.append(f"default_entity_id {entity!r} is not a {component} entity id as given")
    if component == "binary_sensor" and config.get("device_class") not in (None, *BINARY_SENSOR_CLASSES):
        problems.append("unknown binary_sensor device_class")
    if component == "sensor":
        problems += sensor_rules(config)
    return problems


def sensor_rules(config: dict[str, Any]) -> list[str]:
    """components/mqtt/sensor.py validate_sensor_state_and_device_class_config, and the sensor entity's
    own rules for an enum (options are strings; a state outside them is an error)."""
    problems = []
    if config.get("state_class") not in (None, *STATE_CLASSES):
        problems.append("unknown state_class")
    options = config.get("options")
    if options is not None:
        if not options:
            problems.append("an empty options list is not allowed")
        if config.get("state_class") or config.get("unit_of_measurement"):
            problems.append("options together with state_class or unit_of_measurement")
        if config.get("device_class") != "enum":
            problems.append("options without device_class enum")
        if not all(isinstance(o, str) for o in options) or len(set(options)) != len(options):
            problems.append("options must be distinct strings")
    if config.get("device_class") == "enum" and (options is None or config.get("unit_of_measurement")):
        problems.append("an enum sensor needs options and no unit")
    return problems


def all_configs() -> list[tuple[str, str, dict[str, Any], tuple[str, ...]]]:
    """(topic, component, expanded config, labels) for device ids of every shape and every shipped model."""
    out = []
    labels_of = sorted({read_metadata(path).labels for path in shipped().values()})
    for client_id in ("", "Living Room", "living-room-pi", "raspberrypi"):
        for labels in labels_of:
            settings = MqttSettings(url="mqtt://b", client_id=client_id)
            for topic, config in discovery.configs(settings, "moodstream-test", labels).items():
                out.append((topic, topic.split("/")[1], expand(config), labels))
    return out


def test_home_assistant_takes_every_discovery_config_whole() -> None:
    for topic, component, config, _ in all_configs():
        assert DISCOVERY_TOPIC.match(topic), topic
        assert ha_refusals(component, config) == [], (topic, config)


def test_the_mood_is_an_enum_whose_options_hold_every_state_the_sink_publishes() -> None:
    for topic, _, config, labels in all_configs():
        if not topic.endswith("/mood/config"):
            continue
        assert config["device_class"] == "enum"
        published = {state_of(emotion(0, label, "emotion")) for label in labels}
        published |= {state_of(emotion(0, "happy", s)) for s in ("uncertain", "silence", "warming_up")}
        assert published == set(config["options"]), (published, config["options"])


def test_the_rule_copy_refuses_what_home_assistant_refuses() -> None:
    """The checker itself: each rule catches the mistake it is about."""
    good = expand(next(c for t, _, c, _ in all_configs() if t.endswith("/mood/config")))
    bad = {
        "options without enum": {**good, "device_class": None},
        "options with a unit": {**good, "unit_of_measurement": "%"},
        "empty options": {**good, "options": []},
        "unknown key": {**good, "color": "#fff"},
        "no state topic": {k: v for k, v in good.items() if k != "state_topic"},
        "hyphen in the entity id": {**good, "default_entity_id": "sensor.moodstream_living-room_mood"},
        "wrong domain": {**good, "default_entity_id": "binary_sensor.moodstream_x_mood"},
        "device without ids": {**good, "device": {"name": "x"}},
    }
    for why, config in bad.items():
        assert ha_refusals("sensor", config), why
    assert expand({"stat_t": "a", "dev": {"ids": ["x"]}, "o": {"sw": "1"}}) == {
        "state_topic": "a",
        "device": {"identifiers": ["x"]},
        "origin": {"sw_version": "1"},
    }


def test_attributes_keep_their_names_in_home_assistant_and_templates_render() -> None:
    sandbox = pytest.importorskip("jinja2.sandbox")
    env = sandbox.ImmutableSandboxedEnvironment()  # Home Assistant renders templates in Jinja's sandbox
    settings = MqttSettings(url="mqtt://b", client_id="raspberrypi")
    configs = {t.split("/")[3]: c for t, c in discovery.configs(settings, "m", ("angry", "happy", "sad")).items()}
    for event in (emotion(3, "sad"), emotion(4, state="uncertain"), emotion(5, state="silence")):
        attrs = attributes(event, silence_dbfs=-50.0 if event.state != "silence" else 0.0)
        assert set(attrs) & ATTRIBUTES_BLOCKED == {"state"}  # the entity's own state, shown as its state
        assert attrs["mood_icon"] == discovery.mood_icon(state_of(event)) and attrs["mood_icon"].startswith("mdi:")
        assert attrs["since"] == round(event.timestamp - event.held_s, 1) < event.timestamp
        shown = {k: env.from_string(c["value_template"]).render(value_json=attrs) for k, c in configs.items() if
                 "value_template" in c}  # fmt: skip
        assert float(shown["confidence"]) == round(100 * attrs["confidence"], 1)
        assert float(shown["level"]) == attrs["level_dbfs"]
        assert shown["playing"] == ("ON" if attrs["playing"] else "OFF")  # payload_on / payload_off defaults


def test_the_docs_automation_names_the_entities_of_the_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default device id is the host name; Raspberry Pi OS names a Pi "raspberrypi"."""
    monkeypatch.setattr(socket, "gethostname", lambda: "raspberrypi")
    defaults = MqttSettings(url="mqtt://b")  # no client id: the host name
    produced = {discovery.entity_id(defaults, key) for key in discovery.ENTITIES}
    automation = DOCS.read_text().split("automation:", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"\b(?:binary_)?sensor\.moodstream_\w+", automation))
    assert named and named <= produced, (named, produced)
    assert "sensor.moodstream_raspberrypi_mood" in named
