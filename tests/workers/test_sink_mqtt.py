"""The MQTT sink against a real mosquitto (tests/servers.py), as a subscriber sees it.

The backend runs in this process for the broker's failure cases (outage and restart,
refused credentials, nobody listening); the last tests run the real supervisor with
simulated gateways and SIGKILL the sink process to see the broker's last will.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import structlog
import trustme
from paho.mqtt.enums import CallbackAPIVersion
from structlog.testing import capture_logs

from shared.config import MqttSinkConfig
from shared.messages import PowerBatch, PowerSample, SelfMetrics
from tests.conftest import MQTT_USERS
from tests.servers import Mosquitto, free_port, missing
from tests.supervisor.conftest import Site, start_site, stop_site, wait_for
from workers.sink_mqtt import MqttBackend

NS_PER_S = 1_000_000_000
T0_S = 1_700_000_000
SERIALS = {"garage": "122238082763"}  #: configured: discovery needs no /info first


class Subscriber:
    """A client that records every message on ``#``: the latest per topic, and each one."""

    def __init__(self, broker: Mosquitto, client_id: str = "", persistent: bool = False) -> None:
        self.lock = threading.Lock()
        self.latest: dict[str, bytes] = {}
        self.seen: list[mqtt.MQTTMessage] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,  # persistent: the broker queues what we miss
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._message
        self.client.reconnect_delay_set(0, 1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "no SUBACK"

    def _message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.latest[message.topic] = message.payload
            self.seen.append(message)

    def json(self, topic: str) -> Any:
        with self.lock:
            payload = self.latest.get(topic)
        return None if payload is None else json.loads(payload)

    def text(self, topic: str) -> str | None:
        with self.lock:
            payload = self.latest.get(topic)
        return None if payload is None else payload.decode()

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [m.payload for m in self.seen if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    yield made
    for sub in made:
        sub.close()


def tick(i: int, envoy: str = "garage") -> PowerBatch:
    sample = PowerSample("production", "total", 1000.0 + i, None, None, None, None, None, 5e6 + i)
    return PowerBatch(envoy, (T0_S + i) * NS_PER_S, (sample,))


def backend(tmp_path: Path, broker: Mosquitto, **keys: Any) -> MqttBackend:
    tmp_path.mkdir(exist_ok=True)
    config = MqttSinkConfig(name="mq", host="127.0.0.1", port=broker.port, **keys)
    return MqttBackend(config, tmp_path, structlog.get_logger(), {"garage": 1.0}, SERIALS)


def power_ticks(sub: Subscriber) -> set[int]:
    """The tick times seen on the power state topic (each message, not just the latest)."""
    return {int(json.loads(p)["ts"]) - T0_S for p in sub.payloads("envoy/garage/power/state")}


@pytest.mark.servers
def test_state_is_retained_for_a_late_subscriber_and_equals_the_batch(
    tmp_path: Path, mosquitto: Mosquitto, subscribers: list[Subscriber]
) -> None:
    sink = backend(tmp_path, mosquitto, topic_prefix="late", discovery_prefix="ha-late")
    try:
        sink.accept([tick(1), tick(2)])
        sink.observe(SelfMetrics(last_success_ns=(("garage", "power", time.time_ns()),)))
        wait_for(lambda: sink.status().spool_items == 0, 20, "the spool to drain")
        late = Subscriber(mosquitto)
        subscribers.append(late)
        wait_for(lambda: late.json("late/garage/power/state"), 10, "the retained state")
        assert late.json("late/garage/power/state") == {
            "ts": T0_S + 2,
            "production": {"total": {"p_w": 1002.0}},
        }
        assert late.json("late/garage/energy/state")["production"]["total"] == {
            "wh_lifetime": 5e6 + 2
        }
        wait_for(lambda: late.text("late/garage/availability"), 10, "availability")
        assert late.text("late/garage/availability") == "online"
        assert late.text("late/status") == "online"
        configs = [t for t in late.latest if t.startswith("ha-late/sensor/")]
        assert len(configs) == 2  # power and lifetime energy, each announced once
    finally:
        sink.close()
    wait_for(lambda: late.text("late/status") == "offline", 10, "offline on a clean stop")


@pytest.mark.servers
def test_discovery_is_republished_when_home_assistant_comes_online(
    tmp_path: Path, mosquitto: Mosquitto, subscribers: list[Subscriber]
) -> None:
    sink = backend(tmp_path, mosquitto, topic_prefix="ha", discovery_prefix="ha-re")
    try:
        sub = Subscriber(mosquitto)
        subscribers.append(sub)
        sink.accept([tick(1)])
        wait_for(lambda: sink.status().spool_items == 0, 20, "the spool to drain")
        configs = [t for t in sub.latest if t.startswith("ha-re/sensor/")]
        assert len(configs) == 2
        sub.client.publish("ha-re/status", "online", qos=1)
        wait_for(
            lambda: all(len(sub.payloads(t)) == 2 for t in configs),
            10,
            "every discovery config published again",
        )
    finally:
        sink.close()


@pytest.mark.slow
@pytest.mark.servers
def test_every_tick_reaches_the_subscriber_across_a_broker_stop_and_start(
    tmp_path: Path, own_mosquitto: Mosquitto, subscribers: list[Subscriber]
) -> None:
    broker = own_mosquitto
    sub = Subscriber(broker, client_id="counting", persistent=True)
    subscribers.append(sub)
    sink = backend(tmp_path, broker)
    try:
        for i in range(5):
            sink.accept([tick(i)])
        wait_for(lambda: power_ticks(sub) == set(range(5)), 20, "the first ticks")
        broker.stop()
        wait_for(lambda: sink.status().last_error, 20, "the sink to notice")
        for i in range(5, 15):  # the broker is down: these can only be spooled
            sink.accept([tick(i)])
            time.sleep(0.1)
        assert sink.status().spool_items >= 10
        broker.start()
        for i in range(15, 20):
            sink.accept([tick(i)])
        wait_for(lambda: power_ticks(sub) == set(range(20)), 60, "every tick after the restart")
        wait_for(lambda: sink.status().spool_items == 0, 20, "the spool to drain")
        assert sink.status().last_error == ""
    finally:
        sink.close()
    print(f"\n20 ticks, 10 while the broker was down: all seen, {len(sub.seen)} messages")


@pytest.mark.servers
def test_refused_credentials_are_one_line_and_never_show_the_password(
    tmp_path: Path, mosquitto_auth: Mosquitto, subscribers: list[Subscriber]
) -> None:
    wrong = "not-the-Password-42"
    with capture_logs() as logs:
        sink = backend(tmp_path, mosquitto_auth, username="envoy", password=wrong)
        try:
            sink.accept([tick(1)])
            wait_for(lambda: sink.status().last_error, 20, "the refusal")
            error = sink.status().last_error
        finally:
            sink.close()
    assert (
        error
        == f"mqtt broker 127.0.0.1:{mosquitto_auth.port} refused the connection: Not authorized"
    )
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [error]  # once
    assert wrong not in repr(logs)
    # The right password: the spooled tick is delivered.
    ((user, password),) = MQTT_USERS.items()
    sink = backend(tmp_path, mosquitto_auth, username=user, password=password)
    try:
        wait_for(lambda: sink.status().spool_items == 0, 20, "the spooled tick to be sent")
        assert sink.status().last_error == ""
    finally:
        sink.close()


@pytest.mark.servers
def test_an_unreachable_broker_is_one_line_and_the_batches_wait_in_the_spool(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = MqttSinkConfig(name="mq", host="127.0.0.1", port=port)
    sink = MqttBackend(config, tmp_path, structlog.get_logger())
    try:
        sink.accept([tick(1), tick(2)])
        wait_for(lambda: sink.status().last_error, 20, "the connection failure")
        assert sink.status().last_error == (
            f"mqtt broker 127.0.0.1:{port} unreachable: [Errno 111] Connection refused, retrying"
        )
        # the power and energy states of two ticks; no discovery before the serial is known
        assert sink.status().spool_items == 4
    finally:
        sink.close()


@pytest.mark.servers
def test_tls_with_a_ca_file_verifies_the_broker(tmp_path: Path) -> None:
    if missing("mosquitto"):
        pytest.skip("mosquitto is not installed: apt-get install mosquitto, as .ci/run does")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    cert.cert_chain_pems[0].write_to_path(str(chain))
    ca.cert_pem.write_to_path(str(ca_file))
    broker = Mosquitto(tmp_path, tls=(chain, key))
    broker.start()
    try:
        trusted = backend(tmp_path / "trusted", broker, ca_file=ca_file)
        try:
            trusted.accept([tick(1)])
            wait_for(lambda: trusted.status().last_write_ok_s, 20, "a write over TLS")
        finally:
            trusted.close()
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        refused = backend(tmp_path / "untrusted", broker, ca_file=other)
        try:
            refused.accept([tick(1)])
            wait_for(lambda: refused.status().last_error, 20, "the failed verification")
            assert "CERTIFICATE_VERIFY_FAILED" in refused.status().last_error
            assert refused.status().spool_items == 4  # nothing sent to an unverified broker
        finally:
            refused.close()
    finally:
        broker.stop()


def test_the_spool_is_bounded_while_the_broker_is_unreachable(tmp_path: Path) -> None:
    config = MqttSinkConfig(name="mq", host="127.0.0.1", port=free_port(), spool_max_mb=0.002)
    sink = MqttBackend(config, tmp_path, structlog.get_logger())
    try:
        for i in range(100):
            sink.accept([tick(i)])
        status = sink.status()
    finally:
        sink.close()
    assert status.spool_bytes <= 0.002 * 1024 * 1024
    assert status.dropped > 0
    assert status.spool_items + status.dropped == 200  # power and energy states of 100 ticks


# --- through the real supervisor --------------------------------------------------------


def mqtt_site(tmp_path: Path, broker: Mosquitto) -> Site:
    sink = f"{{type: mqtt, name: mq, host: 127.0.0.1, port: {broker.port}, topic_prefix: site}}"
    return start_site(tmp_path, sinks=[sink])


@pytest.mark.slow
@pytest.mark.servers
def test_a_site_appears_with_discovery_state_equal_to_sqlite_and_its_last_will(
    tmp_path: Path, own_mosquitto: Mosquitto, subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(own_mosquitto)
    subscribers.append(sub)
    site = mqtt_site(tmp_path, own_mosquitto)
    try:
        for gw in ("gw1", "gw2"):
            wait_for(lambda g=gw: sub.text(f"site/{g}/availability") == "online", 60, gw)
        wait_for(lambda: sub.json("site/gw2/energy/state"), 30, "energy state")

        def discovered() -> dict[str, Any]:
            with sub.lock:
                found = dict(sub.latest)
            configs = {t: json.loads(p) for t, p in found.items() if t.startswith("homeassistant/")}
            # both gateways announced: the sink learnt their serials from the self-metrics
            names = {c["device"]["name"] for c in configs.values()}
            return configs if names == {"Envoy gw1", "Envoy gw2"} else {}

        configs = wait_for(discovered, 30, "discovery of both gateways")
        # each gateway one device, named by the serial and firmware its /info gave
        identified = {gw: site.status()["gateways"][gw] for gw in ("gw1", "gw2")}
        devices = {
            (c["device"]["name"], c["device"]["identifiers"][0], c["device"]["sw_version"])
            for c in configs.values()
        }
        assert devices == {
            (f"Envoy {gw}", f"envoy_{facts['serial']}", facts["firmware"])
            for gw, facts in identified.items()
        }
        assert {c["state_topic"] for c in configs.values()} <= set(sub.latest)
        # Every power state the sink published equals the row the SQLite sink stored.
        wait_for(lambda: len(sub.payloads("site/gw1/power/state")) >= 3, 30, "a few polls")
        for payload in sub.payloads("site/gw1/power/state")[:3]:
            state = json.loads(payload)
            query = (
                "SELECT line, p_w FROM power WHERE envoy = 'gw1' AND measurement_type ="
                f" 'production' AND time = {int(state['ts'] * NS_PER_S)}"
            )
            rows = wait_for(lambda q=query: site.db_rows(q), 30, "the same tick in SQLite")
            assert {line: {"p_w": p_w} for line, p_w in rows} == {
                line: {"p_w": v["p_w"]} for line, v in state["production"].items()
            }
        first = site.running_pid("sink:mq")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: b"offline" in sub.payloads("site/status"), 30, "the last will")
        site.running_pid("sink:mq", other_than=first)
        wait_for(lambda: sub.text("site/status") == "online", 30, "the restarted sink online")
    finally:
        stop_site(site)
    wait_for(lambda: sub.text("site/status") == "offline", 10, "offline after the site stops")
