"""What the MQTT sink publishes: topics, state payloads and Home Assistant discovery.

Topics, under the sink's ``topic_prefix``:

* ``<prefix>/<envoy>/<kind>/state``: one JSON state per gateway and kind (``power``,
  ``energy``, ``inverter``, ``daily``), retained, values in base units (W, Wh) as
  `shared.points` reports them, with the reading's own time (``ts``, epoch seconds);
* ``<prefix>/<envoy>/availability``: ``online`` / ``offline`` from the logger's view;
* ``<prefix>/status``: the bridge itself, ``offline`` as the broker's last will.

State layouts (what discovery's value templates index)::

    power, energy: {"ts": 1700000000, "<measurement_type>": {"<line>": {field: value}}}
    inverter:      {"ts": ..., "<serial>": {"p_w": .., "p_max_w": .., "ts": report_s}}
    daily:         {"ts": ..., "day": "2026-06-01", "<measurement_type>": {"<line|serial>": wh}}

Discovery (`discovery`): one ``sensor`` config per value under
``<discovery_prefix>/sensor/<unique_id>/config``, each naming one device per gateway, so
Home Assistant shows every gateway as a device whose power (``measurement``) and lifetime
energy (``total_increasing``) sensors the Energy dashboard accepts.

Pure functions; reads and writes no channel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import NamedTuple

from shared.messages import Batch, DailyEnergyBatch, InverterBatch, PowerBatch
from shared.points import (
    DAILY_FIELDS,
    ENERGY_FIELDS,
    INVERTER_FIELDS,
    NS_PER_S,
    POWER_FIELDS,
    fields_of,
)

POWER_KIND = "power"
ENERGY_KIND = "energy"
INVERTER_KIND = "inverter"
DAILY_KIND = "daily"
ONLINE = "online"
OFFLINE = "offline"

#: energy field -> (what the sensor is called, lifetime counter of which direction)
ENERGY_NAMES = {"wh_lifetime": "energy", "wh_delivered": "import", "wh_received": "export"}


class Message(NamedTuple):
    topic: str
    payload: str


class Sensor(NamedTuple):
    """A discovered sensor: where its value is, and how Home Assistant should treat it."""

    envoy: str
    kind: str  #: the state topic's kind
    path: tuple[str, ...]  #: keys into the state JSON
    name: str
    device_class: str  #: "power" or "energy"


def state_topic(prefix: str, envoy: str, kind: str) -> str:
    return f"{prefix}/{envoy}/{kind}/state"


def availability_topic(prefix: str, envoy: str) -> str:
    return f"{prefix}/{envoy}/availability"


def status_topic(prefix: str) -> str:
    return f"{prefix}/status"


def _dump(state: Mapping[str, object]) -> str:
    return json.dumps(state, separators=(",", ":"), sort_keys=True)


#: measurement type -> line (or serial) -> value(s)
Nested = dict[str, dict[str, object]]


def _message(
    prefix: str, envoy: str, kind: str, head: dict[str, object], body: Mapping[str, object]
) -> list[Message]:
    """The state message of one kind, or none when no value was reported."""
    if not body:
        return []
    return [Message(state_topic(prefix, envoy, kind), _dump({**head, **body}))]


def states(prefix: str, batch: Batch) -> list[Message]:
    """The state messages of one batch (a kind with no reported value sends nothing)."""
    if isinstance(batch, PowerBatch):
        head: dict[str, object] = {"ts": batch.tick_ns / NS_PER_S}
        power: Nested = {}
        energy: Nested = {}
        for sample in batch.samples:
            for body, table in ((power, POWER_FIELDS), (energy, ENERGY_FIELDS)):
                values = fields_of(sample, table)
                if values:
                    body.setdefault(sample.measurement_type, {})[sample.line] = values
        return _message(prefix, batch.envoy, POWER_KIND, head, power) + _message(
            prefix, batch.envoy, ENERGY_KIND, head, energy
        )
    if isinstance(batch, InverterBatch):
        reports: dict[str, object] = {}
        for report in batch.reports:
            values = fields_of(report, INVERTER_FIELDS)
            if values:
                reports[report.serial] = {**values, "ts": report.report_s}
        head = {"ts": batch.tick_ns / NS_PER_S}
        return _message(prefix, batch.envoy, INVERTER_KIND, head, reports)
    if isinstance(batch, DailyEnergyBatch):
        daily: Nested = {}
        for entry in batch.entries:
            wh = fields_of(entry, DAILY_FIELDS).get("wh")
            key = entry.line if entry.line is not None else entry.serial
            if wh is not None and key is not None:
                daily.setdefault(entry.measurement_type, {})[key] = wh
        head = {"ts": batch.time_ns / NS_PER_S, "day": batch.day}
        return _message(prefix, batch.envoy, DAILY_KIND, head, daily)
    raise TypeError(f"states: not a batch: {type(batch).__name__}")


def sensors(batch: Batch, inverters: bool) -> list[Sensor]:
    """The sensors a batch's values make: power and lifetime energy per meter and line,
    and with ``inverters`` each inverter's power. Daily energy is history, not a sensor."""
    found: list[Sensor] = []
    if isinstance(batch, PowerBatch):
        for s in batch.samples:
            where = s.measurement_type if s.line == "total" else f"{s.measurement_type} {s.line}"
            if "p_w" in fields_of(s, POWER_FIELDS):
                found.append(
                    Sensor(batch.envoy, POWER_KIND, (s.measurement_type, s.line, "p_w"),
                           f"{where} power", "power")
                )  # fmt: skip
            for field in fields_of(s, ENERGY_FIELDS):
                found.append(
                    Sensor(batch.envoy, ENERGY_KIND, (s.measurement_type, s.line, field),
                           f"{where} {ENERGY_NAMES[field]}", "energy")
                )  # fmt: skip
    elif isinstance(batch, InverterBatch) and inverters:
        for r in batch.reports:
            if "p_w" in fields_of(r, INVERTER_FIELDS):
                found.append(
                    Sensor(batch.envoy, INVERTER_KIND, (r.serial, "p_w"),
                           f"inverter {r.serial} power", "power")
                )  # fmt: skip
    return found


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def unique_id(sensor: Sensor) -> str:
    """Stable across restarts, unique per gateway and value; safe as a topic level."""
    return _UNSAFE.sub("_", "_".join(("envoy", sensor.envoy, sensor.kind, *sensor.path)))


def value_template(path: tuple[str, ...]) -> str:
    """A Jinja expression Home Assistant evaluates against the state JSON."""
    return "{{ value_json" + "".join(f"[{json.dumps(key)}]" for key in path) + " }}"


def discovery(
    prefix: str, discovery_prefix: str, sensor: Sensor, serial: str, firmware: str = ""
) -> Message:
    """The retained discovery config of one sensor, as Home Assistant reads it; the
    device is the gateway, identified by its serial so it survives a rename."""
    uid = unique_id(sensor)
    power = sensor.device_class == "power"
    config = {
        "name": sensor.name,
        "unique_id": uid,
        "object_id": uid,
        "state_topic": state_topic(prefix, sensor.envoy, sensor.kind),
        "value_template": value_template(sensor.path),
        "device_class": sensor.device_class,
        "state_class": "measurement" if power else "total_increasing",
        "unit_of_measurement": "W" if power else "Wh",
        "availability_mode": "all",
        "availability": [
            {"topic": status_topic(prefix)},
            {"topic": availability_topic(prefix, sensor.envoy)},
        ],
        "device": {
            "identifiers": [f"envoy_{serial}"],
            "name": f"Envoy {sensor.envoy}",
            "manufacturer": "Enphase Energy",
            "model": "IQ Gateway",
            "serial_number": serial,
            **({"sw_version": firmware} if firmware else {}),
        },
    }
    return Message(f"{discovery_prefix}/sensor/{uid}/config", _dump(config))
