"""What the MQTT sink publishes, read the way Home Assistant reads it."""

from __future__ import annotations

import json
import re
from typing import Any

from shared.messages import (
    DailyEnergy,
    DailyEnergyBatch,
    InverterBatch,
    InverterReport,
    PowerBatch,
    PowerSample,
)
from shared.mqtt_topics import Message, discovery, sensors, states

TICK_NS = 1_700_000_000 * 1_000_000_000
POWER = PowerBatch(
    "garage",
    TICK_NS,
    (
        PowerSample("production", "total", 1234.5, None, None, None, 230.1, None, 9_876_543.0),
        PowerSample("production", "L1", 600.0, None, None, None, None, None, None),
        PowerSample("net-consumption", "total", -300.0, None, None, None, None, None, None,
                    wh_delivered=111.0, wh_received=222.0),
        PowerSample("total-consumption", "total", 934.5, None, None, None, None, None, 5555.0),
    ),
)  # fmt: skip
INVERTERS = InverterBatch(
    "garage", TICK_NS, (InverterReport("482001", 1_699_999_990, 250.0, 290.0),)
)


def template_value(template: str, state: dict[str, Any]) -> Any:
    """Evaluate a value template of the form HA gets: ``{{ value_json["a"]["b"] }}``."""
    match = re.fullmatch(r"\{\{ value_json((?:\[\"[^\"]*\"\])+) \}\}", template)
    assert match, f"not a plain value_json lookup: {template}"
    value: Any = state
    for key in re.findall(r"\[\"([^\"]*)\"\]", match.group(1)):
        value = value[key]
    return value


def published(batch: PowerBatch | InverterBatch, inverters: bool = False) -> dict[str, Any]:
    """Topic -> decoded payload of everything a batch publishes (state and discovery)."""
    messages: list[Message] = states("envoy", batch)
    messages += [
        discovery("envoy", "homeassistant", s, "1222", "D7.6.175")
        for s in sensors(batch, inverters)
    ]
    return {m.topic: json.loads(m.payload) for m in messages}


def test_state_messages_carry_the_batch_numbers_in_base_units_at_the_tick() -> None:
    out = published(POWER)
    power = out["envoy/garage/power/state"]
    energy = out["envoy/garage/energy/state"]
    assert power["ts"] == energy["ts"] == 1_700_000_000
    assert power["production"]["total"] == {"p_w": 1234.5, "v_v": 230.1}
    assert power["production"]["L1"] == {"p_w": 600.0}
    assert power["net-consumption"]["total"] == {"p_w": -300.0}
    assert energy["production"]["total"] == {"wh_lifetime": 9_876_543.0}
    assert energy["net-consumption"]["total"] == {"wh_delivered": 111.0, "wh_received": 222.0}
    assert "L1" not in energy["production"]  # no value, no key


def test_discovery_as_home_assistant_reads_it() -> None:
    out = published(POWER)
    configs = {t: c for t, c in out.items() if t.startswith("homeassistant/")}
    ids = [c["unique_id"] for c in configs.values()]
    assert len(ids) == len(set(ids)) == 8  # 4 power, 4 lifetime energy
    for topic, config in configs.items():
        assert topic == f"homeassistant/sensor/{config['unique_id']}/config"
        assert config["device"]["identifiers"] == ["envoy_1222"]
        assert config["device"]["serial_number"] == "1222"
        assert config["device"]["sw_version"] == "D7.6.175"
        assert config["device"]["name"] == "Envoy garage"
        assert config["state_topic"] in out, "a state topic nothing publishes"
        value = template_value(config["value_template"], out[config["state_topic"]])
        assert isinstance(value, float)
        assert [a["topic"] for a in config["availability"]] == [
            "envoy/status",
            "envoy/garage/availability",
        ]
    by_name = {c["name"]: c for c in configs.values()}
    production = by_name["production power"]
    assert (production["device_class"], production["state_class"]) == ("power", "measurement")
    assert production["unit_of_measurement"] == "W"
    assert template_value(production["value_template"], out[production["state_topic"]]) == 1234.5
    for name, number in (
        ("production energy", 9_876_543.0),
        ("net-consumption import", 111.0),
        ("net-consumption export", 222.0),
        ("total-consumption energy", 5555.0),
    ):
        config = by_name[name]
        assert (config["device_class"], config["state_class"]) == ("energy", "total_increasing")
        assert config["unit_of_measurement"] == "Wh"
        assert template_value(config["value_template"], out[config["state_topic"]]) == number


def test_inverter_sensors_only_when_asked_for_and_their_state_has_the_report_time() -> None:
    assert [t for t in published(INVERTERS) if t.startswith("homeassistant/")] == []
    out = published(INVERTERS, inverters=True)
    state = out["envoy/garage/inverter/state"]
    assert state["482001"] == {"p_w": 250.0, "p_max_w": 290.0, "ts": 1_699_999_990}
    (config,) = [c for t, c in out.items() if t.startswith("homeassistant/")]
    assert template_value(config["value_template"], state) == 250.0
    assert config["unit_of_measurement"] == "W"


def test_daily_energy_state_per_meter_line_and_inverter() -> None:
    batch = DailyEnergyBatch(
        "garage",
        "2026-06-01",
        TICK_NS,
        (
            DailyEnergy("production", "total", None, 12_000.0),
            DailyEnergy("inverters", None, "482001", 1_500.0),
        ),
    )
    (message,) = states("envoy", batch)
    assert message.topic == "envoy/garage/daily/state"
    assert json.loads(message.payload) == {
        "ts": 1_700_000_000,
        "day": "2026-06-01",
        "production": {"total": 12_000.0},
        "inverters": {"482001": 1_500.0},
    }
    assert sensors(batch, inverters=True) == []


def test_a_batch_without_values_publishes_nothing() -> None:
    empty = PowerBatch(
        "garage", TICK_NS, (PowerSample("production", "total", float("nan"), *[None] * 6),)
    )
    assert states("envoy", empty) == []
    assert sensors(empty, inverters=True) == []
