"""Parsing ``/production.json`` (plain and ``?details=1``) into `PowerSample` records.

This is the hot path: a poller calls `parse_production` once per gateway per second, and it
has a budget of 1.3x a bare ``orjson.loads`` of the same bytes. So the walk does as little
Python as possible per entry: one `itemgetter` call pulls the seven numbers of an eim entry
in `PowerSample` field order, the record is built with ``tuple.__new__`` from precomputed
(measurement_type, line) prefixes, and the number types of everything read are checked in
one pass at the end. Exceptions from a malformed document are caught once around the walk
and re-raised as `ParseError`. Pure: no I/O, no logging (the poller logs the notes).

Rules (SPEC "The gateway's API", issue 2):

* ``production[]`` has an ``inverters`` entry (the inverter sum: p_w and wh_lifetime only)
  and, on metered gateways, an ``eim`` entry; ``consumption[]`` has eim entries for
  total-consumption and net-consumption. ``storage[]`` (AC batteries) is not written yet.
* An eim entry with ``activeCount`` 0 (CT absent or disabled) produces nothing.
* ``lines[]`` index 0, 1, 2 are L1, L2, L3; a line whose values are all zero is padding.
* Firmware 8.3.5433 reports total-consumption equal to net-consumption; see
  `_correct_total_is_net`.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, NamedTuple

from orjson import JSONDecodeError, loads

from shared.errors import ParseError
from shared.messages import (
    INVERTERS,
    LINE_TOTAL,
    NET_CONSUMPTION,
    PHASES,
    PRODUCTION,
    TOTAL_CONSUMPTION,
    PowerSample,
)
from shared.parsers.decode import (
    NUMBER_TYPES,
    PRODUCTION_JSON,
    WALK_ERRORS,
    non_number_reason,
    not_json_error,
    wrong_shape,
)

ENDPOINT = PRODUCTION_JSON

TOTAL_IS_NET_NOTE = (
    "total-consumption equals net-consumption while production is non-zero "
    "(firmware 8.3.5433 bug): total-consumption p_w and wh_lifetime written as "
    "production + net; its q_var, s_va, i_a and pf left out"
)


class ProductionParse(NamedTuple):
    """The samples of one /production.json body, and notes about corrections made."""

    samples: tuple[PowerSample, ...]
    notes: tuple[str, ...]  #: the poller logs each distinct note once


# The seven numbers of an eim entry (or one of its lines) in PowerSample field order:
# p_w, q_var, s_va, i_a, v_v, pf, wh_lifetime. Present in every capture from 4.2.27 to
# 8.3.5433, so all required.
_EIM_VALUES = itemgetter(
    "wNow", "reactPwr", "apprntPwr", "rmsCurrent", "rmsVoltage", "pwrFactor", "whLifetime"
)
_INVERTER_VALUES = itemgetter("wNow", "whLifetime")
_ZEROS = (0, 0, 0, 0, 0, 0, 0)  # equal to (0.0, ...) too: a padded line
_NO_METER_COUNTERS = (None, None, None)  # wh_delivered, wh_received, freq_hz: meters readings only

# (measurement_type, line) prefixes for the total and for each phase, built once.
_PREFIXES = {
    mt: ((mt, LINE_TOTAL), tuple((mt, line) for line in PHASES))
    for mt in (PRODUCTION, TOTAL_CONSUMPTION, NET_CONSUMPTION)
}

_new = tuple.__new__


def parse_production(body: bytes) -> ProductionParse:
    """The samples in a /production.json body; `ParseError` for anything malformed."""
    try:
        doc = loads(body)  # not load_json(): one Python call less on the hot path
    except (JSONDecodeError, TypeError) as exc:
        raise not_json_error(ENDPOINT, body, exc) from None
    samples: list[PowerSample] = []
    numbers: list[Any] = []
    active: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    try:
        _walk(doc["production"], PRODUCTION, samples, numbers, active, notes)
        # consumption[] is absent on gateways without CTs (5.0.49, 7.6.114_without_cts).
        _walk(doc.get("consumption", ()), None, samples, numbers, active, notes)
        if not NUMBER_TYPES.issuperset(map(type, numbers)):
            raise ParseError(ENDPOINT, non_number_reason(numbers), body)
        total = active.get(TOTAL_CONSUMPTION)
        net = active.get(NET_CONSUMPTION)
        if (
            total is not None
            and net is not None
            and total["wNow"] == net["wNow"]
            and total["whLifetime"] == net["whLifetime"]
        ):
            corrected = _correct_total_is_net(total, net, active.get(PRODUCTION))
            if corrected is not None:
                samples = [s for s in samples if s[0] != TOTAL_CONSUMPTION] + corrected
                notes.append(TOTAL_IS_NET_NOTE)
    except WALK_ERRORS as exc:
        raise ParseError(ENDPOINT, wrong_shape(exc), body) from None
    # The NamedTuple's own __new__ is a Python function: build it like the samples.
    if notes:
        return _new(ProductionParse, (tuple(samples), tuple(dict.fromkeys(notes))))
    return _new(ProductionParse, (tuple(samples), ()))


def _walk(
    entries: Any,
    default_type: str | None,
    samples: list[PowerSample],
    numbers: list[Any],
    active: dict[str, dict[str, Any]],
    notes: list[str],
) -> None:
    """Append the samples of one section (production[] or consumption[])."""
    for entry in entries:
        kind = entry["type"]
        if kind == "eim":
            if not entry["activeCount"] > 0:
                continue  # CT absent or disabled: its numbers are noise
            # 4.2.33 omits measurementType; in production[] that can only mean production.
            mt = entry.get("measurementType", default_type)
            prefixes = _PREFIXES.get(mt)
            if prefixes is None:
                notes.append(f"eim entry with measurementType {mt!r:.40} skipped")
                continue
            active[mt] = entry
            values = _EIM_VALUES(entry)
            numbers += values
            total_prefix, line_prefixes = prefixes
            samples.append(_new(PowerSample, total_prefix + values + _NO_METER_COUNTERS))
            # lines[] is only sent with ?details=1 (and by 7.x on plain production.json).
            lines = entry.get("lines")
            if lines:
                for prefix, line in zip(line_prefixes, lines, strict=False):
                    values = _EIM_VALUES(line)
                    numbers += values
                    if values != _ZEROS:  # 8.3.1598 and 8.3.5433 pad to three lines
                        samples.append(_new(PowerSample, prefix + values + _NO_METER_COUNTERS))
        elif kind == "inverters":
            values = _INVERTER_VALUES(entry)
            numbers += values
            p_w, wh = values
            samples.append(
                _new(
                    PowerSample,
                    (
                        INVERTERS,
                        LINE_TOTAL,
                        p_w,
                        None,
                        None,
                        None,
                        None,
                        None,
                        wh,
                        None,
                        None,
                        None,
                    ),
                )
            )
        elif not isinstance(kind, str):
            raise TypeError(f"entry type is {type(kind).__name__}, not a string")


def _correct_total_is_net(
    total: dict[str, Any], net: dict[str, Any], production: dict[str, Any] | None
) -> list[PowerSample] | None:
    """Total-consumption rebuilt as production + net, or None if this is not the quirk.

    Firmware 8.3.5433 reports total-consumption equal to net-consumption (same wNow and
    whLifetime, for the total and every line). Equal lifetime counters cannot both be
    right once the site has produced anything, so "production is non-zero" is judged on
    wNow *or* whLifetime: at night wNow is 0 and the counter must stay corrected, or the
    daily energy would jump. Only p_w and wh_lifetime can be derived; v_v is the same
    wire, so it is kept; q_var, s_va, i_a and pf become None. Lines are matched by index;
    a line production does not report cannot be derived and is left out.
    """
    if production is None or (production["wNow"] == 0 and production["whLifetime"] == 0):
        return None
    # Only the first three lines were read (and type-checked) by the walk.
    total_lines = (total.get("lines") or ())[:3]
    net_lines = (net.get("lines") or ())[:3]
    if len(total_lines) != len(net_lines) or any(
        t["wNow"] != n["wNow"] or t["whLifetime"] != n["whLifetime"]
        for t, n in zip(total_lines, net_lines, strict=True)
    ):
        return None
    prod_lines = production.get("lines") or ()
    total_prefix, line_prefixes = _PREFIXES[TOTAL_CONSUMPTION]
    rows = [(total_prefix, total, net, production)]
    rows += zip(line_prefixes, total_lines, net_lines, prod_lines, strict=False)  # shortest wins
    corrected = []
    for prefix, t, n, p in rows:
        if _EIM_VALUES(t) == _ZEROS:
            continue  # padding, as in the uncorrected walk
        p_w = p["wNow"] + n["wNow"]
        wh = p["whLifetime"] + n["whLifetime"]
        corrected.append(
            _new(
                PowerSample,
                (*prefix, p_w, None, None, None, t["rmsVoltage"], None, wh, None, None, None),
            )
        )
    return corrected
