"""``GET /healthz``: is every gateway being polled? For load balancers, Docker, monitors.

Answers JSON: 200 when every gateway's power feed polled successfully within
`LATE_AFTER_INTERVALS` of its poll intervals, 503 otherwise, naming the late gateways;
503 also while a writer cannot write to the state dir (``storage_errors``: disk full),
and while a worker is FATAL (``workers_down``: a sink that cannot start stores nothing,
however well the gateways are polled).
A gateway not polled yet counts as starting (200) until that long after the supervisor
started. `assess` is the pure judgement; `HealthServer` serves it from a daemon thread
of the supervisor process (stdlib ``http.server``), off unless ``health.port`` is set.

Reads: ``<state_dir>/status.json`` as published by `supervisor.status.StatusBoard`, on
each request (the file is replaced atomically, so a request never sees half of it and
never touches the supervisor loop's own objects). Writes: HTTP responses only.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import structlog

from shared.config import SiteConfig
from supervisor.shard import shard_view
from supervisor.status import read_status, workers_down

log = structlog.get_logger(worker="supervisor")

LATE_AFTER_INTERVALS = 3
PATHS = ("/healthz", "/healthz/")

#: a parsed status.json, or None when there is none
StatusReader = Callable[[], dict[str, Any] | None]


def assess(
    status: dict[str, Any] | None, intervals: Mapping[str, float], now_s: float
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for a status snapshot; ``intervals`` are power poll periods."""
    # No file at all: nothing is known to have polled, whenever it started.
    started = float((status or {}).get("started_s") or 0.0)
    feeds = (status or {}).get("feeds", {})
    gateways: dict[str, dict[str, Any]] = {}
    late: list[str] = []
    for name, interval in sorted(intervals.items()):
        limit = LATE_AFTER_INTERVALS * interval
        last_ok_ns = feeds.get(name, {}).get("power", {}).get("last_ok_ns")
        entry: dict[str, Any] = {"late_after_s": limit}
        if last_ok_ns is None:
            entry["last_ok_age_s"] = None
            # Right after a start nothing has polled yet: that is starting, not late.
            entry["state"] = "starting" if now_s - started <= limit else "late"
        else:
            age = round(now_s - last_ok_ns / 1e9, 1)
            entry["last_ok_age_s"] = age
            entry["state"] = "ok" if age <= limit else "late"
        if entry["state"] == "late":
            late.append(name)
        gateways[name] = entry
    body: dict[str, Any] = {"status": "late" if late else "ok", "late": late, "gateways": gateways}
    if status is None:
        body["reason"] = "no status published"
    storage = (status or {}).get("storage_errors") or {}
    if storage:
        body["status"] = "disk full"
        body["storage_errors"] = storage
    down = workers_down((status or {}).get("workers") or {})
    if down:
        body["status"] = "worker down" if body["status"] == "ok" else body["status"]
        body["workers_down"] = down
    return (503 if late or storage or down else 200), body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    judge: Callable[[], tuple[int, dict[str, Any]]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "envoy-supervisor"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] in PATHS:
            code, body = self.server.judge()
        else:
            code, body = 404, {"error": f"no such path {self.path[:80]!r}; try /healthz"}
        payload = orjson.dumps(body)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a monitor probing every few seconds would flood the log


class HealthServer:
    """``/healthz`` on ``listen:port`` from a daemon thread."""

    def __init__(
        self,
        listen: str,
        port: int,
        intervals: Mapping[str, float],
        read: StatusReader,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._where = (listen, port)
        self._intervals = dict(intervals)
        self._read = read
        self._clock = clock
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_state_dir(
        cls, listen: str, port: int, intervals: Mapping[str, float], state_dir: Path
    ) -> HealthServer:
        return cls(listen, port, intervals, lambda: read_status(state_dir))

    def judge(self) -> tuple[int, dict[str, Any]]:
        return assess(self._read(), self._intervals, self._clock())

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/healthz"

    def start(self) -> str:
        """Bind and serve; returns the URL. OSError when the address cannot be bound."""
        listen, port = self._where
        is_v6 = ":" in listen and isinstance(ipaddress.ip_address(listen), ipaddress.IPv6Address)
        server_cls = (
            type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if is_v6 else _Server
        )
        self._server = server_cls((listen, port), _Handler)
        self._server.judge = self.judge
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="healthz",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def serve_site(config: SiteConfig) -> HealthServer | None:
    """Start the endpoint ``config.health`` asks for; None when off or it cannot bind.

    A port already taken is logged as an error rather than stopping the logger: the data
    matters more than its health page, and the page's absence is itself visible.
    """
    if config.health.port is None:
        return None
    # Only this host's gateways when the site is sharded: the others are polled elsewhere.
    intervals = {gw.name: gw.power_interval_s for gw in shard_view(config).gateways}
    server = HealthServer.for_state_dir(
        config.health.listen, config.health.port, intervals, config.state_dir
    )
    try:
        url = server.start()
    except OSError as exc:
        log.error(
            "cannot serve the health endpoint",
            listen=config.health.listen,
            port=config.health.port,
            error=exc.strerror or str(exc),
        )
        return None
    log.info("health endpoint", url=url)
    return server
