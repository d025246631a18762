"""The world a simulated year runs in: virtual time, an in-process network, a cloud and a
database that fail on a schedule.

`VirtualClock` is the only clock: true time moves only when an actor waits (or a request
takes its answer time), and everything due meanwhile runs first, in time order. The wall
clock the logger reads is true time plus the steps the scenario makes (NTP stepping the
machine's clock); the gateway, the cloud and the monotonic clock keep true time.

`GatewayNetwork` is a `shared.gateway_transport.Transport`: the real `GatewayClient` sends its
requests through it to a `SimulatedGateway` answering in this process (its `answer`), so
scheme detection, digest auth, token checks and error classification are the real ones.
The adapter adds what a network does: the answer time (virtual), refused connections on
the wrong scheme, connect timeouts while the gateway is unreachable, read timeouts while
it hangs. `YearCloud` and `YearDatabase` stand in for Enlighten and InfluxDB at the same
seams the workers already take (the token keeper's `Cloud`, the forwarder's writer).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from shared.errors import CloudError
from shared.gateway_transport import Answer, Get
from shared.simulator import SimulatedGateway
from shared.simulator.server import Request
from shared.simulator.timing import default_s, timing_key
from workers.influx_writer import Outcome, WriteResult

#: what the network does to a request at a given true time
Weather = Callable[[float], str | None]  # None, "unreachable" or "hang"


class VirtualClock:
    """Discrete-event time: `advance` runs every timer due before it moves the clock."""

    def __init__(self, start_s: float, end_s: float) -> None:
        self.true_s = start_s
        self.end_s = end_s
        self.step_s = 0.0  #: wall clock minus true time: the steps made so far
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        """The machine's wall clock (epoch s), steps included."""
        return self.true_s + self.step_s

    def monotonic(self) -> float:
        return self.true_s

    def at(self, true_s: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (true_s, next(self._order), action))

    def advance(self, seconds: float) -> None:
        target = self.true_s + max(seconds, 0.0)
        while self._timers and self._timers[0][0] <= target:
            due, _, action = heapq.heappop(self._timers)
            self.true_s = max(self.true_s, due)
            action()
        self.true_s = target

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """`threading.Event.wait` in virtual time; the year's end sets the event."""
        self.advance(min(timeout, max(self.end_s - self.true_s, 0.0)))
        if self.true_s >= self.end_s:
            event.set()
        return event.is_set()


class GatewayNetwork:
    """Carries the client's requests to an in-process simulated gateway (a `Transport`)."""

    def __init__(self, gateway: SimulatedGateway, clock: VirtualClock, weather: Weather) -> None:
        self.gateway = gateway
        self._clock = clock
        self._weather = weather

    def send(self, get: Get) -> Answer:
        scheme, host, path, headers, (connect_s, read_s) = get
        weather = self._weather(self._clock.true_s)
        if weather == "unreachable":
            self._clock.advance(connect_s)
            raise TimeoutError(f"connect to {host} timed out")
        if (scheme == "https") != self.gateway.uses_tokens:
            raise ConnectionRefusedError(111, f"Connection refused: {host}")
        if weather == "hang":
            self._clock.advance(read_s)
            raise TimeoutError(f"read from {host} timed out")
        url = urlsplit(path)
        query = parse_qs(url.query)
        answer = self.gateway.answer(
            Request("GET", path, url.path, query, {k.lower(): v for k, v in headers.items()}, b"")
        )
        # The time a real gateway takes (the simulator's model), spent in virtual time.
        self._clock.advance(min(default_s(timing_key(url.path, query)), read_s))
        answer_headers = {"content-type": answer.content_type}
        answer_headers.update((k.lower(), v) for k, v in (answer.headers or {}).items())
        return Answer(answer.status, answer_headers, answer.body)

    def close(self) -> None:
        pass


class YearCloud:
    """Enlighten: logs in unless refusing, hands out the gateway's tokens."""

    def __init__(
        self,
        gateway: SimulatedGateway,
        clock: VirtualClock,
        refusing: Callable[[float], bool],
        user_type: str,
        lifetime_s: float,
    ) -> None:
        self._gateway = gateway
        self._clock = clock
        self._refusing = refusing
        self._user_type = user_type
        self._lifetime_s = lifetime_s
        self.logins: list[float] = []  #: true times of every login attempt
        self.tokens: list[float] = []  #: true times of every token handed out

    def login(self, email: str, password: str) -> str:
        self.logins.append(self._clock.true_s)
        if self._refusing(self._clock.true_s):
            raise CloudError("login refused: HTTP 503 from the cloud (the year's outage)")
        return f"session-{len(self.logins)}"

    def fetch_token(self, session_id: str, serial: str, username: str) -> str:
        self.tokens.append(self._clock.true_s)
        return self._gateway.issue_token(
            lifetime_s=self._lifetime_s, user_type=self._user_type, serial=serial
        )


class YearDatabase:
    """InfluxDB: takes line protocol unless down; counts the lines it stored."""

    def __init__(self, clock: VirtualClock, down: Callable[[float], bool]) -> None:
        self._clock = clock
        self._down = down
        self.lines = 0
        self.refused = 0
        self.ok_writes: list[float] = []  #: true times of writes that succeeded
        #: batches written: a batch is one tick's lines, all stamped with the tick, and the
        #: forwarder joins whole batches in order, so each run of one timestamp is a batch
        #: (not distinct timestamps: after the clock is stepped back, an hour of ticks repeats)
        self.batches = 0

    def write(self, payload: bytes, kind: str) -> WriteResult:
        if self._down(self._clock.true_s):
            self.refused += 1
            return WriteResult(Outcome.RETRY, 503, "service unavailable (the year's outage)")
        stamps = [line.rsplit(b" ", 1)[-1] for line in payload.splitlines()]
        self.lines += len(stamps)
        self.batches += sum(1 for i, stamp in enumerate(stamps) if i == 0 or stamp != stamps[i - 1])
        self.ok_writes.append(self._clock.true_s)
        return WriteResult(Outcome.OK, 204)
