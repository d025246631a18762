"""Daily energy per gateway and local day, and the state that carries it across restarts.

A sink worker feeds every `PowerBatch` and `InverterBatch` it receives for one gateway into
that gateway's `DailyEnergyTracker` and writes the `DailyEnergyBatch` records it returns to
the ``energy_daily`` measurement. The tracker does no I/O except its own state file.

Meter series (one per measurement_type x line x counter) come from the lifetime counters:
``wh_lifetime`` (no ``direction`` tag) and, from meters readings, ``wh_delivered`` /
``wh_received`` (tag ``direction`` = ``delivered`` / ``received``). Rules:

* Between two samples at most ``max_gap_s`` apart the counter is taken as linear, so the
  counter at local midnight is interpolated and the increment is split across the days.
* Across a longer gap nothing is known about when the energy came: the counter holds its
  last value until the first sample after the gap, so the whole increment belongs to the
  day in which the gap ends (a sample exactly at midnight closes the day before). Days
  lying entirely inside such a gap get no meter entry (unknown, not zero). Every
  increment lands on exactly one day, so the days always sum to the counter difference,
  whether or not the supervisor restarted in between.
* A decrease is a counter reset (firmware reset, replaced meter): that interval counts 0
  and the new value is the baseline from then on. Energy is never negative.
* A day gets a meter entry only when the counter is known at its start: the first day a
  series is ever seen (it started mid-day) is not written.

Inverters: lastReportWatts integrated as a trapezoid between consecutive reports, split
at local midnight; reports more than ``max_gap_s`` apart contribute nothing between them.
Expected inverters without energy on a day get 0 Wh. The first day is partial for them.

A day is finished (and returned) once the data clock -- the newest batch tick or
``flush(now_ns)`` -- is ``max_gap_s`` past its end: only then is it certain whether a sample
still to come would be interpolated into it. Samples older than what a series has already
seen, or in a finished day, are ignored, so a replayed batch is harmless.

Local days come from `zoneinfo`: DST days are 23 or 25 hours long.

A state file that cannot be written (disk full or failing, `shared.storage`) is reported
once per episode and tried again on the next batch; the state stays in memory meanwhile,
so only a restart during the episode loses what the file misses.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from shared.messages import (
    INVERTERS,
    DailyEnergy,
    DailyEnergyBatch,
    InverterBatch,
    PowerBatch,
    Tags,
)
from shared.storage import StorageEpisode, tolerant_write, write_all

log = structlog.get_logger(__name__)

DIRECTION_TAG = "direction"
DELIVERED = "delivered"  #: wh_delivered (actEnergyDlvd: imported, for the net meter)
RECEIVED = "received"  #: wh_received (actEnergyRcvd: exported, for the net meter)
STATE_VERSION = 1
NS = 1_000_000_000
WS_PER_WH = 3600.0

SeriesKey = tuple[str, str, str]  #: measurement_type, line, direction ("" for wh_lifetime)


def day_start_ns(day: date, tz: ZoneInfo) -> int:
    """The first instant of a local day, in UTC nanoseconds.

    fold=0 puts a midnight that a DST jump skips at the jump itself, which is when that
    day begins.
    """
    return int(datetime.combine(day, time(), tzinfo=tz).timestamp()) * NS


def local_day(t_ns: int, tz: ZoneInfo) -> date:
    """The local date at an instant (midnights are whole seconds, so flooring is exact)."""
    return datetime.fromtimestamp(t_ns // NS, tz).date()


@dataclass(slots=True)
class _Counter:
    first_ns: int  #: first sample ever: days starting before it have no entry
    last_ns: int
    last_wh: float


@dataclass(slots=True)
class _Inverter:
    last_ns: int
    last_w: float
    tags: Tags


@dataclass(slots=True)
class _Day:
    observed: bool = False  #: some batch of this gateway fell in the day
    meters: dict[SeriesKey, float] = field(default_factory=dict)
    inverters: dict[str, float] = field(default_factory=dict)


class DailyEnergyTracker:
    """Accumulates one gateway's batches into finished local days."""

    def __init__(
        self,
        envoy: str,
        tz: ZoneInfo,
        expected_inverters: Mapping[str, Tags],
        max_gap_s: float,
        state_path: Path | None,
        save_every_s: float = 300.0,
    ) -> None:
        self.envoy = envoy
        self._tz = tz
        self._expected = dict(expected_inverters)
        self._max_gap_ns = int(max_gap_s * NS)
        self._state_path = state_path
        self.storage = StorageEpisode(log, state_path, "daily energy since the last save")
        self._save_every_ns = int(save_every_s * NS)
        self._reset()
        if state_path is not None and state_path.exists():
            self._load(state_path)

    def _reset(self) -> None:
        self._clock_ns = 0  #: newest time seen: drives finishing days
        self._saved_ns = 0
        self._open_day: date | None = None  #: oldest unfinished day
        self._counters: dict[SeriesKey, _Counter] = {}
        self._inverters: dict[str, _Inverter] = {}
        self._days: dict[date, _Day] = {}
        self._bounds: tuple[date, int, int] = (date.min, 0, 0)  #: the last day looked up

    # --- feeding ------------------------------------------------------------------------

    def observe_power(self, batch: PowerBatch) -> list[DailyEnergyBatch]:
        t = batch.tick_ns
        self._open(t)
        self._mark_observed(t)
        for s in batch.samples:
            for direction, wh in (
                ("", s.wh_lifetime),
                (DELIVERED, s.wh_delivered),
                (RECEIVED, s.wh_received),
            ):
                if wh is not None and math.isfinite(wh):
                    self._counter_sample((s.measurement_type, s.line, direction), t, float(wh))
        return self._advance(t)

    def observe_inverters(self, batch: InverterBatch) -> list[DailyEnergyBatch]:
        # Not the reports' times: the first poll returns every inverter's last report,
        # some from days ago, and those days must not be opened (they would read 0 Wh).
        self._open(batch.tick_ns)
        self._mark_observed(batch.tick_ns)
        for r in batch.reports:
            if math.isfinite(r.p_w):
                self._inverter_report(r.serial, r.report_s * NS, float(r.p_w), r.tags)
        return self._advance(batch.tick_ns)

    def flush(self, now_ns: int) -> list[DailyEnergyBatch]:
        """Finish days that are over even if no batch arrived (called on a timer)."""
        return self._advance(now_ns)

    def save(self) -> None:
        """Write the state file now. Call it after handing on the days a call returned
        (the tracker itself saves only periodically, while no day is pending)."""
        if self._state_path is None:
            return
        path, data = self._state_path, json.dumps(self._state()).encode()
        # On a full disk _saved_ns stays: the next batch tries again.
        if tolerant_write(self.storage, lambda: _write_atomic(path, data)):
            self._saved_ns = self._clock_ns

    # --- meters -------------------------------------------------------------------------

    def _counter_sample(self, key: SeriesKey, t: int, wh: float) -> None:
        c = self._counters.get(key)
        if c is None:
            self._counters[key] = _Counter(t, t, wh)
            self._meter_add(key, c=self._counters[key], t0=t, t1=t, inc=0.0)
            return
        if t <= c.last_ns:
            return  # a replayed or duplicate tick
        inc = max(wh - c.last_wh, 0.0)  # a decrease is a reset: new baseline, nothing lost
        # Long gap: all of it at its end, as a 1 ns stretch so that a sample exactly at
        # midnight gives it to the day ending there, like an interpolated stretch would.
        t0 = c.last_ns if t - c.last_ns <= self._max_gap_ns else t - 1
        c.last_ns, c.last_wh = t, wh
        self._meter_add(key, c, t0, t, inc)

    def _meter_add(self, key: SeriesKey, c: _Counter, t0: int, t1: int, inc: float) -> None:
        """Spread `inc` linearly over [t0, t1] (all of it at t1 when t0 == t1)."""
        day, start, end = self._bounds
        if start <= t0 < t1 < end and self._is_open(day):  # the hot path: one open day
            if start >= c.first_ns:
                meters = self._day(day).meters
                meters[key] = meters.get(key, 0.0) + inc
            return
        span = t1 - t0
        for day, a, b in self._split(t0, t1):
            if self._span(day)[0] >= c.first_ns:  # else the counter at its start is unknown
                meters = self._day(day).meters
                meters[key] = meters.get(key, 0.0) + (inc * (b - a) / span if span else inc)

    # --- inverters ----------------------------------------------------------------------

    def _inverter_report(self, serial: str, t: int, w: float, tags: Tags) -> None:
        inv = self._inverters.get(serial)
        tags = tags or self._expected.get(serial, ())
        if inv is None:
            self._inverters[serial] = _Inverter(t, w, tags)
            self._inverter_add(serial, t, t, w, w)
            return
        if t <= inv.last_ns:
            return
        t0, w0 = inv.last_ns, inv.last_w
        inv.last_ns, inv.last_w, inv.tags = t, w, tags
        if t - t0 > self._max_gap_ns:
            t0, w0 = t, w  # too far apart to say what happened in between
        self._inverter_add(serial, t0, t, w0, w)

    def _inverter_add(self, serial: str, t0: int, t1: int, w0: float, w1: float) -> None:
        """Trapezoid of the power line from (t0, w0) to (t1, w1), cut at midnights."""
        span = t1 - t0
        for day, a, b in self._split(t0, t1):
            wh = 0.0
            if span:
                wa = w0 + (w1 - w0) * (a - t0) / span
                wb = w0 + (w1 - w0) * (b - t0) / span
                wh = (b - a) / NS * (wa + wb) / 2 / WS_PER_WH
            energies = self._day(day).inverters
            energies[serial] = energies.get(serial, 0.0) + wh

    # --- days ---------------------------------------------------------------------------

    def _split(self, t0: int, t1: int) -> Iterable[tuple[date, int, int]]:
        """(day, a, b): the part [a, b] of [t0, t1] in each open day, then t1's own day.

        t1's day is also given when [t0, t1] has no time in it (a == b == t1): the sample
        there is what gives that day an entry. Parts in finished days are dropped: those
        days have been written already.
        """
        day = self._day_of(t0)
        while t0 < t1:
            start, end = self._span(day)
            a, b = max(t0, start), min(t1, end)
            if b > a and self._is_open(day):
                yield day, a, b
            if t1 <= end:
                break
            day += timedelta(days=1)
        last = self._day_of(t1)
        if self._is_open(last) and (t0 == t1 or self._span(last)[0] == t1):
            yield last, t1, t1

    def _advance(self, now_ns: int) -> list[DailyEnergyBatch]:
        self._clock_ns = max(self._clock_ns, now_ns)
        finished: list[DailyEnergyBatch] = []
        while self._open_day is not None:
            next_day = self._open_day + timedelta(days=1)
            if self._span(next_day)[0] + self._max_gap_ns > self._clock_ns:
                break
            batch = self._finish(self._open_day)
            if batch is not None:
                finished.append(batch)
            self._open_day = next_day
        # A finished day is saved by the caller once it has handed the day on (`save`):
        # saving here first, a kill before the hand-over would lose that day for good.
        if (
            self._state_path is not None
            and not finished
            and (self._clock_ns - self._saved_ns >= self._save_every_ns)
        ):
            self.save()
        return finished

    def _finish(self, day: date) -> DailyEnergyBatch | None:
        d = self._days.pop(day, None)
        if d is None:
            return None
        entries = [
            DailyEnergy(mt, line, None, wh, ((DIRECTION_TAG, direction),) if direction else ())
            for (mt, line, direction), wh in sorted(d.meters.items())
        ]
        energies = dict.fromkeys(self._expected, 0.0) | d.inverters
        for serial, wh in sorted(energies.items()):
            inv = self._inverters.get(serial)
            tags = inv.tags if inv is not None else self._expected.get(serial, ())
            entries.append(DailyEnergy(INVERTERS, None, serial, wh, tags))
        if not entries or not (d.meters or d.inverters or d.observed):
            return None  # the gateway was not polled that day: unknown, not zero
        return DailyEnergyBatch(self.envoy, day.isoformat(), self._span(day)[0], tuple(entries))

    def _open(self, t: int) -> None:
        if self._open_day is None:
            self._open_day = self._day_of(t)

    def _mark_observed(self, t: int) -> None:
        day = self._day_of(t)
        if self._is_open(day):
            self._day(day).observed = True

    def _is_open(self, day: date) -> bool:
        return self._open_day is not None and day >= self._open_day

    def _day(self, day: date) -> _Day:
        d = self._days.get(day)
        if d is None:
            d = self._days[day] = _Day()
        return d

    def _day_of(self, t: int) -> date:
        day, start, end = self._bounds
        if start <= t < end:
            return day  # the hot path: every sample of a batch lands on the same day
        day = local_day(t, self._tz)
        self._span(day)
        return day

    def _span(self, day: date) -> tuple[int, int]:
        """[start, end) of a local day in UTC ns; the last one asked for is cached."""
        cached, start, end = self._bounds
        if day != cached:
            start = day_start_ns(day, self._tz)
            end = day_start_ns(day + timedelta(days=1), self._tz)
            self._bounds = (day, start, end)
        return start, end

    # --- state file ---------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "envoy": self.envoy,
            "clock_ns": self._clock_ns,
            "open_day": self._open_day.isoformat() if self._open_day else None,
            "counters": [[*k, c.first_ns, c.last_ns, c.last_wh] for k, c in self._counters.items()],
            "inverters": [[s, i.last_ns, i.last_w, i.tags] for s, i in self._inverters.items()],
            "days": {
                day.isoformat(): {
                    "observed": d.observed,
                    "meters": [[*k, wh] for k, wh in d.meters.items()],
                    "inverters": d.inverters,
                }
                for day, d in self._days.items()
            },
        }

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_bytes())
            if state["version"] != STATE_VERSION:
                raise ValueError(f"version {state['version']}")
            self._clock_ns = self._saved_ns = int(state["clock_ns"])
            self._open_day = date.fromisoformat(state["open_day"]) if state["open_day"] else None
            for mt, line, direction, first, last, wh in state["counters"]:
                self._counters[(mt, line, direction)] = _Counter(first, last, wh)
            for serial, last, w, tags in state["inverters"]:
                self._inverters[serial] = _Inverter(last, w, tuple(map(tuple, tags)))
            for day, d in state["days"].items():
                self._days[date.fromisoformat(day)] = _Day(
                    d["observed"],
                    {(mt, line, direction): wh for mt, line, direction, wh in d["meters"]},
                    dict(d["inverters"]),
                )
        except (OSError, ValueError, KeyError, TypeError) as e:
            # Losing the state costs at most the current day; refusing to start costs more.
            log.warning("daily state unreadable, starting afresh", file=str(path), error=str(e))
            self._reset()


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a crash leaves the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        tmp.unlink(missing_ok=True)  # give back the space a partial copy took
        raise
    os.replace(tmp, path)
