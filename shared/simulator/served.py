"""A bounded record of the readings a simulated gateway served, for end-to-end checks.

Owns `ServedReading` and the small summaries taken of each data body, so a chaos test
can compare what the gateway said with what reached the sinks without keeping bodies.
Summaries never raise: a body that is not the JSON expected summarises to ``{}``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

# Endpoints whose bodies are recorded; everything else (info, meters list) is not data.
#: the data endpoints whose answers are recorded (the power tick reads one of the first two)
RECORDED = (
    "/ivp/meters/readings",
    "/api/v1/production",
    "/production.json",
    "/api/v1/production/inverters",
)


@dataclass(frozen=True, slots=True)
class ServedReading:
    """One data body a gateway answered with (status 200 or not)."""

    endpoint: str  #: the request path, e.g. "/production.json"
    time: float  #: the gateway clock when it answered, epoch seconds
    status: int
    complete: bool  #: False when a fault cut or replaced the body
    values: Mapping[str, float]  #: see `summarize`


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def summarize(endpoint: str, body: bytes) -> dict[str, float]:
    """The numbers worth comparing, keyed by where they came from.

    production.json: ``"<measurementType or type>.<line>.wNow"`` and ``.whLifetime``
    (line ``total``, ``L1``..); meters readings: ``"<eid>.activePower"``, ``.actEnergyDlvd``,
    ``.actEnergyRcvd``; inverters: ``"<serial>.lastReportWatts"`` and ``.lastReportDate``.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    out: dict[str, float] = {}

    def put(key: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            out[key] = number

    try:
        if endpoint == "/production.json":
            for section in ("production", "consumption", "storage"):
                for entry in data.get(section) or ():
                    name = entry.get("measurementType") or entry.get("type", section)
                    lines = [("total", entry)] + [
                        (f"L{i}", line) for i, line in enumerate(entry.get("lines") or (), 1)
                    ]
                    for line_name, values in lines:
                        for field in ("wNow", "whLifetime"):
                            put(f"{name}.{line_name}.{field}", values.get(field))
        elif endpoint == "/ivp/meters/readings":
            for meter in data:
                for field in ("activePower", "actEnergyDlvd", "actEnergyRcvd"):
                    put(f"{meter['eid']}.{field}", meter.get(field))
        elif endpoint == "/api/v1/production/inverters":
            for inverter in data:
                for field in ("lastReportWatts", "lastReportDate"):
                    put(f"{inverter['serialNumber']}.{field}", inverter.get(field))
    except (AttributeError, KeyError, TypeError):
        return out
    return out


class ServedLog:
    """The last ``limit`` served readings, appended from handler threads."""

    def __init__(self, limit: int = 2000) -> None:
        self._items: deque[ServedReading] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def add(self, reading: ServedReading) -> None:
        with self._lock:
            self._items.append(reading)

    def snapshot(self) -> list[ServedReading]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
