"""A full or failing disk under the state dir: telling it apart, and reporting it once.

Every writer to the state dir (handover journal, status.json, SQLite store, spool) treats
"no space" (ENOSPC, EDQUOT), "I/O error" (EIO) and SQLite's SQLITE_FULL / SQLITE_IOERR as
a condition that heals when someone frees space, not as a bug: it keeps what it holds in
memory, retries, and reports the episode through a `StorageEpisode`: one error line when
it starts (the path and what is at risk), one line when writing works again, and the
error text while it lasts for status, ``/healthz`` and the Prometheus self-metric.
Any other error still propagates. No files, no channels.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable

import structlog

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})
_SQLITE_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})


def is_storage_error(exc: BaseException) -> bool:
    """True for a full disk, an exhausted quota or an I/O error, from the OS or SQLite."""
    if isinstance(exc, OSError):
        return exc.errno in FULL_ERRNOS
    if isinstance(exc, sqlite3.DatabaseError):
        code = getattr(exc, "sqlite_errorcode", None)
        # Extended codes (SQLITE_IOERR_WRITE, ...) carry the primary code in the low byte.
        return code is not None and code & 0xFF in _SQLITE_CODES
    return False


class StorageEpisode:
    """One writer's spells of not being able to write: logged once each, error kept."""

    def __init__(
        self, log: structlog.typing.FilteringBoundLogger, path: object, at_risk: str
    ) -> None:
        self._log = log
        self._path = str(path)
        self._at_risk = at_risk
        self.error = ""  #: while it lasts: what the last failed write said; "" when writing
        self.failures = 0  #: failed writes in the current episode

    def failed(self, exc: BaseException) -> None:
        if not self.error:
            self._log.error(
                "cannot write to the state dir (disk full or failing): keeping data in "
                "memory and retrying",
                path=self._path,
                at_risk=self._at_risk,
                error=str(exc),
            )
        self.error = str(exc) or type(exc).__name__
        self.failures += 1

    def ok(self) -> None:
        if self.error:
            self._log.warning(
                "writing to the state dir again", path=self._path, failed_writes=self.failures
            )
        self.error = ""
        self.failures = 0


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd``: ``os.write`` writes part of it when the disk fills (the
    next call then raises ENOSPC), so a single call would stop short without an error."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def tolerant_write(episode: StorageEpisode, write: Callable[[], None]) -> bool:
    """Run ``write``; a storage error is reported on ``episode`` instead of raised.

    For small files whose content the caller keeps in memory anyway (token cache, login
    cooldown, pinned certificate): the next write tries again. False when it failed.
    """
    try:
        write()
    except OSError as exc:
        if not is_storage_error(exc):
            raise
        episode.failed(exc)
        return False
    episode.ok()
    return True
