"""The handover journal: batches the router holds, kept on disk so a SIGKILL loses none.

The router keeps every batch until each consumer acknowledges it (see
`supervisor.router`). Those batches live in the supervisor's memory, so a supervisor that
is SIGKILLed (or OOM-killed) would take them along, although the poller that sent them
considers them handed over. The journal closes that gap: the router appends each batch
here before forwarding it and marks it done once the last consumer has acknowledged it;
the next supervisor reads back what is not done and hands it to the consumers again.
The stores are idempotent per series and timestamp, so a batch a sink had committed but
not yet acknowledged is harmless to replay.

Why a journal in the supervisor rather than pollers keeping unacknowledged batches: the
supervisor is the one process that knows when every consumer has a batch, and a poller
would need acknowledgements relayed back to it and its own handover file per worker.

Durability: one ``write`` per record to a file opened ``O_APPEND``. Data written that way
is in the kernel once ``write`` returns and survives the process being killed; it is not
fsynced, so a power cut can lose the tail (as it can lose the pipes' contents anyway).
A record cut short by a crash mid-write is ignored on reading.

Record: 4-byte big-endian length, then a pickle of ``(id, batch)`` (added) or
``(id, None)`` (every consumer has it). The file is truncated whenever nothing is
outstanding, and rewritten with only the outstanding batches when it grows long.

A full or failing disk (`shared.storage`) does not stop the supervisor: the batches stay
in memory (the router bounds them), the failure is logged once, and from then on, since
the file lags behind memory, the journal is rewritten whole (at most every `RETRY_S`)
instead of appended to, until a rewrite succeeds. A supervisor SIGKILLed meanwhile loses
what the file did not hold; one that stops normally loses nothing (consumers drain).

Residual window, documented rather than closed: a batch still in a poller's outbox pipe,
or read from it but not yet routed, when the supervisor dies (micro- to milliseconds).

Reads and writes: ``<state_dir>/handover.journal``; no channels.
"""

from __future__ import annotations

import os
import pickle
import struct
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from shared.messages import Batch
from shared.storage import StorageEpisode, is_storage_error, write_all

log = structlog.get_logger(worker="supervisor")

_HEADER = struct.Struct(">I")
#: rewrite the file once this many records were appended since it was last compacted
COMPACT_AFTER = 20_000
RETRY_S = 1.0  #: while the disk is full, how often a rewrite is tried


class Journal:
    """Outstanding batches, on disk. Not thread-safe: the supervisor's loop owns it."""

    def __init__(
        self,
        path: Path,
        compact_after: int = COMPACT_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._compact_after = compact_after
        self._clock = clock
        self.storage = StorageEpisode(log, path, "batches not yet delivered, if killed")
        self._behind = False  # the file misses records: only a whole rewrite catches up
        self._next_retry = 0.0
        self._live: dict[int, Batch] = {}
        self._next_id = 1
        self._records = 0  # records in the file since it was last rewritten
        self._fd = -1

    def recover(self) -> list[tuple[int, Batch]]:
        """Open the journal: the batches a previous supervisor left outstanding, oldest first.

        They stay outstanding here (under the returned ids) until `done` is called for them.
        """
        self._live = dict(read_journal(self.path))
        self._next_id = max(self._live, default=0) + 1
        self._try_rewrite()
        if self._live:
            log.warning(
                "replaying batches a previous supervisor had not seen delivered",
                batches=len(self._live),
                journal=str(self.path),
            )
        return list(self._live.items())

    def add(self, batch: Batch) -> int:
        """Record a batch before it is forwarded; returns its id for `done`."""
        ident = self._next_id
        self._next_id += 1
        self._live[ident] = batch
        self._append(ident, batch)
        return ident

    def done(self, ident: int) -> None:
        """Every consumer has acknowledged (or dropped) batch ``ident``."""
        if self._live.pop(ident, None) is None:
            return
        if self._behind:
            self._catch_up()
        elif not self._live:
            # The common case, many times a second: nothing outstanding, start afresh.
            os.ftruncate(self._fd, 0)
            self._records = 0
        elif self._records >= self._compact_after:
            self._try_rewrite()
        else:
            self._append(ident, None)

    def outstanding(self) -> int:
        return len(self._live)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _append(self, ident: int, batch: Batch | None) -> None:
        if self._behind:
            self._catch_up()
            return
        try:
            if self._fd < 0:
                self._open()
            write_all(self._fd, _record(ident, batch))
        except OSError as exc:
            self._failed(exc)
            return
        self._records += 1

    def _failed(self, exc: OSError) -> None:
        if not is_storage_error(exc):
            raise exc
        # A record may be half written: appending after it would garble what follows.
        self._behind = True
        self._next_retry = self._clock() + RETRY_S
        self.storage.failed(exc)

    def _catch_up(self) -> None:
        if self._clock() >= self._next_retry:
            self._try_rewrite()

    def _try_rewrite(self) -> None:
        try:
            self._rewrite()
        except OSError as exc:
            self._failed(exc)
            return
        self._behind = False
        self.storage.ok()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _rewrite(self) -> None:
        """Replace the file with one holding only the outstanding batches."""
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                for ident, batch in self._live.items():
                    write_all(fd, _record(ident, batch))
            finally:
                os.close(fd)
        except OSError:
            tmp.unlink(missing_ok=True)  # give back the space a partial copy took
            raise
        os.replace(tmp, self.path)
        self._records = len(self._live)
        self._open()


def _record(ident: int, batch: Batch | None) -> bytes:
    data = pickle.dumps((ident, batch), protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def read_journal(path: Path) -> dict[int, Batch]:
    """Outstanding batches in a journal file, in the order they were added."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    live: dict[int, Batch] = {}
    offset = 0
    while offset + _HEADER.size <= len(data):
        (size,) = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        if start + size > len(data):
            break  # the last record was cut short by a crash mid-write
        try:
            ident, batch = pickle.loads(data[start : start + size])
        except Exception:  # a garbled record: nothing after it can be trusted either
            log.warning("handover journal damaged: ignoring the rest", journal=str(path))
            break
        if batch is None:
            live.pop(ident, None)
        else:
            live[ident] = batch
        offset = start + size
    return live
