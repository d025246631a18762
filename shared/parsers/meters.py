"""Parsing ``/ivp/meters`` (the CT meter list) and ``/ivp/meters/readings``.

The meter list says what each meter measures (by ``eid``), whether it is enabled, and how
many phases it has; the readings only carry the eid, so `parse_meters_readings` takes the
parsed list. Readings add what /production.json lacks: the lifetime counters of energy
delivered (imported) and received (exported) through the meter, and the line frequency
(``freq``; optional, as older firmware may lack it). Pure: no I/O, no logging.

measurement_type is the meter's measurementType as sent: production, net-consumption or
total-consumption, and on collar/battery sites (8.3.1598) also storage, backfeed, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from shared.errors import ParseError
from shared.messages import LINE_TOTAL, PHASES, MeterInfo, PowerSample
from shared.parsers.decode import (
    WALK_ERRORS,
    all_numbers,
    expect_list,
    load_json,
    non_number_reason,
    wrong_shape,
)

METERS_ENDPOINT = "/ivp/meters"
READINGS_ENDPOINT = "/ivp/meters/readings"

_METER_FIELDS = itemgetter("eid", "measurementType", "state", "phaseCount")

# In PowerSample order: p_w, q_var, s_va, i_a, v_v, pf, then wh_delivered, wh_received.
# Present in every readings capture from 4.2.33 to 8.3.5433, so all required.
_READING_VALUES = itemgetter(
    "activePower",
    "reactivePower",
    "apparentPower",
    "current",
    "voltage",
    "pwrFactor",
    "actEnergyDlvd",
    "actEnergyRcvd",
)
_ZEROS = (0, 0, 0, 0, 0, 0, 0, 0)


def parse_meters(body: bytes) -> tuple[MeterInfo, ...]:
    """The gateway's CT meters; an empty tuple for a gateway without any (5.0.62)."""
    doc = expect_list(METERS_ENDPOINT, load_json(METERS_ENDPOINT, body), "the meter list", body)
    try:
        return tuple(_meter(entry, body) for entry in doc)
    except WALK_ERRORS as exc:
        raise ParseError(METERS_ENDPOINT, wrong_shape(exc), body) from None


def parse_meters_readings(body: bytes, meters: Sequence[MeterInfo]) -> tuple[PowerSample, ...]:
    """Samples of the enabled meters in ``meters``: the total, then L1.. per phase.

    A reading whose eid is not in ``meters`` is skipped (8.3.5167 reports an extra meter
    that /ivp/meters does not list); so are disabled meters. Only the first phase_count
    channels are phases, and an all-zero channel is an unused phase.
    """
    doc = load_json(READINGS_ENDPOINT, body)
    readings = expect_list(READINGS_ENDPOINT, doc, "the list of meter readings", body)
    enabled = {m.eid: m for m in meters if m.enabled}
    samples: list[PowerSample] = []
    try:
        for reading in readings:
            meter = enabled.get(reading["eid"])
            if meter is None:
                continue
            _add_reading(samples, meter, reading, body)
    except WALK_ERRORS as exc:
        raise ParseError(READINGS_ENDPOINT, wrong_shape(exc), body) from None
    return tuple(samples)


def _meter(entry: Any, body: bytes) -> MeterInfo:
    eid, mt, state, phase_count = _METER_FIELDS(entry)
    if type(eid) is not int or type(phase_count) is not int:
        raise ParseError(
            METERS_ENDPOINT, f"eid and phaseCount must be integers: {entry!r:.60}", body
        )
    if type(mt) is not str or type(state) is not str:
        raise ParseError(
            METERS_ENDPOINT, f"measurementType and state must be strings: {entry!r:.60}", body
        )
    return MeterInfo(eid, mt, state == "enabled", phase_count)


def _add_reading(samples: list[PowerSample], meter: MeterInfo, reading: Any, body: bytes) -> None:
    phases = PHASES[: max(meter.phase_count, 0)]
    rows = [(LINE_TOTAL, reading)]
    rows += zip(phases, reading["channels"], strict=False)  # extra channels: unused
    for line, values_of in rows:
        values = _READING_VALUES(values_of)
        freq = values_of.get("freq")
        if not all_numbers(values) or (freq is not None and not all_numbers((freq,))):
            raise ParseError(
                READINGS_ENDPOINT,
                f"eid {meter.eid} {line}: {non_number_reason((*values, freq))}",
                body,
            )
        if line != LINE_TOTAL and values == _ZEROS:
            continue  # an unused phase
        p_w, q_var, s_va, i_a, v_v, pf, delivered, received = values
        samples.append(
            PowerSample(
                meter.measurement_type,
                line,
                p_w,
                q_var,
                s_va,
                i_a,
                v_v,
                pf,
                None,
                delivered,
                received,
                freq,
            )
        )
