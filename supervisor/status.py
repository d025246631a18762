"""What the running supervisor knows about its workers and gateways, published as a file.

The supervisor updates a `StatusBoard` as events arrive and `publish` writes it as JSON to
``<state_dir>/status.json`` (temp file + rename, so a reader never sees half a file) at
most once a second. ``python -m supervisor status`` and the health endpoint read that
file; they never talk to the supervisor process. No channels.

On a full disk (`shared.storage`) the temp file cannot be written: the status is then
written over the old file in place, which needs no new space while it is no longer than
the old one (every file is padded with `RESERVE_BYTES` of spaces for that; a reader may
catch half a file written in place: it reads as "no status" once). When
even that fails, the publish is skipped and retried a second later. ``storage_errors``
in the file names every writer that cannot write, the sinks' included.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

from shared.messages import GatewayInfo, PollReport, SelfMetrics
from shared.percentiles import percentiles
from shared.storage import StorageEpisode, is_storage_error, write_all
from supervisor.policy import ChildState, State

STATUS_FILE = "status.json"
PUBLISH_EVERY_S = 1.0
RESERVE_BYTES = 16 * 1024  #: room for the status to grow while the disk is full
#: the supervisor's own writers to the state dir, as named in ``storage_errors``
OWN_WRITERS = ("journal", "status")


TIMING_WINDOW = 1000  #: polls over which jitter and duration percentiles are reported
CADENCE_WINDOW_S = 60.0  #: readings written per minute are counted over this much time


@dataclass
class FeedStatus:
    last_ok_ns: int | None = None
    last_error: str = ""
    last_error_ns: int | None = None
    errors: Counter[str] = field(default_factory=Counter)  #: by GatewayError.kind
    polls: int = 0
    jitter_ms: deque[float] = field(default_factory=lambda: deque(maxlen=TIMING_WINDOW))
    duration_ms: deque[float] = field(default_factory=lambda: deque(maxlen=TIMING_WINDOW))
    #: whole-ms jitter -> polls since start: two snapshots give exact percentiles between them
    jitter_histogram: Counter[int] = field(default_factory=Counter)
    endpoint: str = ""  #: what the feed read last
    interval_s: float = 0.0  #: its configured cadence
    first_s: float | None = None  #: the first tick reported (the cadence window's start)
    ok_ticks_ns: deque[int] = field(default_factory=deque)  #: good ticks of the last window
    #: ticks that wrote nothing, by why: the skip's reason, or the failure's kind
    missed: Counter[str] = field(default_factory=Counter)

    def cadence(self, now_s: float) -> dict[str, Any]:
        """Readings written against readings due over the last minute (or since the first
        tick reported, if sooner). A tick is due once one interval has passed after it
        (its poll's time to answer); both counts take the ticks of the same span."""
        if self.interval_s <= 0 or self.first_s is None:
            return {"window_s": 0.0, "written": 0, "due": 0, "written_per_min": 0.0,
                    "due_per_min": 0.0}  # fmt: skip
        interval = self.interval_s
        start = max(now_s - CADENCE_WINDOW_S, self.first_s)
        end = now_s - interval
        first_due = math.ceil(start / interval - 1e-9) * interval
        due = max(0, math.floor((end - first_due) / interval + 1e-9) + 1)
        lo, hi = round(first_due * 1e9), round(end * 1e9)
        written = sum(1 for t in self.ok_ticks_ns if lo <= t <= hi)
        per_min = 60 / interval
        return {
            "window_s": round(now_s - start, 1),
            "written": written,
            "due": due,
            "written_per_min": round(per_min * written / due, 1) if due else 0.0,
            "due_per_min": round(per_min, 1),
        }


class StatusBoard:
    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir / STATUS_FILE
        self.storage = StorageEpisode(
            structlog.get_logger(worker="supervisor"), self.path, "what status and /healthz show"
        )
        self.journal_error = ""  #: the handover journal's current storage error, if any
        self._clock = clock
        self._started = clock()
        self.workers: dict[str, dict[str, Any]] = {}
        self.gateways: dict[str, dict[str, Any]] = {}
        self.feeds: dict[tuple[str, str], FeedStatus] = {}
        self.consumers: dict[str, dict[str, Any]] = {}
        self._published = 0.0
        self._dirty = True

    def worker(self, name: str, kind: str, pid: int | None, state: ChildState, now: float) -> None:
        """``now`` is the time on the clock of ``state`` (the supervisor's monotonic one)."""
        retry_at_s = None
        if state.state is State.FATAL and state.next_start_at is not None:
            retry_at_s = self._clock() + (state.next_start_at - now)  # as wall-clock time
        self.workers[name] = {
            "kind": kind,
            "state": state.state.value,
            "pid": pid,
            "restarts": state.restarts_total,
            "last_exit_code": state.last_exit_code,
            "fatal_count": state.fatal_count,
            "retry_at_s": retry_at_s,
        }
        self._dirty = True

    def identified(self, envoy: str, info: GatewayInfo) -> None:
        self.gateways.setdefault(envoy, {}).update(
            {
                "serial": info.serial,
                "firmware": info.software,
                "web_tokens": info.web_tokens,
                "metered": info.metered,
            }
        )
        self._dirty = True

    def token_expiry(self, expiry: dict[str, int]) -> None:
        """The ``exp`` (epoch s) of each gateway's current token, as the router saw it."""
        for envoy, exp in expiry.items():
            if self.gateways.setdefault(envoy, {}).get("token_expiry_s") != exp:
                self.gateways[envoy]["token_expiry_s"] = exp
                self._dirty = True

    def poll_report(self, report: PollReport) -> None:
        feed = self.feeds.setdefault((report.envoy, report.feed), FeedStatus())
        feed.polls += 1
        if feed.first_s is None:
            feed.first_s = report.tick_ns / 1e9
        if report.endpoint:
            feed.endpoint = report.endpoint
        if report.interval_s:
            feed.interval_s = report.interval_s
        if report.ok:
            feed.last_ok_ns = report.tick_ns
            feed.ok_ticks_ns.append(report.tick_ns)
            while feed.ok_ticks_ns[0] < report.tick_ns - CADENCE_WINDOW_S * 1e9:
                feed.ok_ticks_ns.popleft()
            feed.jitter_ms.append(report.jitter_ms)
            feed.jitter_histogram[int(report.jitter_ms)] += 1
            feed.duration_ms.append(report.duration_ms)
        else:
            feed.errors[report.error_kind] += 1
            why = report.detail if report.error_kind == "skipped" else report.error_kind
            feed.missed[why or "unknown"] += 1
            feed.last_error = report.detail
            feed.last_error_ns = report.tick_ns
        self._dirty = True

    def consumer(self, name: str, **facts: Any) -> None:
        self.consumers.setdefault(name, {}).update(facts)
        self._dirty = True

    def storage_errors(self) -> dict[str, str]:
        """Writer -> error, for every writer to the state dir that cannot write now."""
        errors = {"journal": self.journal_error, "status": self.storage.error}
        for name, facts in sorted(self.consumers.items()):
            errors[name] = str(facts.get("storage_error", ""))
        return {writer: error for writer, error in errors.items() if error}

    def snapshot(self) -> dict[str, Any]:
        feeds: dict[str, dict[str, Any]] = {}
        now_s = self._clock()
        for (envoy, feed_name), feed in self.feeds.items():
            feeds.setdefault(envoy, {})[feed_name] = {
                "endpoint": feed.endpoint,
                "interval_s": feed.interval_s,
                "cadence": feed.cadence(now_s),
                "missed": dict(feed.missed),
                "last_ok_ns": feed.last_ok_ns,
                "last_error": feed.last_error,
                "last_error_ns": feed.last_error_ns,
                "errors": dict(feed.errors),
                "polls": feed.polls,
                "jitter_ms": percentiles(feed.jitter_ms),
                "jitter_histogram_ms": {
                    str(k): v for k, v in sorted(feed.jitter_histogram.items())
                },
                "duration_ms": percentiles(feed.duration_ms),
            }
        return {
            "pid": os.getpid(),
            "started_s": self._started,
            "updated_s": self._clock(),
            "workers": self.workers,
            "gateways": self.gateways,
            "feeds": feeds,
            "consumers": self.consumers,
            "storage_errors": self.storage_errors(),
        }

    def publish(self, force: bool = False) -> None:
        now = self._clock()
        if not force and (not self._dirty or now - self._published < PUBLISH_EVERY_S):
            return
        self._published = now  # a failed publish, too, is retried a second later
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_bytes(self._encoded())
            os.replace(tmp, self.path)
        except OSError as exc:
            if not is_storage_error(exc):
                raise
            tmp.unlink(missing_ok=True)
            self.storage.failed(exc)  # first, so that the copy written in place says so
            try:
                _overwrite(self.path, self._encoded())
            except OSError as again:
                if not is_storage_error(again):
                    raise
                return
            self._dirty = False
            return
        # The file just written still names an episode that is now over: publish again.
        self._dirty = bool(self.storage.error)
        self.storage.ok()

    def _encoded(self) -> bytes:
        data = orjson.dumps(self.snapshot(), option=orjson.OPT_INDENT_2)
        # Trailing spaces (valid JSON) keep RESERVE_BYTES spare in the file's own blocks
        # for the status written in place while the disk is full.
        return data.ljust(len(data) + RESERVE_BYTES)

    def self_metrics(self, token_expiry: dict[str, int]) -> SelfMetrics:
        """The counters the Prometheus exporter shows about the logger itself, and what
        the MQTT sink needs for availability and its device blocks."""
        failing = self.storage_errors()
        sinks = sorted(name for name in self.consumers if name.startswith("sink:"))
        restarts: Counter[str] = Counter()
        for worker in self.workers.values():
            restarts[worker["kind"]] += worker["restarts"]
        poll_errors: Counter[tuple[str, str]] = Counter()  # one series per envoy and kind
        for (envoy, _), feed in self.feeds.items():
            for kind, count in feed.errors.items():
                poll_errors[envoy, kind] += count
        now_s = self._clock()
        cadences = {key: feed.cadence(now_s) for key, feed in sorted(self.feeds.items())}
        return SelfMetrics(
            poll_errors=tuple((e, k, n) for (e, k), n in sorted(poll_errors.items())),
            feed_written_per_min=tuple(
                (envoy, name, self.feeds[envoy, name].endpoint, c["written_per_min"])
                for (envoy, name), c in cadences.items()
            ),
            feed_due_per_min=tuple(
                (envoy, name, self.feeds[envoy, name].endpoint, c["due_per_min"])
                for (envoy, name), c in cadences.items()
            ),
            feed_missed=tuple(
                (envoy, name, why, count)
                for (envoy, name), feed in sorted(self.feeds.items())
                for why, count in sorted(feed.missed.items())
            ),
            worker_restarts=tuple(sorted(restarts.items())),
            spool_depth=tuple(
                (name.removeprefix("sink:"), int(facts.get("spool_items", 0)))
                for name, facts in sorted(self.consumers.items())
                if name.startswith("sink:")
            ),
            token_expiry_s=tuple(sorted(token_expiry.items())),
            storage_error=tuple(
                (writer, int(writer in failing)) for writer in (*OWN_WRITERS, *sinks)
            ),
            worker_fatal=tuple(
                (name, int(worker["state"] == State.FATAL.value))
                for name, worker in sorted(self.workers.items())
            ),
            last_success_ns=tuple(
                (envoy, feed_name, feed.last_ok_ns)
                for (envoy, feed_name), feed in sorted(self.feeds.items())
                if feed.last_ok_ns is not None
            ),
            gateways=tuple(
                (envoy, str(facts["serial"]), str(facts["firmware"]))
                for envoy, facts in sorted(self.gateways.items())
                if "serial" in facts
            ),
        )


def _overwrite(path: Path, data: bytes) -> None:
    """Write ``data`` over the file's own blocks (no temp file: for when the disk is full),
    padded to the old size so that the reserve stays for the next time."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, data.ljust(os.fstat(fd).st_size))
    finally:
        os.close(fd)


def workers_down(workers: dict[str, dict[str, Any]]) -> dict[str, str]:
    """FATAL worker -> a one-line reason, from the ``workers`` of a status snapshot."""
    down = {}
    for name, worker in sorted(workers.items()):
        if worker.get("state") != State.FATAL.value:
            continue
        retry_at = worker.get("retry_at_s")
        when = (
            "left down for good (supervision.fatal_forever)"
            if retry_at is None
            else "started again at "
            + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(retry_at)))
        )
        down[name] = (
            f"FATAL (restarted too often; episode {worker.get('fatal_count', 1)},"
            f" last exit code {worker.get('last_exit_code')}): {when}"
        )
    return down


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last published status in ``state_dir``, or None when there is none (yet)."""
    try:
        data = orjson.loads((state_dir / STATUS_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
