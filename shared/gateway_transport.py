"""What carries one gateway request: the `Transport` interface and its real one, `KeepAlive`.

`GatewayClient` (shared/gateway.py) decides what to ask and what an answer means; a
transport only sends one GET and hands back the `Answer`. The real one is one keep-alive
`http.client` connection (one per lane of the client): requests.Session and urllib3 cost
1.7-3.4x its CPU per request (``python -m bench.client_cpu``) for redirects, proxies,
cookies, pools and retries a LAN device on a fixed address never needs. Another
transport (`bench.year_world.GatewayNetwork`) answers in process, in virtual time.

A transport reports failure by raising: `TimeoutError` (no connection or no answer in
time), another `OSError` (refused, reset, DNS, TLS as `ssl.SSLError`), `PinMismatch` (a
certificate other than the pinned one) or `http.client.HTTPException` (not HTTP, or the
body cut short: `http.client.IncompleteRead`). The client sorts these into its errors.
"""

from __future__ import annotations

import http.client
import select
import ssl
from collections.abc import Mapping
from typing import NamedTuple, Protocol

from shared.pinning import GATEWAY_TLS, fingerprint


class Get(NamedTuple):
    """One GET to a gateway."""

    scheme: str  #: "https" or "http"
    host: str  #: as configured: "name", "ip" or "ip:port"
    path: str  #: with the query
    headers: Mapping[str, str]
    timeout: tuple[float, float]  #: connect, read (s)


class Answer(NamedTuple):
    """One HTTP answer: status, headers (names lowercased) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one GET to a gateway; raises as the module docstring says."""

    def send(self, get: Get) -> Answer: ...

    def close(self) -> None: ...


class PinMismatch(ssl.SSLError):
    """The gateway presented a certificate other than the pinned one (nothing was sent)."""


class KeepAlive:
    """One keep-alive connection to one gateway, opened again when it has dropped.

    Not thread-safe: the client keeps one per lane and holds the lane's lock around
    `send`. ``fingerprint`` set: the TLS handshake must present that certificate, checked
    before the request (and its token) is written.
    """

    def __init__(self) -> None:
        self.fingerprint: str | None = None
        self._connection: http.client.HTTPConnection | None = None
        self._to: tuple[str, str] | None = None  #: (scheme, host) of the open connection

    def send(self, get: Get) -> Answer:
        connection = self._connection
        if connection is None or self._to != (get.scheme, get.host) or _dropped(connection):
            connection = self._open(get.scheme, get.host, get.timeout)
        try:
            connection.request("GET", get.path, headers=get.headers)
            response = connection.getresponse()
            body = response.read()
        except BaseException:
            self.close()  # whatever is left on the wire belongs to no request of ours
            raise
        if response.will_close:
            self.close()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._to = None

    def _open(
        self, scheme: str, host: str, timeout: tuple[float, float]
    ) -> http.client.HTTPConnection:
        self.close()
        connect_s, read_s = timeout
        connection = (
            http.client.HTTPSConnection(host, timeout=connect_s, context=GATEWAY_TLS)
            if scheme == "https"
            else http.client.HTTPConnection(host, timeout=connect_s)
        )
        # Never reconnect behind our back: a new connection must pass the pin check.
        connection.auto_open = 0
        try:
            connection.connect()  # TCP and the TLS handshake, within the connect timeout
            assert connection.sock is not None
            if self.fingerprint is not None and isinstance(connection.sock, ssl.SSLSocket):
                der = connection.sock.getpeercert(binary_form=True) or b""
                if fingerprint(der) != self.fingerprint:
                    raise PinMismatch("Fingerprints did not match the pinned certificate")
            connection.sock.settimeout(read_s)
        except BaseException:
            connection.close()
            raise
        self._connection, self._to = connection, (scheme, host)
        return connection


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """True when the idle connection cannot carry another request: closed by us, or
    readable (the gateway closed it, or sent something unasked) -- urllib3's check."""
    sock = connection.sock
    if sock is None:
        return True
    poller = select.poll()  # not select.select: that fails on descriptors >= 1024
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
