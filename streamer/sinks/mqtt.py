"""The MQTT sink: the daemon's events on a broker, for Home Assistant, Node-RED and openHAB.

Topics under ``mqtt.base_topic`` (``moodstream/<device id>``): ``state`` (the smoothed label, or
``uncertain`` / ``silence`` / ``warming_up``, never a label that is not claimed; retained),
``attributes`` (JSON: probabilities, confidence, level, colour, icon, seq, model; retained),
``status`` (the daemon's status events) and ``availability`` (``online``; ``offline`` as the last
will; retained). With ``publish = "change"`` (the default) state and attributes go out when the shown
state changes and at least every ``interval_s``; with ``"hop"``, every hop. Home Assistant discovery
configs (streamer/sinks/discovery.py) are published, retained, at every connection and whenever Home
Assistant announces that it started (its birth message), and so is the latest retained state: a
restarted broker without persistence, or a restarted Home Assistant, gets it all back.

Two tasks: the consumer turns bus events into messages on a bounded outbox (the oldest message is
dropped and counted when it is full, so a slow or absent broker costs neither memory nor a hop), and
the link connects, publishes the outbox, and on any failure reconnects with :class:`Backoff`. aiomqtt
is imported only here, and only when the sink starts: a daemon without ``[mqtt]`` never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamer.config import MQTT_PASSWORD_ENV, MqttSettings, mqtt_endpoint
from streamer.core.events import EmotionEvent, Event, EventBus, StatusEvent, StatusKind, Subscription, to_dict
from streamer.sinks import discovery, protocol
from streamer.util.backoff import Backoff

if TYPE_CHECKING:
    import aiomqtt

log = logging.getLogger(__name__)

SUBSCRIPTION_QUEUE = 256  # bus events the consumer may lag behind (it only formats and appends)
DRAIN_S = 2.0  # at stop, how long the queued messages may take to go out before "offline"
REPORT_EVERY_S = 60.0  # the same connection failure is logged at most this often (a status event each time)
BIRTH_JITTER_S = 2.0  # after Home Assistant's birth message, discovery goes out within this long
AUTH_CODES = {4, 5, 134, 135}  # CONNACK: bad user name or password / not authorised (MQTT 3.1.1 and 5)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: str
    retain: bool


class Outbox:
    """Messages waiting for the broker, oldest first; when full the oldest is dropped and counted."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.dropped = 0
        self._items: deque[Message] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Message) -> None:
        if len(self._items) >= self.size:
            self._items.popleft()
            self.dropped += 1
        self._items.append(message)
        self._ready.set()

    def peek(self) -> Message:
        return self._items[0]

    def pop(self) -> None:
        self._items.popleft()

    def topics(self) -> set[str]:
        return {m.topic for m in self._items}

    async def wait(self) -> None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()


def attributes(event: EmotionEvent, silence_dbfs: float) -> dict[str, Any]:
    """The attributes topic's JSON: what the mood sensor shows and the other entities read."""
    color = protocol.label_color(event.label) if event.label else "#9e9e9e"
    return {
        "state": event.state,
        "label": event.label,
        "mood_icon": discovery.mood_icon(state_of(event)),
        "confidence": round(event.confidence, 4),
        "probabilities": {k: round(v, 4) for k, v in event.probabilities.items()},
        "level_dbfs": round(event.level.rms_dbfs, 1),
        "peak_dbfs": round(event.level.peak_dbfs, 1),
        "clipped": event.level.clipped,
        "playing": event.level.rms_dbfs >= silence_dbfs,
        "color": color,
        "rgb": [int(color[i : i + 2], 16) for i in (1, 3, 5)],
        "since": round(event.timestamp - event.held_s, 1),  # when what is shown began (steady between hops)
        "seq": event.seq,
        "timestamp": event.timestamp,
        "model": event.model,
    }


def state_of(event: EmotionEvent) -> str:
    """The state topic: the claimed label, else the state (``uncertain`` carries no label)."""
    return event.label if event.state == "emotion" and event.label else event.state


def client(settings: MqttSettings, will: bool = True) -> aiomqtt.Client:
    """An aiomqtt client for the settings (not yet connected)."""
    import aiomqtt

    scheme, host, port = mqtt_endpoint(settings.url)
    tls = ssl.create_default_context(cafile=settings.ca_file or None) if scheme == "mqtts" else None
    return aiomqtt.Client(
        host,
        port,
        username=settings.username or None,
        password=settings.password or None,
        identifier=settings.client_id or settings.device_id,
        keepalive=settings.keepalive_s,
        tls_context=tls,
        timeout=10,
        will=aiomqtt.Will(f"{settings.topic}/availability", discovery.OFFLINE, settings.qos, retain=True)
        if will
        else None,
    )


def failure(settings: MqttSettings, exc: BaseException) -> tuple[StatusKind, str]:
    """(status kind, one clear line) for a failed or lost connection."""
    where = settings.url
    rc = getattr(exc, "rc", None)
    code = getattr(rc, "value", rc)
    if code in AUTH_CODES:
        who = f"user {settings.username!r}" if settings.username else "no user name"
        return (
            "mqtt_auth_failed",
            f"MQTT broker {where} refused the credentials ({who}): {exc}; "
            f"check mqtt.username and mqtt.password (or ${MQTT_PASSWORD_ENV})",
        )
    if any(isinstance(e, ssl.SSLError) for e in (exc, exc.__cause__, exc.__context__)):  # aiomqtt wraps it
        return "mqtt_tls_failed", f"TLS with MQTT broker {where} failed: {exc}; check mqtt.ca_file and the host name"
    return "mqtt_unreachable", f"MQTT broker {where} unreachable: {exc or type(exc).__name__}"


class MqttSink:
    """Publishes the bus to a broker; see the module's docstring."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, model: str, silence_dbfs: float, labels: Sequence[str]) -> None:
        self.settings = settings
        self.model = model
        self.labels = tuple(labels)
        self.silence_dbfs = silence_dbfs
        self.topic = settings.topic
        self.outbox = Outbox(settings.queue)
        self.counters: Counter[str] = Counter()
        self.connected = asyncio.Event()
        self._retained: dict[str, str] = {}
        self._birth = asyncio.Event()  # Home Assistant said it started: announce everything again
        self._last_state: str | None = None
        self._last_sent = float("-inf")
        self._reported: tuple[str, float] = ("", float("-inf"))
        self._bus: EventBus | None = None
        self._subscription: Subscription | None = None

    def stats(self) -> dict[str, int]:
        return {
            "mqtt_published": self.counters["published"],
            "mqtt_dropped": self.outbox.dropped,
            "mqtt_missed_events": self._subscription.dropped if self._subscription else 0,
            "mqtt_queued": len(self.outbox),
            "mqtt_connects": self.counters["connects"],
            "mqtt_connect_failures": self.counters["connect_failures"],
            "mqtt_connections_lost": self.counters["lost"],
            "mqtt_rediscoveries": self.counters["rediscoveries"],
        }

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None:
        """Consume the bus until it closes or ``stop``; then drain briefly, say ``offline`` and disconnect."""
        self._bus = bus
        subscription = bus.subscribe(SUBSCRIPTION_QUEUE)
        closing = asyncio.Event()
        link = asyncio.create_task(self._link(closing))
        stopping = asyncio.create_task(stop.wait())
        self._subscription = subscription
        try:
            while True:
                getting = asyncio.create_task(subscription.get())
                await asyncio.wait({getting, stopping, link}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    break
                event = getting.result()
                while event is not None:
                    self.offer(event)
                    if not subscription.pending():
                        break
                    event = await subscription.get()  # already queued: no wait, no task per event
                if event is None:
                    break
        finally:
            subscription.close()
            stopping.cancel()
            closing.set()
            try:
                await asyncio.wait_for(link, DRAIN_S + 3.0)
            except TimeoutError:
                log.warning("MQTT: the broker did not take the last messages in time; disconnected")

    def offer(self, event: Event) -> None:
        """One bus event -> messages on the outbox (never waits)."""
        if isinstance(event, StatusEvent):
            self.outbox.put(Message(f"{self.topic}/status", protocol.encode(to_dict(event)), False))
            return
        state = state_of(event)
        now = time.monotonic()
        if (
            self.settings.publish == "change"
            and state == self._last_state
            and now - self._last_sent < self.settings.interval_s
        ):
            return
        self._last_state, self._last_sent = state, now
        attrs = protocol.encode(attributes(event, self.silence_dbfs))
        for topic, payload in ((f"{self.topic}/state", state), (f"{self.topic}/attributes", attrs)):
            self._retained[topic] = payload
            self.outbox.put(Message(topic, payload, True))

    # the link to the broker

    async def _link(self, closing: asyncio.Event) -> None:
        import aiomqtt

        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        was_connected = False
        while not closing.is_set():
            try:
                async with client(self.settings) as connection:
                    self.counters["connects"] += 1
                    backoff.reset()
                    if self.settings.discovery_prefix:
                        await connection.subscribe(self._birth_topic, self.settings.qos)
                    await self._announce(connection)
                    self._connected(was_connected)
                    was_connected = True
                    await self._pump(connection, closing)
                    await connection.publish(
                        f"{self.topic}/availability", discovery.OFFLINE, self.settings.qos, retain=True
                    )
                    self.connected.clear()
                    return
            except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
                if self.connected.is_set():
                    self.connected.clear()
                    self.counters["lost"] += 1
                    message = f"lost MQTT broker {self.settings.url}: {exc}; reconnecting"
                    log.warning("%s", message)
                    self._status("mqtt_lost", message)
                else:
                    self.counters["connect_failures"] += 1
                    self._report(*failure(self.settings, exc), attempt=backoff.attempts + 1)
            delay = backoff.delay  # 1 s, 2 s, 4 s... up to backoff_max_s
            backoff.failed()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), delay)

    def _connected(self, again: bool) -> None:
        self.connected.set()
        self._reported = ("", float("-inf"))
        message = f"{'re' if again else ''}connected to MQTT broker {self.settings.url} as {self.topic}"
        log.info("%s", message)
        self._status("mqtt_connected", message)

    @property
    def _birth_topic(self) -> str:
        return f"{self.settings.discovery_prefix}/{discovery.BIRTH_TOPIC}"

    async def _announce(self, connection: aiomqtt.Client) -> None:
        """Discovery, availability and the latest retained state (unless a newer one is queued)."""
        qos = self.settings.qos
        if self.settings.discovery_prefix:
            for topic, config in discovery.configs(self.settings, self.model, self.labels).items():
                await connection.publish(topic, protocol.encode(config), qos, retain=True)
        await connection.publish(f"{self.topic}/availability", discovery.ONLINE, qos, retain=True)
        queued = self.outbox.topics()
        for topic, payload in list(self._retained.items()):
            if topic not in queued:
                await connection.publish(topic, payload, qos, retain=True)

    async def _pump(self, connection: aiomqtt.Client, closing: asyncio.Event) -> None:
        """Publish the outbox until ``closing`` (then for DRAIN_S more at most); a lost connection
        raises. Home Assistant's birth message makes it announce everything again first."""
        watcher = asyncio.create_task(self._listen(connection))
        closing_wait = asyncio.create_task(closing.wait())
        deadline: float | None = None
        try:
            while True:
                if closing.is_set():
                    deadline = deadline or time.monotonic() + DRAIN_S
                    if not self.outbox or time.monotonic() > deadline:
                        return
                elif self._birth.is_set():
                    self._birth.clear()
                    # Home Assistant's advice: a random delay, so that a restart does not meet
                    # every device of a house at the same moment
                    await asyncio.sleep(random.uniform(0.0, BIRTH_JITTER_S))
                    await self._announce(connection)
                    self.counters["rediscoveries"] += 1
                    continue
                elif not self.outbox:
                    ready = asyncio.create_task(self.outbox.wait())
                    born = asyncio.create_task(self._birth.wait())
                    await asyncio.wait({ready, born, watcher, closing_wait}, return_when=asyncio.FIRST_COMPLETED)
                    ready.cancel()
                    born.cancel()
                    if watcher.done():
                        watcher.result()  # raises the reason the connection ended
                        raise OSError("connection to the broker ended")
                    continue
                message = self.outbox.peek()
                await connection.publish(message.topic, message.payload, self.settings.qos, retain=message.retain)
                self.outbox.pop()
                self.counters["published"] += 1
        finally:
            watcher.cancel()
            closing_wait.cancel()

    def _report(self, kind: StatusKind, message: str, **details: Any) -> None:
        """A status event per failed attempt (the backoff spaces them), and its log line, the same
        failure at most every REPORT_EVERY_S (a wrong password must not fill the journal)."""
        self._status(kind, message, **details)
        now = time.monotonic()
        last_kind, last_at = self._reported
        if kind == last_kind and now - last_at < REPORT_EVERY_S:
            return
        self._reported = (kind, now)
        log.error("%s (attempt %d; retrying with backoff)", message, details.get("attempt", 0))

    def _status(self, kind: StatusKind, message: str, **details: Any) -> None:
        if self._bus is not None:
            self._bus.publish(StatusEvent(kind, message, details={"broker": self.settings.url, **details}))

    async def _listen(self, connection: aiomqtt.Client) -> None:
        """Home Assistant's birth messages (``online`` on its status topic) set ``_birth``; returns
        or raises when the connection ends (aiomqtt ends the message iterator then)."""
        async for message in connection.messages:
            if str(message.topic) == self._birth_topic and message.payload in (
                discovery.ONLINE,
                discovery.ONLINE.encode(),
            ):
                log.info("MQTT: Home Assistant started (%s): announcing this device again", self._birth_topic)
                self._birth.set()
