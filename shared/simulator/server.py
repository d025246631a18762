"""The HTTP(S) listener shared by the simulated gateway and cloud, and where faults happen.

Owns one `http.server.ThreadingHTTPServer` on a background thread, the per-connection
TLS handshake (done in the connection's own thread, so a client that never handshakes
cannot stall the listener), and the fault kinds that act on the connection rather than
on the answer (latency, timeout, reset, status, html, truncate, unauthorized, nightly). The
endpoints themselves live in an *app*: a callable ``(Request) -> Response``.

Channels: reads requests from loopback sockets, writes responses; reads the `FaultPlan`.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import socketserver
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from shared.gateway import is_slow
from shared.simulator.faults import Fault, FaultKind, FaultPlan

# Idle keep-alive connections are dropped after this, so stopped tests leave no threads.
_IDLE_TIMEOUT_S = 30.0

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Envoy</title></head>\n<body><h1>Internal error"
    b"</h1><p>The system is busy, please try again later.</p></body></html>\n"
)
UNAUTHORIZED_BODY = b'{"status":401,"error":"","info":"Authentication required","moreInfo":""}'


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request as an app sees it."""

    method: str
    target: str  #: the request line's target, path and query as sent
    path: str  #: without the query string
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  #: header names lower-cased
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """What an app answers; the listener adds Content-Length."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


App = Callable[[Request], Response]
Observer = Callable[[Request, Response, "Fault | None"], None]


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: BackgroundServer) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn): skip the DNS round trip.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]  # type: ignore[assignment]

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's thread: handshake here, not in the accept loop.
        owner = self.owner
        sock: socket.socket = request
        sock.settimeout(_IDLE_TIMEOUT_S)
        # Headers and body go out in separate writes: without NODELAY, Nagle plus the
        # client's delayed ACK add ~40 ms to every response.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if owner.tls is not None:
            try:
                sock = owner.tls.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                return
        owner.track(sock, True)
        try:
            _Handler(sock, client_address, self)
        except (OSError, ValueError):
            pass  # the client went away, or a reset fault closed the socket under us
        finally:
            owner.track(sock, False)
            with contextlib.suppress(OSError):
                sock.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real gateways allow
    server_version = "openresty/1.17.8.1"  # what firmware 7+ answers with
    sys_version = ""
    server: _Listener

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the CLI would drown in access logs

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(
            method=self.command,
            target=self.path,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        owner.request_started(request.path)
        try:
            fault = owner.faults.take(request.path)
            response = self._apply(fault, request)
            if response is None:
                return
            owner.observe(request, response, fault)
            self._send(response, fault)
        finally:
            owner.request_finished(request.path)

    def _apply(self, fault: Fault | None, request: Request) -> Response | None:
        """The response under ``fault``; None when the connection is dropped instead."""
        owner = self.server.owner
        match fault.kind if fault is not None else None:
            case FaultKind.LATENCY if fault is not None:
                if owner.stopping.wait(fault.seconds):
                    return None
            case FaultKind.TIMEOUT if fault is not None:
                self._hang(fault.seconds)
                self._reset()
                return None
            case FaultKind.NIGHTLY if fault is not None:
                if not self._hang(fault.window_left_s(owner.faults.wall_clock())):
                    self._reset()
                    return None
            case FaultKind.RESET:
                self._reset()
                return None
            case FaultKind.STATUS | FaultKind.REFUSE_LOGINS if fault is not None:
                body = b'{"status":%d,"message":"simulated fault"}' % fault.status
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(math.ceil(fault.retry_after))  # delta-seconds
                return Response(fault.status, body, headers=headers)
            case FaultKind.HTML:
                return Response(200, HTML_ERROR_PAGE, "text/html")
            case FaultKind.UNAUTHORIZED:
                return Response(401, UNAUTHORIZED_BODY)
        try:
            return owner.app(request)
        except Exception:  # a bug in an app must show as a 500, not kill the listener
            return Response(500, b'{"error":"simulator app failed"}')

    def _send(self, response: Response, fault: Fault | None) -> None:
        body = response.body
        if fault is not None and fault.kind is FaultKind.TRUNCATE:
            body = body[: len(body) // 2]
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _hang(self, limit_s: float) -> bool:
        """Answer nothing until the client gives up, the limit passes or the server stops.

        True when the limit passed with the client still waiting. A readable socket while
        a request is outstanding means the client closed it.
        """
        waited = 0.0
        while not self.server.owner.stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.2)
            waited += 0.2
            if readable:
                return False
            if limit_s and waited >= limit_s:
                return True
        return False

    def _reset(self) -> None:
        # SO_LINGER 0 turns close() into a TCP RST: the client sees "connection reset".
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()


class BackgroundServer:
    """An app served on ``host:port`` (0 = a free port) from a daemon thread.

    ``tls`` may be replaced at runtime (certificate rotation); new connections use it.
    Restartable: after `stop`, `start` listens on the same port again.
    """

    def __init__(
        self,
        app: App,
        *,
        faults: FaultPlan,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.app = app
        self.faults = faults
        self.tls = tls
        self.host = host
        self.port = port
        self.stopping = threading.Event()
        self._observer = observer
        self._listener: _Listener | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._in_flight = 0
        self.max_in_flight = 0  #: most requests ever handled at once
        self._slow_in_flight = 0
        #: most slow requests (`shared.gateway.is_slow`) ever handled at once (gateways want 1)
        self.max_slow_in_flight = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> None:
        if self._listener is not None:
            return
        self.stopping.clear()
        listener = _Listener((self.host, self.port), self)
        self.port = listener.server_address[1]
        self._listener = listener
        self._thread = threading.Thread(
            target=listener.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening, release hanging handlers and close every open connection."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self.stopping.set()
        listener.shutdown()
        listener.server_close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def track(self, sock: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def request_started(self, path: str) -> None:
        with self._lock:
            self._counts[path] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if is_slow(path):
                self._slow_in_flight += 1
                self.max_slow_in_flight = max(self.max_slow_in_flight, self._slow_in_flight)

    def request_finished(self, path: str) -> None:
        with self._lock:
            self._in_flight -= 1
            if is_slow(path):
                self._slow_in_flight -= 1

    def request_counts(self) -> dict[str, int]:
        """Requests received per path (faulted ones included) since construction."""
        with self._lock:
            return dict(self._counts)

    def observe(self, request: Request, response: Response, fault: Fault | None) -> None:
        if self._observer is not None:
            self._observer(request, response, fault)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
