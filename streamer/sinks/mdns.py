"""mDNS (Bonjour/Avahi) advertisement of the WebSocket server as ``_moodstream._tcp``, so that apps
on the network find the Pi without being told its address.

It runs only when the server listens beyond loopback (on 127.0.0.1 nobody else could connect) and
``[server] mdns`` is on. The address advertised is the one the kernel sends multicast from (the
server's own address when it is bound to one): found with a UDP socket, not by listing interfaces,
because that needs a netlink socket, which the service unit does not allow. zeroconf is imported
only here and only then; when it is missing, or no network is up, the daemon logs why and goes on
without it. The TXT record carries what a client needs before it connects: the path, whether a
token is required, the versions, and the model and its labels.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any, Protocol

from streamer.config import ServerSettings
from streamer.core.events import EventBus
from streamer.sinks import protocol, urls

log = logging.getLogger(__name__)

SERVICE_TYPE = "_moodstream._tcp.local."
MDNS_GROUP = ("224.0.0.251", 5353)


class Listening(Protocol):
    """What the advertisement needs of the server: its bound port, once it listens."""

    port: int | None
    listening: asyncio.Event


def wanted(settings: ServerSettings) -> bool:
    """Advertise only a server others can reach, and only when the setting allows it."""
    return settings.enabled and settings.mdns and not urls.is_loopback(settings.host)


def advertised_address(host: str) -> str | None:
    """The IPv4 address to advertise: the bound one, or for a wildcard the one multicast leaves
    from (None when no network is up)."""
    if host not in urls.WILDCARDS:
        return host if ipaddress.ip_address(host).version == 4 else None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(MDNS_GROUP)  # UDP: picks a route, sends nothing
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


class Advertiser:
    """Registers the service once the server listens (its port may be chosen by the kernel) and
    withdraws it, with goodbye packets, when the daemon stops. The daemon runs it as a sink
    (streamer.sinks.base.Sink) for its lifetime and its counters; it needs no events, so it does not
    subscribe, and it ends when ``stop`` is set (after the bus has closed)."""

    name = "mdns"

    def __init__(self, settings: ServerSettings, server: Listening, properties: dict[str, str]) -> None:
        self._settings = settings
        self._server = server
        self._properties = properties
        self.registered = 0
        self.failures = 0

    def stats(self) -> dict[str, int]:
        return {"mdns_registered": self.registered, "mdns_failures": self.failures}

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None:
        del bus  # the advertisement does not depend on events
        listening = asyncio.ensure_future(self._server.listening.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({listening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        stopping.cancel()
        port = self._server.port
        if stop.is_set() or port is None:
            return
        address = advertised_address(self._settings.host)
        if address is None:
            log.warning("mDNS: no IPv4 network to advertise %s on; not advertised", self._settings.host)
            self.failures += 1
            return
        try:
            from zeroconf import IPVersion, ServiceInfo
            from zeroconf.asyncio import AsyncZeroconf
        except ImportError:
            log.warning("mDNS: zeroconf is not installed (pip install zeroconf); not advertised")
            self.failures += 1
            return
        hostname = socket.gethostname().split(".")[0]
        info = ServiceInfo(
            SERVICE_TYPE,
            f"moodstream on {hostname}.{SERVICE_TYPE}",
            port=port,
            parsed_addresses=[address],
            properties=self._properties,
            server=f"{hostname}.local.",
        )
        try:
            zc = AsyncZeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
        except OSError as exc:
            log.warning("mDNS: cannot open the multicast socket on %s (%s); not advertised", address, exc)
            self.failures += 1
            return
        try:
            await (await zc.async_register_service(info, allow_name_change=True))  # probed, announced
            self.registered = 1
            log.info("mDNS: advertised as %r (%s) at %s:%d", info.name, SERVICE_TYPE, address, port)
            await stop.wait()
        except Exception as exc:  # a failing advertisement must never end the daemon
            log.warning("mDNS: advertising failed (%s); the server runs on without it", exc)
            self.failures += 1
        finally:
            if self.registered:
                await (await zc.async_unregister_service(info))  # the goodbyes are sent
            await zc.async_close()


def txt_properties(settings: ServerSettings, model: dict[str, Any], version: str) -> dict[str, str]:
    """What a client reads before it connects (each TXT string stays well under 255 bytes); ``model``
    is the daemon's description of its model (name, labels)."""
    return {
        "path": "/",
        "version": version,
        "protocol": str(protocol.PROTOCOL_VERSION),
        "token": "required" if settings.token else "none",
        "model": str(model.get("name", ""))[:100],
        "labels": ",".join(model.get("labels", []))[:200],
    }
