"""Fault plans: what the simulator does wrong, per endpoint path, and for how long.

A `FaultPlan` maps a request path (``/production.json``, ``/login/login.json``; ``*`` for
every path without its own entry) to one `Fault`. Servers call `FaultPlan.take` once per
request from their handler threads while tests and the CLI change the plan, so every
method holds one lock. ``times=N`` means "the next N requests, then healthy again";
``for=S`` "for the next S seconds"; both together, whichever ends first.

The text form used by ``--faults`` is comma-separated ``PATH=KIND[:ARG][:key=value]``::

    /production.json=latency:3,/api/v1/production/inverters=status:503:times=2,/info=html

Two misbehaviours of real gateways around 23:00 local time (home-assistant/core#156189)
are ``nightly`` faults, active only inside a daily window from local hour ``at``:

    *=nightly                                   # everything unanswered 23:00-23:03
    /ivp/pdm/device_data=nightly:85:at=23.0167  # device_data hangs 85 s from 23:01

A request inside the window is held until the window ends (then answered), so a client
with a shorter read timeout sees the outage as timeouts. A device_data answer that only
comes after S seconds at any time of day is ``latency:S``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum


class FaultKind(StrEnum):
    LATENCY = "latency"  #: answer normally after ``seconds``
    TIMEOUT = "timeout"  #: read the request, never answer (until the client leaves)
    RESET = "reset"  #: close the connection abruptly (TCP RST)
    STATUS = "status"  #: answer ``status`` (500, 503, ...) with an optional Retry-After
    HTML = "html"  #: an HTML error page with status 200, as firmware 3.x does
    TRUNCATE = "truncate"  #: the first half of the real body, Content-Length to match
    UNAUTHORIZED = "unauthorized"  #: 401 even for a valid token
    REFUSE_LOGINS = "refuse_logins"  #: cloud: refuse logins with ``status`` (429 or 401)
    NIGHTLY = "nightly"  #: daily from local hour ``at`` for ``seconds``: hold, then answer


# Kinds whose one positional argument is a number, and which field it fills.
_POSITIONAL = {
    FaultKind.LATENCY: "seconds",
    FaultKind.TIMEOUT: "seconds",
    FaultKind.STATUS: "status",
    FaultKind.REFUSE_LOGINS: "status",
    FaultKind.NIGHTLY: "seconds",
}
NIGHTLY_S = 180.0  #: the nightly window's default length (23:00-23:03)
NIGHTLY_AT = 23.0  #: local hour it starts at by default


@dataclass(frozen=True, slots=True)
class Fault:
    """One misbehaviour. Only the fields its kind uses matter."""

    kind: FaultKind
    seconds: float = 0.0  #: latency: delay; timeout: give up after this (0 = until stop);
    #: nightly: the window's length (0 = `NIGHTLY_S`)
    status: int = 503  #: status / refuse_logins: the HTTP status answered
    retry_after: float | None = None  #: status / refuse_logins: a Retry-After header
    times: int | None = None  #: apply to the next N requests only; None = until cleared
    for_s: float | None = None  #: apply for this long after being set, then heal
    at: float = NIGHTLY_AT  #: nightly: the local hour (0-24, 23.5 = 23:30) the window opens

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.kind is FaultKind.NIGHTLY and not self.seconds:
            object.__setattr__(self, "seconds", NIGHTLY_S)
        if self.times is not None and self.times < 1:
            raise ValueError(f"fault {self.kind}: times must be >= 1, got {self.times}")
        if not 0 <= self.seconds < math.inf:
            raise ValueError(f"fault {self.kind}: seconds must be >= 0, got {self.seconds}")
        if self.retry_after is not None and not 0 <= self.retry_after < math.inf:
            raise ValueError(f"fault {self.kind}: retry_after must be >= 0, got {self.retry_after}")
        if self.for_s is not None and not 0 < self.for_s < math.inf:
            raise ValueError(f"fault {self.kind}: for must be > 0 seconds, got {self.for_s}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"fault {self.kind}: status must be an HTTP status, got {self.status}")
        if not 0 <= self.at < 24:
            raise ValueError(f"fault {self.kind}: at must be a local hour 0-24, got {self.at}")

    def window_left_s(self, now: float) -> float:
        """nightly: seconds until the window holding epoch time ``now`` ends; 0 outside."""
        tm = time.localtime(now)
        of_day = tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec + now % 1
        since = (of_day - self.at * 3600) % 86400  # a window may run past midnight
        return self.seconds - since if since < self.seconds else 0.0

    def spec(self) -> str:
        """The text form `parse` reads back (only the fields this kind uses)."""
        parts = [self.kind.value]
        if self.kind in (FaultKind.LATENCY, FaultKind.TIMEOUT, FaultKind.NIGHTLY) and self.seconds:
            parts.append(repr(self.seconds))
        if self.kind is FaultKind.NIGHTLY:
            parts.append(f"at={self.at!r}")
        if self.kind in (FaultKind.STATUS, FaultKind.REFUSE_LOGINS):
            parts.append(str(self.status))
            if self.retry_after is not None:
                parts.append(f"retry_after={self.retry_after!r}")
        if self.times is not None:
            parts.append(f"times={self.times}")
        if self.for_s is not None:
            parts.append(f"for={self.for_s!r}")
        return ":".join(parts)

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``KIND[:ARG][:key=value...]``, e.g. ``status:503:retry_after=30:times=2``."""
        kind_text, *parts = text.strip().split(":")
        try:
            kind = FaultKind(kind_text.strip().lower())
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault kind {kind_text!r} (known: {known})") from None
        fields: dict[str, float | int | None] = {}
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep:
                key, value = _POSITIONAL.get(kind, ""), part
                if not key:
                    raise ValueError(f"fault {kind}: takes no argument, got {part!r}")
            key = {"for": "for_s"}.get(key.strip(), key.strip())
            if key not in ("seconds", "status", "retry_after", "times", "for_s", "at"):
                raise ValueError(f"fault {kind}: unknown option {key!r}")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"fault {kind}: {key} must be a number, got {value!r}") from None
            fields[key] = int(number) if key in ("status", "times") else number
        if kind is FaultKind.REFUSE_LOGINS and "status" not in fields:
            fields["status"] = 429
        return cls(kind, **fields)  # type: ignore[arg-type]


class FaultPlan:
    """Thread-safe faults per path; servers `take` one per request.

    ``clock`` (monotonic seconds) times faults with ``for_s``; ``wall_clock`` (epoch
    seconds, read as local time) places the windows of nightly faults.
    """

    def __init__(
        self,
        faults: dict[str, Fault] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.wall_clock = wall_clock
        self._faults: dict[str, Fault] = {}
        self._deadlines: dict[str, float] = {}
        for path, fault in (faults or {}).items():
            self.set(path, fault)

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """``PATH=FAULT,PATH=FAULT`` (see the module docstring); empty means no faults."""
        plan = cls()
        for entry in filter(None, (e.strip() for e in spec.split(","))):
            path, sep, fault = entry.partition("=")
            if not sep or not (path.startswith("/") or path == "*"):
                raise ValueError(f"fault entry {entry!r}: expected PATH=KIND, e.g. /info=html")
            try:
                plan.set(path.strip(), Fault.parse(fault))
            except ValueError as error:
                raise ValueError(f"fault entry {entry!r}: {error}") from None
        return plan

    def set(self, path: str, fault: Fault) -> None:
        """Apply ``fault`` to requests for ``path`` (replacing any fault already there)."""
        with self._lock:
            self._faults[path] = fault
            self._deadlines.pop(path, None)
            if fault.for_s is not None:
                self._deadlines[path] = self._clock() + fault.for_s

    def clear(self, path: str | None = None) -> None:
        """Heal ``path``, or every path when None."""
        with self._lock:
            if path is None:
                self._faults.clear()
                self._deadlines.clear()
            else:
                self._faults.pop(path, None)
                self._deadlines.pop(path, None)

    def get(self, path: str) -> Fault | None:
        """The fault that the next request for ``path`` would get, without using it up."""
        with self._lock:
            self._expire()
            return self._faults.get(path, self._faults.get("*"))

    def take(self, path: str) -> Fault | None:
        """The fault for this request to ``path``, counting it against ``times``.

        A nightly fault outside its window is no fault (and not counted).
        """
        with self._lock:
            self._expire()
            key = path if path in self._faults else "*"
            fault = self._faults.get(key)
            if (
                fault is not None
                and fault.kind is FaultKind.NIGHTLY
                and not fault.window_left_s(self.wall_clock())
            ):
                return None
            if fault is not None and fault.times is not None:
                if fault.times <= 1:
                    del self._faults[key]
                    self._deadlines.pop(key, None)
                else:
                    self._faults[key] = replace(fault, times=fault.times - 1)
            return fault

    def snapshot(self) -> dict[str, Fault]:
        with self._lock:
            self._expire()
            return dict(self._faults)

    def _expire(self) -> None:
        if self._deadlines:
            now = self._clock()
            for path in [p for p, deadline in self._deadlines.items() if deadline <= now]:
                del self._deadlines[path]
                del self._faults[path]

    def __repr__(self) -> str:
        return f"FaultPlan({self.snapshot()!r})"
