"""/ivp/meters and /ivp/meters/readings: every real capture, enabled meters only, phases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.errors import ParseError
from shared.messages import MeterInfo, PowerSample
from shared.parsers import parse_meters, parse_meters_readings
from tests.fixtures import FIXTURES, METERS, METERS_READINGS, capture_id, captures

READING_KEYS = ("activePower", "reactivePower", "apparentPower", "current", "voltage", "pwrFactor")


def load(name: str) -> bytes:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"capture {name} not found")
    return path.read_bytes()


def json_or_none(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


@pytest.mark.parametrize("path", captures(METERS), ids=capture_id)
def test_every_meter_list_gives_its_meters_or_a_parse_error(path: Path) -> None:
    body = path.read_bytes()
    doc = json_or_none(body)
    if not isinstance(doc, list):  # "Error: 401" text (3.8.10), a 404 object (3.9.36)
        with pytest.raises(ParseError, match=r"^/ivp/meters: "):
            parse_meters(body)
        return
    assert parse_meters(body) == tuple(
        MeterInfo(m["eid"], m["measurementType"], m["state"] == "enabled", m["phaseCount"])
        for m in doc
    )


def expected_readings(readings: list[Any], meters: list[Any]) -> list[PowerSample]:
    enabled = {m["eid"]: m for m in meters if m["state"] == "enabled"}
    out = []
    for r in readings:
        meter = enabled.get(r["eid"])
        if meter is None:
            continue
        mt = meter["measurementType"]
        for line, values in [
            ("total", r),
            *zip(["L1", "L2", "L3"][: meter["phaseCount"]], r["channels"], strict=False),
        ]:
            numbers = [values[k] for k in READING_KEYS]
            counters = [values["actEnergyDlvd"], values["actEnergyRcvd"]]
            if line != "total" and not any(numbers + counters):
                continue
            out.append(PowerSample(mt, line, *numbers, None, *counters, values.get("freq")))
    return out


@pytest.mark.parametrize("path", captures(METERS_READINGS), ids=capture_id)
def test_every_readings_capture_gives_the_numbers_it_contains(path: Path) -> None:
    body = path.read_bytes()
    meters_body = (path.parent / "meters.json").read_bytes()
    readings, meter_list = json_or_none(body), json_or_none(meters_body)
    if not isinstance(readings, list) or not isinstance(meter_list, list):
        with pytest.raises(ParseError, match=r"^/ivp/meters(/readings)?: "):
            parse_meters_readings(body, parse_meters(meters_body))
        return
    samples = parse_meters_readings(body, parse_meters(meters_body))
    assert samples == tuple(expected_readings(readings, meter_list))
    assert all(s.wh_lifetime is None for s in samples)


def test_three_phase_meters_give_a_total_and_l1_to_l3() -> None:
    meters = parse_meters(load("8.3.5167_3rd-pv/meters.json"))
    samples = parse_meters_readings(load("8.3.5167_3rd-pv/meters_readings.json"), meters)
    assert [(s.measurement_type, s.line) for s in samples] == [
        (mt, line)
        for mt in ("production", "net-consumption")
        for line in ("total", "L1", "L2", "L3")
    ]
    net = samples[4]
    assert (net.p_w, net.wh_delivered, net.wh_received) == (
        -4912.241,
        *_counters("8.3.5167_3rd-pv", 1),
    )


def _counters(setup: str, index: int) -> tuple[float, float]:
    reading = orjson.loads(load(f"{setup}/meters_readings.json"))[index]
    return reading["actEnergyDlvd"], reading["actEnergyRcvd"]


def test_a_reading_for_a_meter_not_in_the_list_is_skipped() -> None:
    # 8.3.5167 reports eid 1023410688, which /ivp/meters does not list.
    meters = parse_meters(load("8.3.5167_3rd-pv/meters.json"))
    samples = parse_meters_readings(load("8.3.5167_3rd-pv/meters_readings.json"), meters)
    assert len(samples) == 8


def test_disabled_meters_write_nothing() -> None:
    meters = parse_meters(load("7.3.466_metered_disabled_cts/meters.json"))
    assert [m.enabled for m in meters] == [False, False]
    body = load("7.3.466_metered_disabled_cts/meters_readings.json")
    assert parse_meters_readings(body, meters) == ()


def test_only_phase_count_channels_are_phases_and_zero_channels_are_dropped() -> None:
    # split phase (phaseCount 2): channel 3 is not a phase even when it reads something.
    meters = parse_meters(load("8.2.4286_with_3cts_and_battery_split/meters.json"))
    body = load("8.2.4286_with_3cts_and_battery_split/meters_readings.json")
    lines = [(s.measurement_type, s.line) for s in parse_meters_readings(body, meters)]
    assert ("net-consumption", "L3") not in lines
    assert ("net-consumption", "L2") in lines
    zero = [{"eid": 7, "state": "enabled", "measurementType": "production", "phaseCount": 3}]
    reading = _reading(7, channels=[_channel(1.0), _channel(0.0), _channel(0)])
    samples = parse_meters_readings(orjson.dumps([reading]), parse_meters(orjson.dumps(zero)))
    assert [s.line for s in samples] == ["total", "L1"]


def _channel(value: float) -> dict[str, Any]:
    keys = (*READING_KEYS, "actEnergyDlvd", "actEnergyRcvd")
    return {k: value for k in keys}


def _reading(eid: int, channels: list[Any], **values: Any) -> dict[str, Any]:
    return {"eid": eid, **_channel(1.0), **values, "channels": channels}


def test_no_meters_no_samples() -> None:
    assert parse_meters(b"[]") == ()
    assert parse_meters_readings(b"[]", ()) == ()


METER = MeterInfo(7, "net-consumption", True, 1)


@pytest.mark.parametrize("value", ["1.0", None, True, [1.0]])
@pytest.mark.parametrize("key", ["activePower", "voltage", "actEnergyRcvd"])
def test_a_wrong_type_in_a_reading_is_a_parse_error(key: str, value: Any) -> None:
    body = orjson.dumps([_reading(7, [_channel(2.0)], **{key: value})])
    with pytest.raises(ParseError, match=r"^/ivp/meters/readings: eid 7 total: expected a number"):
        parse_meters_readings(body, [METER])


def test_a_wrong_type_in_a_channel_is_a_parse_error() -> None:
    channel = {**_channel(2.0), "current": "2"}
    with pytest.raises(ParseError, match=r"^/ivp/meters/readings: eid 7 L1"):
        parse_meters_readings(orjson.dumps([_reading(7, [channel])]), [METER])


@pytest.mark.parametrize("key", ["eid", "activePower", "actEnergyDlvd", "channels"])
def test_a_missing_key_in_a_reading_is_a_parse_error_naming_it(key: str) -> None:
    reading = _reading(7, [_channel(2.0)])
    del reading[key]
    with pytest.raises(ParseError, match=f"missing required key '{key}'"):
        parse_meters_readings(orjson.dumps([reading]), [METER])


@pytest.mark.parametrize(
    ("key", "value"),
    [("eid", "7"), ("phaseCount", None), ("state", True), ("measurementType", 1)],
)
def test_a_wrong_type_in_the_meter_list_is_a_parse_error(key: str, value: Any) -> None:
    meter = {
        "eid": 7,
        "state": "enabled",
        "measurementType": "production",
        "phaseCount": 1,
        key: value,
    }
    with pytest.raises(ParseError, match=r"^/ivp/meters: "):
        parse_meters(orjson.dumps([meter]))


@pytest.mark.parametrize(
    "body",
    [b'{"eid": 7}', b"[7]", b'[["eid"]]', b"", b"Error: 401", b'{ "error" : "404 - Not Found" }'],
)
def test_bodies_of_the_wrong_shape_are_parse_errors(body: bytes) -> None:
    with pytest.raises(ParseError, match=r"^/ivp/meters: "):
        parse_meters(body)
    with pytest.raises(ParseError, match=r"^/ivp/meters/readings: "):
        parse_meters_readings(body, [METER])
