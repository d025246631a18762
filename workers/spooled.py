"""What the two remote sinks share: a spool filled on the sink's thread, drained by a forwarder.

`workers.sink_influx` (to InfluxDB) and `workers.sink_mqtt` (to a broker) are both a
`SpooledBackend`: `accept` (theirs) puts each batch into the spool file
``spool-<sink>.sqlite3`` in the state dir, which is durable once it returns, and their
forwarder runs on a thread of its own with its own connection to that file, sending the
oldest entries first and marking them sent. The sink loop sees the backend's status
(spool depth, drops, dead letters, the forwarder's last success and error), drains it on
shutdown in `DRAIN_STEP_S` steps so it can keep heartbeating, and closes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from shared.messages import SinkStatus
from shared.storage import StorageEpisode
from workers.spool import Spool

DRAIN_STEP_S = 0.5  #: drain() returns this often so the sink can keep heartbeating


class Forwarding(Protocol):
    """A forwarder as the backend drives it; `run` is its thread's body."""

    wake: threading.Event  #: set when there is something new to send, or to stop
    stop: bool
    deadline: float | None  #: draining for shutdown: give up after this (monotonic)
    last_ok_s: float | None
    storage: StorageEpisode  #: the spool file's full-disk episode, if one is on

    @property
    def last_error(self) -> str: ...

    def run(self) -> None: ...


class SpooledBackend:
    """The spool, the forwarder's thread, and the status, drain and close they share."""

    def __init__(
        self,
        name: str,
        spool_max_mb: float,
        state_dir: Path,
        log: structlog.typing.FilteringBoundLogger,
        forwarder: Callable[[Spool], Forwarding],
    ) -> None:
        """``forwarder`` builds the forwarder on its own `Spool` of the same file."""
        path = state_dir / f"spool-{name}.sqlite3"
        max_bytes = int(spool_max_mb * 1024 * 1024)
        self._spool = Spool(path, max_bytes, log=log)
        self._forwarder = forwarder(Spool(path, max_bytes, log=log))
        self._thread = threading.Thread(target=self._forwarder.run, name="forward", daemon=True)
        self._thread.start()

    def status(self) -> SinkStatus:
        items, size = self._spool.depth()
        return SinkStatus(
            items,
            size,
            self._spool.dropped,
            self._spool.dead_letter_count(),
            self._forwarder.last_ok_s,
            self._forwarder.last_error,
            storage_error=self._forwarder.storage.error,
        )

    def drain(self, deadline: float) -> bool:
        self._forwarder.deadline = deadline
        self._forwarder.wake.set()
        self._thread.join(min(max(deadline - time.monotonic(), 0.0), DRAIN_STEP_S))
        return not self._thread.is_alive()

    def close(self) -> None:
        self._forwarder.stop = True
        self._forwarder.wake.set()
        self._thread.join(2.0)
        self._spool.close()
