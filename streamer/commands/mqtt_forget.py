"""`moodstream mqtt-forget`: remove this daemon from the broker and from Home Assistant.

Publishes empty retained messages on the discovery config topics (Home Assistant then deletes the
entities and the device) and on the retained state, attributes and availability topics. Run it with
the same settings (config file or flags) as the daemon it forgets, after removing ``[mqtt]`` from
the daemon's own configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from pathlib import Path

from streamer import config as config_mod
from streamer.config import ConfigError, MqttSettings
from streamer.sinks import discovery
from streamer.sinks import mqtt as mqtt_mod

# the daemon's [mqtt] flags: the same command line finds the same topics
FLAGS = tuple(f"mqtt.{f.name}" for f in dataclasses.fields(MqttSettings))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=f"TOML settings (default: {config_mod.SYSTEM_CONFIG} if it exists)")
    config_mod.add_flags(parser, FLAGS)


def topics(settings: MqttSettings) -> list[str]:
    """Every retained topic the daemon with these settings publishes."""
    own = [f"{settings.topic}/{name}" for name in ("state", "attributes", "availability")]
    return (discovery.all_config_topics(settings) if settings.discovery_prefix else []) + own


async def forget(settings: MqttSettings) -> list[str]:
    """Clear the retained topics; returns them."""
    cleared = topics(settings)
    async with mqtt_mod.client(settings, will=False) as connection:
        for topic in cleared:
            await connection.publish(topic, b"", settings.qos, retain=True)
    return cleared


def main(args: argparse.Namespace) -> int:
    import aiomqtt

    try:
        settings = config_mod.load(args.config, config_mod.overrides_from_args(args), os.environ).mqtt
        if not settings.url:
            raise ConfigError("no broker: give --mqtt URL or mqtt.url in the config file")
    except ConfigError as exc:
        print(f"moodstream mqtt-forget: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        cleared = asyncio.run(forget(settings))
    except (aiomqtt.MqttError, OSError) as exc:
        kind, message = mqtt_mod.failure(settings, exc)
        print(f"moodstream mqtt-forget: {message}", file=sys.stderr)
        return 2 if kind == "mqtt_auth_failed" else 1
    for topic in cleared:
        print(f"cleared {topic}")
    return 0
