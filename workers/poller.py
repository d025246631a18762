"""What the power and inverter pollers share: aligned ticks, one poll in flight, backoff.

Ticks fall on wall-clock multiples of the interval, so every gateway's points share
timestamps. Each poll is due a fixed phase after its tick (`PollerSettings.phase_s`,
spread across the site's gateways by `supervisor.plan.stagger`), so a site's pollers do
not all wake at the same instant; the batch keeps the tick as its time and carries the
phase. The poll thread keeps the schedule and runs the polls, one at a time: a tick whose
poll came due while the previous one still ran is skipped and reported, never queued
(queueing would overload the gateway). The main thread owns the mailbox (heartbeats,
tokens, Stop) and watches the poll thread: a poll stuck far beyond every timeout means a
wedged socket, and the worker exits so the supervisor restarts it clean.

Why a slow answer never costs a fast tick (issue 13). A gateway computes its slow JSON
endpoints (production.json 5 s, inventory.json 6 s, /home 9 s) one at a time on one
backend, and answers ``/ivp/*`` and ``/api/v1/*`` (0.3 s) alongside them. So:

* the tick path asks only fast endpoints (power: ``/ivp/meters/readings`` or
  ``/api/v1/production``; inverters: ``/api/v1/production/inverters``): a 0.3 s answer
  fits in a 1 s tick with room for jitter;
* the power poller's production.json runs on a thread of its own, at its own cadence
  (``poll.production_s``), one in flight (`workers.power.ProductionFetch`); its result
  joins the next tick's batch, so the tick never waits for it;
* `shared.gateway.GatewayClient` serialises slow requests across both pollers of a
  gateway with a lock file, and lets fast ones go alongside without it, so neither the
  inverter poller nor production.json ever holds a power tick up.

The gateway is then never asked more than it takes: at most one slow request from us at a
time (it would only queue on its one backend), and at most one fast request per poll
thread (three in all), each thread waiting for its own answer before it asks again. A
fast endpoint that hangs itself (the 23:00 outage, a device_data hang) still costs the
ticks it hangs over, and they are reported skipped with the reason.

Reads from the inbox: `TokenIssued`, `Stop`. Writes to the outbox: the feed's batches,
`PollReport` (with the endpoint read and the configured cadence), `GatewayIdentified`,
`TokenRejected`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from shared.backoff import Backoff
from shared.config import GatewayConfig
from shared.errors import GatewayAuthError, GatewayError
from shared.gateway import GatewayClient
from shared.messages import (
    Batch,
    GatewayIdentified,
    GatewayInfo,
    PollReport,
    Stop,
    TokenIssued,
    TokenRejected,
)
from workers.mailbox import Mailbox

MAX_BACKOFF_S = 120.0  #: the nightly ~23:00 outage lasts minutes; do not wait longer
REIDENTIFY_AFTER_FAILURES = 3  #: a firmware update can switch HTTP to HTTPS under us
EXIT_WEDGED = 3  #: exit code of a poller whose poll thread stopped coming back
WATCH_EVERY_S = 1.0  #: how often the main thread looks at the poll thread


@dataclass(frozen=True, slots=True)
class PollerSettings:
    """Everything a poller process needs."""

    gateway: GatewayConfig
    feed: str  #: "power" or "inverters"
    interval_s: float
    state_dir: Path
    phase_s: float  #: each poll is due this long after its tick, 0 <= phase_s < interval_s


class Feed(Protocol):
    """One kind of poll: what to fetch and how to turn it into a batch.

    ``tick_ns`` is the batch's time; the batch carries ``phase_ns`` beside it.
    ``endpoint`` names what the last poll read (status shows it).
    """

    endpoint: str

    def poll(
        self, client: GatewayClient, info: GatewayInfo, tick_ns: int, phase_ns: int
    ) -> Batch | None: ...


def request_lock_path(settings: PollerSettings) -> Path:
    """The lock file both pollers of a gateway take around each slow request."""
    return settings.state_dir / "locks" / f"{settings.gateway.name}.lock"


def next_tick(now_s: float, interval_s: float, phase_s: float = 0.0) -> float:
    """The first wall-clock multiple of the interval whose poll, ``phase_s`` later, is due
    after ``now_s``."""
    return (math.floor((now_s - phase_s) / interval_s) + 1) * interval_s


def skipped_ticks(tick_s: float, following_s: float, interval_s: float, most: int) -> list[int]:
    """The ticks strictly between a poll's tick and the next one polled, in nanoseconds.

    At most ``most`` (the last ones): a wall clock stepped forward during a poll (NTP at
    boot on a machine without a real-time clock) must not report days of skipped ticks.
    """
    count = min(round((following_s - tick_s) / interval_s) - 1, most)
    return [to_ns(following_s - k * interval_s) for k in range(count, 0, -1)]


def to_ns(tick_s: float) -> int:
    """A tick in integer nanoseconds, exact to the millisecond.

    ``int(tick_s * 1e9)`` is not: near 1.8e18 a double is a multiple of 256, so a tick a
    quarter second past the second came out 128 ns off and missed its series' timestamp.
    """
    return round(tick_s * 1e3) * 1_000_000


def backoff_s(interval_s: float, failures: int) -> float:
    """How long to leave an unreachable gateway alone after ``failures`` in a row.

    The first failure costs nothing extra (the next tick tries again: one lost answer is
    common on Wi-Fi); from the second on, twice the interval, doubling, up to the cap.
    """
    return Backoff(2 * interval_s, MAX_BACKOFF_S).after(failures - 1)


class Poller:
    """Runs one feed of one gateway until told to stop."""

    def __init__(
        self,
        settings: PollerSettings,
        mailbox: Mailbox,
        client: GatewayClient,
        feed: Feed,
        clock: Callable[[], float] = time.time,
        wait: Callable[[threading.Event, float], bool] = threading.Event.wait,
    ) -> None:
        """``clock`` and ``wait`` (sleep until the event is set or the time is up, and say
        which) are injected so that a harness can drive the schedule in virtual time."""
        self.settings = settings
        self.envoy = settings.gateway.name
        self._mailbox = mailbox
        self._client = client
        self._feed = feed
        self._clock = clock
        self._wait = wait
        self._phase_ns = round(settings.phase_s * 1e9)
        self._log = structlog.get_logger().bind(worker=mailbox.worker, envoy=self.envoy)
        self._stopping = threading.Event()
        self._busy_since: float | None = None  # set while the poll thread works on a tick
        self._info: GatewayInfo | None = None
        self._token: str | None = None
        self._failures = 0
        self._resume_at = 0.0  # backoff: no polls before this time
        self._timing = (0.0, 0.0)  # (jitter, duration) of the poll being reported, ms
        # The longest a healthy poll can take: two requests, each connect + read timeout.
        gw = settings.gateway
        self._wedged_after_s = 2 * (gw.connect_timeout_s + gw.read_timeout_s) + 30.0
        self._most_skipped = math.ceil(self._wedged_after_s / settings.interval_s)

    def run(self) -> None:
        threading.Thread(target=self.poll_loop, name="poll", daemon=True).start()
        try:
            self._message_loop()
        finally:
            self._stopping.set()

    # --- main thread ---------------------------------------------------------------

    def _message_loop(self) -> None:
        while True:
            for message in self._mailbox.receive(timeout=WATCH_EVERY_S):
                if isinstance(message, Stop):
                    return
                if isinstance(message, TokenIssued):
                    self.on_token(message)
                else:
                    self._log.warning("unexpected message", type=type(message).__name__)
            self._check_wedged()

    def on_token(self, message: TokenIssued) -> None:
        self._token = message.token
        self._client.set_token(message.token)

    def stop(self) -> None:
        self._stopping.set()

    def _check_wedged(self) -> None:
        busy_since = self._busy_since
        if busy_since is not None and self._clock() - busy_since > self._wedged_after_s:
            self._log.error(
                "poll thread wedged, exiting for a clean restart",
                stuck_s=round(self._clock() - busy_since, 1),
            )
            os._exit(EXIT_WEDGED)

    # --- poll thread ---------------------------------------------------------------

    def poll_loop(self) -> None:
        """The poll thread's body, until `stop`."""
        # This thread sleeps until each poll is due and starts it itself: handing ticks
        # over from the main thread added a second wake-up to every poll, and doubled the
        # tick jitter's tail (p99 28.6 ms against 14.5 ms for one sleeper, same machine).
        interval, phase = self.settings.interval_s, self.settings.phase_s
        tick = next_tick(self._clock(), interval, phase)
        while True:
            pause = tick + phase - self._clock()
            if pause > interval:
                # The wall clock was stepped back (NTP, a machine without a real-time
                # clock): waiting for this tick would poll nothing until the clock caught
                # up, an hour for a DST-sized step. Align to the clock as it is now.
                tick = next_tick(self._clock(), interval, phase)
                continue
            if pause > 0:
                if self._wait(self._stopping, pause):
                    return
                continue  # due now, unless woken early: look again
            now = self._clock()
            if now >= self._resume_at:
                self._busy_since = now
                try:
                    self._poll(to_ns(tick))
                except Exception as exc:  # a bug must cost one tick, not the worker
                    self._log.exception("poll failed unexpectedly")
                    self._report(to_ns(tick), ok=False, error_kind="bug", detail=repr(exc)[:200])
                finally:
                    self._busy_since = None
            following = next_tick(self._clock(), interval, phase)
            # Polls that came due while this one ran are skipped, never stacked up: the
            # gateway answers one request at a time, and a queue would only overload it.
            for skipped in skipped_ticks(tick, following, interval, self._most_skipped):
                self._report(
                    skipped, ok=False, error_kind="skipped", detail="previous poll running"
                )
            tick = following

    def _poll(self, tick_ns: int) -> None:
        started = self._clock()
        self._timing = ((started - tick_ns / 1e9 - self.settings.phase_s) * 1e3, 0.0)
        try:
            if self._info is None:
                self._identify()
            assert self._info is not None
            if self._info.web_tokens and self._token is None:
                self._report(
                    tick_ns,
                    ok=False,
                    error_kind="no-token",
                    detail="waiting for a token from the token worker",
                )
                return
            batch = self._feed.poll(self._client, self._info, tick_ns, self._phase_ns)
        except GatewayError as exc:
            self._on_failure(tick_ns, exc)
            return
        self._failures = 0
        self._timing = (self._timing[0], (self._clock() - started) * 1e3)
        if batch is not None:
            self._mailbox.send(batch)
        self._report(tick_ns, ok=True)

    def _identify(self) -> None:
        info = self._client.info()
        if info != self._info:
            self._log.info("gateway identified", serial=info.serial, firmware=info.software)
        self._info = info
        self._mailbox.send(GatewayIdentified(self.envoy, info))

    def _on_failure(self, tick_ns: int, exc: GatewayError) -> None:
        self._failures += 1
        if isinstance(exc, GatewayAuthError) and self._info is not None:
            self._mailbox.send(TokenRejected(self._info.serial, self.envoy))
        if self._failures >= REIDENTIFY_AFTER_FAILURES:
            self._info = None
        delay = backoff_s(self.settings.interval_s, self._failures)
        self._resume_at = self._clock() + delay
        log = self._log.warning if self._failures == 1 else self._log.debug
        log("poll failed", kind=exc.kind, error=str(exc), failures=self._failures, backoff_s=delay)
        self._report(tick_ns, ok=False, error_kind=exc.kind, detail=str(exc))

    def _report(self, tick_ns: int, ok: bool, error_kind: str = "", detail: str = "") -> None:
        jitter_ms, duration_ms = self._timing if ok else (0.0, 0.0)
        self._mailbox.send(
            PollReport(
                self.envoy,
                self.settings.feed,
                tick_ns,
                ok,
                error_kind,
                detail,
                jitter_ms,
                duration_ms,
                self._feed.endpoint,
                self.settings.interval_s,
            )
        )
