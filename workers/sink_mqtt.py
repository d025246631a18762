"""The MQTT sink backend: a durable spool in front of a broker, for Home Assistant & co.

`accept` turns each batch into its state messages (`shared.mqtt_topics`), and, the first
time a value shows up in this process, its Home Assistant discovery config (once the
gateway's serial is known: from the config, or from /info via the supervisor's
self-metrics, which also bring the firmware), and commits
them to the sink's spool (`workers.spool`) before the sink acknowledges the batch. A
forwarder thread publishes the oldest spooled messages with QoS 1, retained, and deletes
them only once the broker has acknowledged each (PUBACK): delivery is at least once, and
a broker outage or restart only grows the spool (bounded by ``spool_max_mb``) until the
forwarder replays it.

Not spooled, because only the latest value means anything: the bridge status (``online``
on every connect; ``offline`` on a clean stop, and as the broker's last will when the
process dies), each gateway's availability (from the supervisor's self-metrics: online
while its last good power poll is recent), and the discovery configs republished when
Home Assistant announces ``online`` on ``<discovery_prefix>/status``.

paho-mqtt is an optional extra; `shared.config_loader` refuses an mqtt sink without it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from shared.config import MqttSinkConfig
from shared.messages import Batch, SelfMetrics
from shared.mqtt_topics import (
    OFFLINE,
    ONLINE,
    Message,
    availability_topic,
    discovery,
    sensors,
    states,
    status_topic,
)
from shared.points import NS_PER_S
from shared.storage import StorageEpisode, is_storage_error
from workers.spool import Entry, Spool
from workers.spooled import SpooledBackend

BATCH_ITEMS = 200  #: messages published before waiting for their PUBACKs
BATCH_BYTES = 1 << 20
PUBACK_TIMEOUT_S = 10.0  #: unacknowledged this long: kept, published again later
RETRY_S = 1.0  #: pause after a failed round, and between waits for a connection
CLOSE_TIMEOUT_S = 2.0  #: stopping: how long the ``offline`` status may take
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
#: a gateway is online while its last good power poll is at most this many intervals old
#: (the same rule as the exporter's ``envoy_up``)
UP_INTERVALS = 3
KIND = "mqtt"  #: the one spool kind: every message goes to the same broker
SEPARATOR = b"\0"  #: between topic and payload in a spool entry (no topic contains NUL)


def encode(message: Message) -> bytes:
    return message.topic.encode() + SEPARATOR + message.payload.encode()


def decode(payload: bytes) -> Message:
    topic, _, body = payload.partition(SEPARATOR)
    return Message(topic.decode(), body.decode())


class Link:
    """The connection to the broker: paho's network thread, status, will, availability.

    Callbacks run on paho's thread; `publish` may be called from any thread.
    """

    def __init__(self, config: MqttSinkConfig, log: structlog.typing.FilteringBoundLogger) -> None:
        self._config = config
        self._log = log
        self._where = f"{config.host}:{config.port}"
        self._status = status_topic(config.topic_prefix)
        self._ha_status = f"{config.discovery_prefix}/status"
        self._lock = threading.Lock()
        self._discovery: dict[str, str] = {}  #: topic -> config, for Home Assistant restarts
        self._availability: dict[str, str] = {}  #: topic -> online/offline
        self.connected = threading.Event()
        self.last_error = ""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id or f"envoy-supervisor-{config.name}",
            protocol=mqtt.MQTTv311,
        )
        if config.username:
            client.username_pw_set(config.username, config.password or None)
        if config.ca_file is not None:
            client.tls_set(ca_certs=str(config.ca_file))
        client.will_set(self._status, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        client.connect_async(config.host, config.port, config.keepalive_s)
        client.loop_start()

    def publish(self, message: Message) -> mqtt.MQTTMessageInfo:
        return self._client.publish(message.topic, message.payload, qos=1, retain=True)

    def remember_discovery(self, message: Message) -> bool:
        """Keep a discovery config for republishing; False if it was known already."""
        with self._lock:
            known = self._discovery.get(message.topic) == message.payload
            self._discovery[message.topic] = message.payload
        return not known

    def set_availability(self, message: Message) -> None:
        """Publish a gateway's availability when it changes (and on every connect)."""
        with self._lock:
            if self._availability.get(message.topic) == message.payload:
                return
            self._availability[message.topic] = message.payload
        if self.connected.is_set():
            self.publish(message)

    def close(self) -> None:
        if self.connected.is_set():
            info = self._client.publish(self._status, OFFLINE, qos=1, retain=True)
            _acknowledged(info, CLOSE_TIMEOUT_S)
        self._client.disconnect()
        self._client.loop_stop()

    # --- paho callbacks (its network thread) --------------------------------------------

    def _failed(self, error: str, level: str = "warning") -> None:
        if error != self.last_error:  # once per episode, not on every reconnect attempt
            getattr(self._log, level)(error)
        self.last_error = error

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            self._failed(f"mqtt broker {self._where} refused the connection: {rc}", "error")
            return
        if self.last_error:
            self._log.info("mqtt broker connected again", broker=self._where)
        self.last_error = ""
        client.publish(self._status, ONLINE, qos=1, retain=True)
        if self._config.discovery:
            client.subscribe(self._ha_status, qos=1)
        with self._lock:
            availability = list(self._availability.items())
        for topic, state in availability:
            client.publish(topic, state, qos=1, retain=True)
        self.connected.set()

    def _on_connect_fail(self, _client: mqtt.Client, _u: object) -> None:
        # paho calls this from within its `except OSError`, without passing the error
        error = sys.exc_info()[1]
        why = " ".join(str(error).split()) if error is not None else "cannot connect"
        self._failed(f"mqtt broker {self._where} unreachable: {why}, retrying")

    def _on_disconnect(
        self, _client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        if was_up and rc.is_failure:  # not after a refused CONNACK: that error stands
            self._failed(f"mqtt broker {self._where} lost: {rc}, reconnecting")

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._ha_status and msg.payload == ONLINE.encode():
            # Home Assistant (re)started: it forgot every entity not retained elsewhere.
            with self._lock:
                configs = list(self._discovery.items())
            for topic, payload in configs:
                client.publish(topic, payload, qos=1, retain=True)


def _acknowledged(info: mqtt.MQTTMessageInfo, timeout_s: float) -> bool:
    """True once the broker acknowledged the message (QoS 1: PUBACK) within the timeout."""
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError):  # not sent at all: no connection, queue full
        return False
    return info.is_published()


class MqttBackend(SpooledBackend):
    def __init__(
        self,
        config: MqttSinkConfig,
        state_dir: Path,
        log: structlog.typing.FilteringBoundLogger,
        power_intervals: Mapping[str, float] | None = None,
        serials: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._intervals = dict(power_intervals or {})
        #: envoy -> (serial, firmware); configured serials until /info says more
        self._devices = {envoy: (serial, "") for envoy, serial in (serials or {}).items()}
        self._link = link = Link(config, log)
        super().__init__(
            config.name,
            config.spool_max_mb,
            state_dir,
            log,
            lambda spool: Forwarder(spool, link, log),
        )

    def accept(self, batches: Sequence[Batch]) -> None:
        config = self._config
        for batch in batches:
            if config.discovery:
                serial, firmware = self._devices.get(batch.envoy, ("", ""))
                # Without a serial there is no stable device yet: a later batch announces.
                for sensor in sensors(batch, config.inverter_sensors) if serial else ():
                    message = discovery(
                        config.topic_prefix, config.discovery_prefix, sensor, serial, firmware
                    )
                    if self._link.remember_discovery(message):
                        self._spool.put(encode(message), KIND)
            for message in states(config.topic_prefix, batch):
                self._spool.put(encode(message), KIND)
        self._forwarder.wake.set()

    def observe(self, metrics: SelfMetrics) -> None:
        for envoy, serial, firmware in metrics.gateways:
            self._devices[envoy] = (serial, firmware)
        now_ns = time.time_ns()
        last = {envoy: ns for envoy, feed, ns in metrics.last_success_ns if feed == "power"}
        for envoy, interval_s in self._intervals.items():
            age_s = (now_ns - last.get(envoy, 0)) / NS_PER_S
            state = ONLINE if age_s <= UP_INTERVALS * interval_s else OFFLINE
            self._link.set_availability(
                Message(availability_topic(self._config.topic_prefix, envoy), state)
            )

    def close(self) -> None:
        super().close()
        self._link.close()


class Forwarder:
    """Publishes the spool to the broker, oldest first (runs on its own thread)."""

    def __init__(
        self, spool: Spool, link: Link, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        self._spool = spool
        self._link = link
        self.wake = threading.Event()
        self.stop = False
        self.deadline: float | None = None  #: draining for shutdown: give up after this
        self.last_ok_s: float | None = None
        self.storage = StorageEpisode(log, spool.path, "published messages, published again later")

    @property
    def last_error(self) -> str:
        return self._link.last_error

    def run(self) -> None:
        while not self.stop:
            if self.deadline is not None and time.monotonic() > self.deadline:
                break
            entries = self._spool.peek(BATCH_ITEMS, BATCH_BYTES)
            if not entries:
                if self.deadline is not None:
                    break  # drained
                self.wake.wait(5.0)
                self.wake.clear()
            elif not self._link.connected.wait(RETRY_S):
                continue  # paho reconnects on its own thread; the Link logs why not yet
            elif not self._published(entries):
                time.sleep(RETRY_S)
        self._spool.close()

    def _published(self, entries: list[Entry]) -> bool:
        """`_publish`, with a spool that cannot mark entries sent (disk full) reported as
        an episode and retried, like the InfluxDB forwarder: the thread must not die of it."""
        try:
            done = self._publish(entries)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self.storage.failed(exc)
            return False
        self.storage.ok()
        return done

    def _publish(self, entries: list[Entry]) -> bool:
        """Publish entries and delete each the broker acknowledged; True if all were."""
        infos = [(e.id, self._link.publish(decode(e.payload))) for e in entries]
        done: list[int] = []
        for entry_id, info in infos:
            # Only a prefix is deleted: an entry without PUBACK is published again later,
            # and the ones after it with it, so retained state never ends on an older value.
            if not _acknowledged(info, PUBACK_TIMEOUT_S):
                break
            done.append(entry_id)
        self._spool.ack(done)
        if done:
            self.last_ok_s = time.time()
        return len(done) == len(entries)
