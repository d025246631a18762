"""The sink worker: takes batches from the supervisor and stores them for good.

One process per configured sink, so a slow or dead database delays nobody else. The loop
is the same for every sink type; what "store" means is the backend's business
(`workers.sink_sqlite`, `workers.sink_influx`, `workers.sink_prometheus`,
`workers.sink_mqtt`):

1. receive `Deliver` messages (a numbered batch each);
2. `backend.accept(batches)`: when it returns they are durable (SQLite commit, spool commit);
3. send `Delivered(last seq)`: only now may the supervisor forget them. A sink killed
   between 1 and 3 gets the same batches again after its restart; the stores are
   idempotent per series and timestamp, so that is harmless.

When the state dir's disk is full or failing (`shared.storage`), `accept` raises and the
sink does not acknowledge: it keeps the deliveries it holds (at most `MAX_HELD`, oldest
dropped and counted, as the router does for its copy), reports the episode once, and
tries them again every `RETRY_S` together with whatever arrived meanwhile (oldest first,
`STORE_CHUNK` per transaction). The router
keeps its own copy until the acknowledgement, so a sink killed meanwhile loses nothing
either. Nothing is acknowledged before it is durable.

On `Stop` the backend gets a bounded time to push what it holds to its database, then the
process exits; anything still spooled is replayed on the next start.

Reads from the inbox: `Deliver`, `SelfMetrics`, `Stop`.
Writes to the outbox: `Delivered`, `SinkStatus`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import structlog

from shared.config import (
    InfluxSinkConfig,
    MqttSinkConfig,
    PrometheusSinkConfig,
    SinkConfig,
    SqliteSinkConfig,
)
from shared.messages import (
    Batch,
    Deliver,
    Delivered,
    InverterBatch,
    PowerBatch,
    SelfMetrics,
    SinkStatus,
    Stop,
)
from shared.percentiles import percentiles
from shared.storage import StorageEpisode, is_storage_error
from workers.mailbox import Mailbox

DRAIN_S = 5.0  #: on Stop, how long the backend may keep pushing to its database
STATUS_EVERY_S = 5.0
LAG_WINDOW = 1000  #: batches over which the commit lag percentiles are reported
RETRY_S = 1.0  #: while the disk is full, how often held batches are tried again
MAX_HELD = 100_000  #: deliveries held while they cannot be stored (the router's bound)
STORE_CHUNK = 1000  #: deliveries stored (and acknowledged) per transaction at most


@dataclass(frozen=True, slots=True)
class SinkSettings:
    sink: SinkConfig
    state_dir: Path
    power_intervals: tuple[tuple[str, float], ...] = ()  #: gateway -> s, for `envoy_up`
    serials: tuple[tuple[str, str], ...] = ()  #: gateway -> configured serial (MQTT devices)


class Backend(Protocol):
    def accept(self, batches: Sequence[Batch]) -> None:
        """Store these durably; they are safe when this returns."""

    def observe(self, metrics: SelfMetrics) -> None:
        """The supervisor's latest self-metrics (the Prometheus exporter shows them, the
        MQTT sink derives each gateway's availability from them)."""

    def status(self) -> SinkStatus:
        """Spool depth and write health, for status and metrics."""

    def drain(self, deadline: float) -> bool:
        """Push what is held to the database for a short while (at most until ``deadline``,
        a `time.monotonic` time); True once nothing is held any more."""

    def close(self) -> None: ...


def open_backend(settings: SinkSettings, log: structlog.typing.FilteringBoundLogger) -> Backend:
    sink = settings.sink
    # Imported here so each sink process loads only its own client library.
    if isinstance(sink, SqliteSinkConfig):
        from workers.sink_sqlite import SqliteBackend

        return SqliteBackend(sink, settings.state_dir)
    if isinstance(sink, InfluxSinkConfig):
        from workers.sink_influx import InfluxBackend

        return InfluxBackend(sink, settings.state_dir, log)
    if isinstance(sink, PrometheusSinkConfig):
        from workers.sink_prometheus import PrometheusBackend

        return PrometheusBackend(sink, dict(settings.power_intervals))
    if isinstance(sink, MqttSinkConfig):
        from workers.sink_mqtt import MqttBackend

        return MqttBackend(
            sink, settings.state_dir, log, dict(settings.power_intervals), dict(settings.serials)
        )
    raise TypeError(f"unknown sink config {type(sink).__name__}")


class CommitLag:
    """How stale data is when it becomes durable: commit time minus when the poll was due.

    Measured here rather than in each backend because `Backend.accept` returning is the
    commit for every kind of sink. Reported in `SinkStatus` (p50/p99 over LAG_WINDOW).
    """

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._lags_ms: deque[float] = deque(maxlen=LAG_WINDOW)

    def committed(self, batches: Sequence[Batch]) -> None:
        now_ns = self._clock_ns()
        for batch in batches:
            if isinstance(batch, PowerBatch | InverterBatch):
                self._lags_ms.append((now_ns - batch.tick_ns - batch.phase_ns) / 1e6)

    def stamp(self, status: SinkStatus) -> SinkStatus:
        lag = percentiles(self._lags_ms)
        if lag is None:
            return status
        return replace(status, commit_lag_p50_ms=lag["p50"], commit_lag_p99_ms=lag["p99"])


class Held:
    """Deliveries received and not yet stored, oldest first: only more than a moment
    while the disk is full."""

    def __init__(self, storage: StorageEpisode, max_held: int = MAX_HELD) -> None:
        self.storage = storage
        self._max = max_held
        self.deliveries: deque[Deliver] = deque()
        self.dropped = 0  #: deliveries dropped because too many were held, ever
        self.retry_at = 0.0

    def due(self, now: float) -> bool:
        return bool(self.deliveries) and now >= self.retry_at

    def add(self, deliveries: Sequence[Deliver]) -> None:
        self.deliveries.extend(deliveries)
        self._bound()

    def take(self, most: int) -> list[Deliver]:
        return [self.deliveries.popleft() for _ in range(min(most, len(self.deliveries)))]

    def keep(self, deliveries: Sequence[Deliver], exc: BaseException, now: float) -> None:
        """``deliveries`` (just taken) could not be stored: back to the front, retry later."""
        self.storage.failed(exc)
        self.deliveries.extendleft(reversed(deliveries))
        self._bound()
        self.retry_at = now + RETRY_S

    def _bound(self) -> None:
        while len(self.deliveries) > self._max:
            self.deliveries.popleft()
            self.dropped += 1

    def stamp(self, status: SinkStatus) -> SinkStatus:
        return replace(
            status,
            dropped=status.dropped + self.dropped,
            storage_error=self.storage.error or status.storage_error,
        )


def store(backend: Backend, held: Held, lag: CommitLag, mailbox: Mailbox) -> None:
    """Store what is held, oldest first, acknowledging each chunk once it is durable.

    In chunks, beating between them: after a long full-disk episode up to `MAX_HELD`
    deliveries wait, more than one transaction should carry or the watchdog allow.
    """
    while held.deliveries:
        chunk = held.take(STORE_CHUNK)
        batches = [d.batch for d in chunk]
        try:
            backend.accept(batches)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            held.keep(chunk, exc, time.monotonic())
            return
        held.storage.ok()
        lag.committed(batches)
        mailbox.send(Delivered(chunk[-1].seq))
        mailbox.beat()


def run(settings: SinkSettings, mailbox: Mailbox) -> None:
    log = structlog.get_logger().bind(worker=mailbox.worker)
    backend = open_backend(settings, log)
    lag = CommitLag()
    held = Held(
        StorageEpisode(log, settings.state_dir, f"batches not yet stored by {mailbox.worker}")
    )
    next_status = 0.0
    try:
        while True:
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + STATUS_EVERY_S
                mailbox.send(held.stamp(lag.stamp(backend.status())))
            messages = mailbox.receive(timeout=RETRY_S)
            held.add([m for m in messages if isinstance(m, Deliver)])
            if held.due(time.monotonic()):
                was_full = bool(held.storage.error)
                store(backend, held, lag, mailbox)
                if was_full != bool(held.storage.error):
                    next_status = 0.0  # the episode began or ended: say so now
            for message in messages:
                if isinstance(message, Stop):
                    deadline = time.monotonic() + DRAIN_S
                    # In short steps, beating between them: the watchdog must not take a
                    # draining sink for a hung one.
                    while not backend.drain(deadline) and time.monotonic() < deadline:
                        mailbox.beat()
                    return
                if isinstance(message, SelfMetrics):
                    backend.observe(message)
                elif not isinstance(message, Deliver):
                    log.warning("unexpected message", type=type(message).__name__)
    finally:
        backend.close()
