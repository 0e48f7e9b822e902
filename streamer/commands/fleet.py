"""`moodstream watch mqtt://BROKER`: every moodstream device on a broker, one row per room.

It subscribes to the MQTT sink's retained ``availability`` and ``attributes`` topics of every device
under ``moodstream/`` (the default base topic), so a device shows up as soon as it has published once,
and keeps reconnecting the way `watch` does (:func:`streamer.commands.client.reconnecting`); only refused
credentials end it. Drawn by :class:`streamer.sinks.dashboard.Fleet` (the dashboard's renderer); without a
terminal, one plain line per message. The password comes from $MOODSTREAM_MQTT_PASSWORD, never a flag.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

from rich.console import Console

from streamer import config
from streamer.commands.client import reconnecting
from streamer.config import ConfigError, MqttSettings
from streamer.sinks import mqtt
from streamer.sinks.dashboard import REFRESH_S, Fleet, Screen

ROOT = "moodstream"  # devices are found under ROOT/<device id>/ (the sink's default base topic)


class FleetError(RuntimeError):
    """Refused for good (credentials, a malformed URL): retrying cannot help."""


def settings_for(url: str, username: str | None, password: str | None) -> MqttSettings:
    """The viewer's connection settings, checked like the daemon's [mqtt] (a bad URL is refused by name)."""
    mqtt_table = {"url": url, "username": username or "", "password": password or ""}
    try:
        settings = config.from_dict({"mqtt": {**mqtt_table, "client_id": f"moodstream-watch-{os.getpid()}"}})
        return settings.validate().mqtt
    except ConfigError as exc:
        raise FleetError(str(exc)) from None


async def watch_fleet(
    settings: MqttSettings,
    console: Console,
    stop: asyncio.Event,
    emit: Callable[[str], None],
    fleet: Fleet | None = None,
) -> None:
    """Show the fleet on ``settings.url`` until ``stop`` is set, reconnecting as `watch` does."""
    fleet = fleet or Fleet(settings.url)
    with Screen(fleet, console, emit) as screen:
        await reconnecting(lambda: _session(settings, screen), screen, stop, "")


async def _session(settings: MqttSettings, screen: Screen) -> tuple[str, bool]:
    """One connection; returns (why it ended, whether it connected); refused credentials raise."""
    import aiomqtt

    connected = False
    try:
        async with mqtt.client(settings, will=False) as connection:
            for kind in ("availability", "attributes"):
                await connection.subscribe(f"{ROOT}/+/{kind}")
            connected = True
            screen.connection(f"{settings.url}: connected", ok=True)
            refresher = asyncio.create_task(_refresh(screen)) if screen.live else None
            try:
                async for message in connection.messages:
                    if (shown := device_message(str(message.topic), message.payload)) is None:
                        continue
                    if screen.live:  # hundreds of devices: draw at REFRESH_S, not per message
                        screen.dashboard.apply(shown)
                    else:
                        screen.show(shown)
            finally:
                if refresher is not None:
                    refresher.cancel()
        return "connection closed", connected
    except (aiomqtt.MqttError, OSError) as exc:
        kind, reason = mqtt.failure(settings, exc)
        if kind == "mqtt_auth_failed":
            raise FleetError(reason) from None
        return reason, connected


async def _refresh(screen: Screen) -> None:
    while True:
        screen.refresh()
        await asyncio.sleep(REFRESH_S / 2)


def device_message(topic: str, payload: Any) -> dict[str, Any] | None:
    """A sink topic and payload -> the Fleet's ``device`` message (None: not one, or an emptied one)."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != ROOT or not payload:
        return None
    text = payload.decode("utf-8", "replace") if isinstance(payload, (bytes, bytearray)) else str(payload)
    if parts[2] == "availability":
        return {"type": "device", "device": parts[1], "availability": text}
    try:
        attributes = json.loads(text)
    except ValueError:
        return None
    return {"type": "device", "device": parts[1], "attributes": attributes} if isinstance(attributes, dict) else None
