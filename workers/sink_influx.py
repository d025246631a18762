"""The InfluxDB sink backend: a durable spool in front of the database.

`accept` encodes each batch to line protocol and commits it to the sink's spool
(`workers.spool`) before the sink acknowledges it. A forwarder thread, with its own
connection to the same spool file, sends the oldest entries to InfluxDB and sorts the
answers like telegraf does:

* written: acknowledged, deleted from the spool;
* malformed (400/422) or too large (413): retried in halves down to single entries, so
  one bad batch does not condemn its neighbours; a single one refused goes to the
  dead-letter table with the server's message;
* credentials refused (401/403): kept, logged loudly once, retried slowly;
* anything else (429, 5xx, network): kept, retried with backoff, honouring Retry-After.

The database being down for hours only grows the spool, bounded by ``spool_max_mb``.
A spool that cannot be written (disk full, `shared.storage`) fails `accept`, which the
sink loop holds and retries; a forwarder that cannot mark entries sent retries them after
RETRY_MIN_S (InfluxDB takes the same points twice as one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from shared.backoff import Backoff
from shared.config import InfluxSinkConfig
from shared.lineproto import encode
from shared.messages import Batch, DailyEnergyBatch, SelfMetrics
from shared.storage import StorageEpisode, is_storage_error
from workers.influx_writer import InfluxWriter, Outcome
from workers.spool import Entry, Spool
from workers.spooled import SpooledBackend

BATCH_ITEMS = 200  #: spool entries per write request (a poll is ~30 points)
BATCH_BYTES = 1 << 20
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
RETRY = Backoff(RETRY_MIN_S, RETRY_MAX_S)  #: 1 s after a failed write, doubling to 60 s
DRAIN_RETRY_S = 0.2  #: shutting down: retry at this pace until the drain deadline
AUTH_RETRY_S = 300.0  #: a refused token will not fix itself quickly; do not hammer


def kind_of(batch: Batch) -> str:
    """Which bucket a batch goes to: daily energy is low-rate, the rest high-rate."""
    return "daily" if isinstance(batch, DailyEnergyBatch) else "high"


class InfluxBackend(SpooledBackend):
    def __init__(
        self, config: InfluxSinkConfig, state_dir: Path, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        writer = InfluxWriter(config)
        super().__init__(
            config.name,
            config.spool_max_mb,
            state_dir,
            log,
            lambda spool: Forwarder(spool, writer, log),
        )

    def accept(self, batches: Sequence[Batch]) -> None:
        for batch in batches:
            payload = encode(batch)
            if payload:
                self._spool.put(payload, kind_of(batch))
        self._forwarder.wake.set()

    def observe(self, metrics: SelfMetrics) -> None:
        pass  # self-metrics are the exporter's business


class Forwarder:
    """Drains the spool into the database, oldest first (runs on its own thread)."""

    def __init__(
        self, spool: Spool, writer: InfluxWriter, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        self._spool = spool
        self._writer = writer
        self._log = log
        self.wake = threading.Event()
        self.stop = False
        self.deadline: float | None = None  #: draining for shutdown: give up after this
        self._failures = 0  # failed writes in a row (not counting refused credentials)
        self._auth_failing = False
        self.last_ok_s: float | None = None
        self.last_error = ""
        self.storage = StorageEpisode(log, spool.path, "sent batches, sent again later")

    def run(self) -> None:
        while not self.stop:
            if self.deadline is not None and time.monotonic() > self.deadline:
                return
            pause = self.forward_once()
            if pause is None:
                if self.deadline is not None:
                    return  # drained
                self.wake.wait(5.0)
                self.wake.clear()
                continue
            if pause:
                self._back_off(pause)
        self._spool.close()

    def forward_once(self) -> float | None:
        """Send the oldest spooled entries once. Returns how long to wait before the next
        try (0: go on at once), or None when the spool is empty."""
        entries = self._spool.peek(BATCH_ITEMS, BATCH_BYTES)
        if not entries:
            return None
        try:
            pause = self._forward(entries)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self.storage.failed(exc)
            return RETRY_MIN_S
        self.storage.ok()
        return pause

    def _back_off(self, pause: float) -> None:
        """Wait ``pause`` s before the next try. A new batch does not cut it short: the
        sink wakes us on every accept, and retrying every poll would ignore Retry-After
        and hammer a database that is struggling. A stop ends the wait; a shutdown drain
        retries every DRAIN_RETRY_S until its deadline."""
        until = time.monotonic() + pause
        while not self.stop:
            if self.deadline is not None:
                self.wake.wait(DRAIN_RETRY_S)
                self.wake.clear()
                return
            left = until - time.monotonic()
            if left <= 0:
                return
            self.wake.wait(left)
            self.wake.clear()

    def _forward(self, entries: list[Entry]) -> float:
        """Send entries (all of one kind); returns how long to wait before the next try."""
        result = self._writer.write(b"".join(e.payload for e in entries), entries[0].kind)
        if result.outcome is Outcome.OK:
            self._spool.ack([e.id for e in entries])
            self._recovered()
            return 0.0
        if result.outcome in (Outcome.DROP, Outcome.TOO_LARGE) and len(entries) > 1:
            # Find the bad (or the too large) one: halves, down to single entries.
            half = len(entries) // 2
            return self._forward(entries[:half]) or self._forward(entries[half:])
        if result.outcome in (Outcome.DROP, Outcome.TOO_LARGE):
            self._spool.dead_letter([entries[0].id], result.message)
            self._log.error(
                "database refused a batch: moved to dead letters",
                outcome=result.outcome.value,
                reason=result.message,
            )
            return 0.0
        self.last_error = result.message
        if result.outcome is Outcome.AUTH:
            if not self._auth_failing:
                self._log.error(
                    "database refused our credentials or database name: spooling until fixed",
                    reason=result.message,
                )
            self._auth_failing = True
            return AUTH_RETRY_S
        if not self._failures:
            self._log.warning("database write failed: retrying", reason=result.message)
        self._failures += 1
        if result.retry_after_s is not None:  # the server knows best how long it needs
            return max(result.retry_after_s, RETRY_MIN_S)
        return RETRY.after(self._failures)

    def _recovered(self) -> None:
        if self._failures or self._auth_failing:
            self._log.info("database writes succeed again")
        self._failures = 0
        self._auth_failing = False
        self.last_ok_s = time.time()
        self.last_error = ""
