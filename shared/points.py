"""What we write: the one mapping from batches to points (SPEC "What it writes").

Each batch becomes points of four measurements: ``power`` and ``energy`` (one of each per
`PowerSample`), ``inverter`` (per `InverterReport`) and ``energy_daily`` (per
`DailyEnergy`). The tables below say which record attribute becomes which field; the
``*_tags`` functions say which become tags. The SQLite and Prometheus sinks and
``parse --format json`` walk `points(batch)`; the fast line-protocol encoder in
`shared.lineproto` reads the same tables and tag functions, so the mapping exists once.

Rules every consumer inherits from here:

* field values are floats (gateways send int in one capture and float in the next, and
  InfluxDB refuses a field whose type changes);
* a value that is ``None`` or not a finite number is not reported, so its field is left
  out, and a point left with no fields is not written at all;
* the built-in tags (envoy, serial, measurement_type, line) win over a user's tag of the
  same name (config validation should reject such names earlier).

Pure functions; reads and writes no channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from shared.messages import (
    Batch,
    DailyEnergy,
    DailyEnergyBatch,
    InverterBatch,
    InverterReport,
    PowerBatch,
    PowerSample,
)

POWER = "power"
ENERGY = "energy"
INVERTER = "inverter"
ENERGY_DAILY = "energy_daily"

NS_PER_S = 1_000_000_000

#: (field name, position of the record attribute it comes from)
FieldTable = tuple[tuple[str, int], ...]


def _table(record_fields: tuple[str, ...], mapping: Mapping[str, str]) -> FieldTable:
    """Resolve field name -> attribute name into positions, so encoders index tuples."""
    return tuple((field, record_fields.index(attr)) for field, attr in mapping.items())


# Field name -> record attribute. Names happen to equal attributes today; the tables keep
# the written schema separate from the record layout so either can change alone.
POWER_FIELDS = _table(
    PowerSample._fields,
    {
        "p_w": "p_w",
        "q_var": "q_var",
        "s_va": "s_va",
        "i_a": "i_a",
        "v_v": "v_v",
        "pf": "pf",
        "freq_hz": "freq_hz",
    },
)
ENERGY_FIELDS = _table(
    PowerSample._fields,
    {"wh_lifetime": "wh_lifetime", "wh_delivered": "wh_delivered", "wh_received": "wh_received"},
)
INVERTER_FIELDS = _table(InverterReport._fields, {"p_w": "p_w", "p_max_w": "p_max_w"})
DAILY_FIELDS = _table(DailyEnergy._fields, {"wh": "wh"})


class Point(NamedTuple):
    """One point of one measurement, independent of any sink's format."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float]
    time_ns: int


# --- tags -----------------------------------------------------------------------------


def sample_tags(envoy: str, sample: PowerSample) -> dict[str, str]:
    """Tags of the power and energy points of one sample."""
    return {"envoy": envoy, "measurement_type": sample.measurement_type, "line": sample.line}


def inverter_tags(envoy: str, report: InverterReport) -> dict[str, str]:
    """Tags of one inverter point: the user's tags for the serial, then ours on top."""
    tags = dict(report.tags)
    tags["envoy"] = envoy
    tags["serial"] = report.serial
    return tags


def daily_tags(envoy: str, entry: DailyEnergy) -> dict[str, str]:
    """Tags of one daily-energy point: meter series carry a line, inverter series a serial."""
    tags = dict(entry.tags)
    tags["envoy"] = envoy
    tags["measurement_type"] = entry.measurement_type
    if entry.line is not None:
        tags["line"] = entry.line
    if entry.serial is not None:
        tags["serial"] = entry.serial
    return tags


# --- fields ---------------------------------------------------------------------------


def fields_of(record: tuple[object, ...], table: FieldTable) -> dict[str, float]:
    """The reported values of one record as floats; None and non-finite values left out."""
    fields: dict[str, float] = {}
    for name, index in table:
        value = record[index]
        if value is None:
            continue
        number = float(value)  # type: ignore[arg-type]  # tables only name numeric attributes
        if number - number == 0.0:  # false for inf and nan, which no database stores
            fields[name] = number
    return fields


# --- batches --------------------------------------------------------------------------


def points(batch: Batch) -> list[Point]:
    """Every point one batch writes, in a stable order (per record: power, then energy)."""
    out: list[Point] = []
    if isinstance(batch, PowerBatch):
        for sample in batch.samples:
            tags = sample_tags(batch.envoy, sample)
            power = fields_of(sample, POWER_FIELDS)
            if power:
                out.append(Point(POWER, tags, power, batch.tick_ns))
            energy = fields_of(sample, ENERGY_FIELDS)
            if energy:
                out.append(Point(ENERGY, dict(tags), energy, batch.tick_ns))
    elif isinstance(batch, InverterBatch):
        for report in batch.reports:
            fields = fields_of(report, INVERTER_FIELDS)
            if fields:
                time_ns = int(report.report_s) * NS_PER_S
                out.append(Point(INVERTER, inverter_tags(batch.envoy, report), fields, time_ns))
    elif isinstance(batch, DailyEnergyBatch):
        for entry in batch.entries:
            fields = fields_of(entry, DAILY_FIELDS)
            if fields:
                out.append(
                    Point(ENERGY_DAILY, daily_tags(batch.envoy, entry), fields, batch.time_ns)
                )
    else:
        raise TypeError(f"points: not a batch: {type(batch).__name__}")
    return out
