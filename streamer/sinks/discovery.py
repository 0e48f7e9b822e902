"""Home Assistant MQTT discovery: the retained config messages that make a daemon a device in HA.

One device block per daemon and four entities that read the daemon's own topics (docs/home-assistant.md):
the mood (state topic, with the probabilities and the rest as attributes), the confidence and the input
level (read from the attributes), and music playing (the silence gate, also from the attributes).
Pure data: :mod:`streamer.sinks.mqtt` publishes it and ``moodstream mqtt-forget`` clears it.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from streamer.config import MqttSettings

ONLINE, OFFLINE = "online", "offline"

# entity key -> (component, its own fields); the topics, ids and device block are added by configs()
ENTITIES: dict[str, tuple[str, dict[str, Any]]] = {
    "mood": (
        "sensor",
        {"name": "Mood", "icon": "mdi:music-note", "state_topic": "state", "json_attributes_topic": "attributes"},
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


def configs(settings: MqttSettings, model: str) -> dict[str, dict[str, Any]]:
    """Config topic -> payload for every entity (all retained)."""
    base = settings.topic
    out = {}
    for key, (component, fields) in ENTITIES.items():
        payload = {k: (f"{base}/{v}" if k in TOPIC_FIELDS else v) for k, v in fields.items()}
        payload.update(
            unique_id=f"moodstream_{settings.device_id}_{key}",
            # the entity id (Home Assistant 2025.10 on; it replaced object_id, which 2026.4 dropped)
            default_entity_id=f"{component}.moodstream_{settings.device_id}_{key}",
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
