"""Home Assistant MQTT discovery: the retained config messages that make a daemon a device in HA.

One device block per daemon and four entities that read the daemon's own topics (docs/home-assistant.md):
the mood (an enum sensor: its options are the model's labels and the states that claim none, so
automation pickers list them; the probabilities and the rest as attributes), the confidence and the
input level (read from the attributes), and music playing (the silence gate, also from the
attributes). Checked against Home Assistant's own discovery rules by tests/test_discovery_rules.py.
Pure data: :mod:`streamer.sinks.mqtt` publishes it, again whenever Home Assistant announces itself
(its birth message, ``<prefix>/status`` = ``online``), and ``moodstream mqtt-forget`` clears it.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Sequence
from typing import Any

from streamer.config import MqttSettings

ONLINE, OFFLINE = "online", "offline"
BIRTH_TOPIC = "status"  # under the discovery prefix: Home Assistant says "online" there when it starts
UNCLAIMED = ("uncertain", "silence", "warming_up")  # the mood sensor's states that claim no mood
# a per-mood icon for cards and automations (the attribute ``mood_icon``: Home Assistant keeps an
# attribute called ``icon`` for itself and drops it)
MOOD_ICONS = {
    "happy": "mdi:emoticon-happy-outline",
    "sad": "mdi:emoticon-sad-outline",
    "angry": "mdi:emoticon-angry-outline",
    "calm": "mdi:meditation",
    "uncertain": "mdi:help-circle-outline",
    "silence": "mdi:volume-off",
    "warming_up": "mdi:timer-sand",
}
DEFAULT_ICON = "mdi:music-note"

# entity key -> (component, its own fields); the topics, ids and device block are added by configs()
ENTITIES: dict[str, tuple[str, dict[str, Any]]] = {
    "mood": (
        "sensor",
        {
            "name": "Mood",
            "icon": DEFAULT_ICON,
            "device_class": "enum",
            "state_topic": "state",
            "json_attributes_topic": "attributes",
        },
    ),
    "confidence": (
        "sensor",
        {
            "name": "Mood confidence",
            "icon": "mdi:gauge",
            "state_topic": "attributes",
            "value_template": "{{ (value_json.confidence * 100) | round(1) }}",
            "unit_of_measurement": "%",
            "state_class": "measurement",
        },
    ),
    "level": (
        "sensor",
        {
            "name": "Input level",
            "icon": "mdi:volume-high",
            "state_topic": "attributes",
            "value_template": "{{ value_json.level_dbfs }}",
            "unit_of_measurement": "dBFS",
            "state_class": "measurement",
        },
    ),
    "playing": (
        "binary_sensor",
        {
            "name": "Music playing",
            "device_class": "sound",
            "state_topic": "attributes",
            "value_template": "{{ 'ON' if value_json.playing else 'OFF' }}",
        },
    ),
}
TOPIC_FIELDS = ("state_topic", "json_attributes_topic")


def version() -> str:
    try:
        return importlib.metadata.version("moodstream")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def config_topic(settings: MqttSettings, key: str) -> str:
    component = ENTITIES[key][0]
    return f"{settings.discovery_prefix}/{component}/{settings.device_id}/{key}/config"


def device_block(settings: MqttSettings, model: str) -> dict[str, Any]:
    return {
        "identifiers": [f"moodstream_{settings.device_id}"],
        "name": f"moodstream {settings.device_id}",
        "manufacturer": "moodstream",
        "model": model,
        "sw_version": version(),
    }


def mood_icon(state: str) -> str:
    """The icon of a shown mood or state (``mood_icon`` in the attributes)."""
    return MOOD_ICONS.get(state, DEFAULT_ICON)


def entity_id(settings: MqttSettings, key: str) -> str:
    """The entity id Home Assistant gives an entity: its ``default_entity_id``, whose object part
    is already the slug HA would make of it (a device id "living-room" -> "living_room")."""
    slug = re.sub(r"[^a-z0-9]+", "_", settings.device_id).strip("_")
    return f"{ENTITIES[key][0]}.moodstream_{slug}_{key}"


def configs(settings: MqttSettings, model: str, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Config topic -> payload for every entity (all retained); ``labels``: the model's, the mood
    sensor's options with UNCLAIMED (every state its state topic can carry)."""
    base = settings.topic
    out = {}
    for key, (_, fields) in ENTITIES.items():
        payload = {k: (f"{base}/{v}" if k in TOPIC_FIELDS else v) for k, v in fields.items()}
        if fields.get("device_class") == "enum":
            payload["options"] = [*labels, *UNCLAIMED]
        payload.update(
            unique_id=f"moodstream_{settings.device_id}_{key}",
            # the entity id (Home Assistant 2025.10 on; it replaced object_id, which 2026.4 dropped)
            default_entity_id=entity_id(settings, key),
            availability_topic=f"{base}/availability",
            payload_available=ONLINE,
            payload_not_available=OFFLINE,
            qos=settings.qos,
            device=device_block(settings, model),
            origin={"name": "moodstream", "sw_version": version()},
        )
        out[config_topic(settings, key)] = payload
    return out


def all_config_topics(settings: MqttSettings) -> list[str]:
    return [config_topic(settings, key) for key in ENTITIES]
