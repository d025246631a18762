"""The HTTP client for one gateway: scheme and auth detection, one slow request at a time.

Owns two keep-alive connections per gateway (a slow and a fast lane, below), each a
`shared.gateway_transport.KeepAlive`: bare `http.client`, under half the CPU per request
of requests.Session (issue 13, ``python -m bench.client_cpu``).
`info` reads ``/info`` (HTTPS first, plain HTTP for legacy firmware) and decides how to
talk from then on: firmware with web tokens -> HTTPS with ``Authorization: Bearer``;
older firmware -> HTTP, with Digest auth (user ``envoy``, password the serial's last 6
digits, `shared.digest`) answered where the gateway asks for it. ``GatewayConfig.scheme``
overrides the detection.

Every failure becomes a `GatewayError` subclass the pollers count by kind: timeout,
unreachable (refused, reset, DNS, TLS), auth (401/403), http (other status, redirects,
which are never followed), malformed (the parser refused a 200 body), certificate (the
pinned fingerprint changed). The token never appears in an error or a log line.

What a gateway can take (issue 13, the capture logs of a D8.3.5169): the slow JSON
endpoints (`SLOW_PATHS`: production.json, /production, inventory.json, /home; 5-11 s
each) are computed one at a time by one backend, so a second one only queues behind the
first and doubles its wait; ``/ivp/*``, ``/api/v1/*``, ``/info`` and ``/auth/*`` answer in
~0.3 s alongside them. So the client keeps two lanes, each with its own keep-alive
connection and its own in-process lock: the slow lane also takes a lock file in the state
dir, shared by both pollers of the gateway (two processes), so the gateway has at most
one slow request in flight from us; the kernel drops the ``flock`` when a process dies,
even by SIGKILL. The fast lane takes no file lock: a slow answer (or the other poller's
request) never holds up a fast one. At most, then, a gateway sees one slow request plus
one fast request per poll thread (power tick, power's production.json, inverters: 3).

TLS to a gateway is not verified (its certificate is self-signed); with
``pin_certificate`` it is pinned on first use (see `shared.pinning`). Reads the pin file
in the state dir; writes it once.
"""

from __future__ import annotations

import fcntl
import http.client
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from shared.config import GatewayConfig
from shared.digest import DigestAuth
from shared.errors import (
    CertificateMismatch,
    GatewayAuthError,
    GatewayBadResponse,
    GatewayError,
    GatewayHTTPError,
    GatewayTimeout,
    GatewayUnreachable,
    ParseError,
)
from shared.gateway_transport import Answer, Get, KeepAlive, PinMismatch, Transport
from shared.messages import GatewayInfo
from shared.parsers import parse_info
from shared.pinning import PinStore, peer_fingerprint

T = TypeVar("T")

CHECK_JWT = "/auth/check_jwt"
#: paths the gateway computes one at a time, 5-11 s each (the module docstring)
SLOW_PATHS = frozenset({"/production.json", "/production", "/inventory.json", "/home"})


def is_slow(path: str) -> bool:
    """True for a request the gateway's one slow backend computes (query ignored)."""
    return path.partition("?")[0] in SLOW_PATHS


LEGACY_USER = "envoy"


class GatewayClient:
    """Talks to one gateway; safe to share between threads (each lane is serialised)."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        pin_store: Path | None,
        info_parser: Callable[[bytes], GatewayInfo] = parse_info,
        request_lock: Path | None = None,
        transport: Transport | None = None,
    ) -> None:
        """``transport`` carries the requests instead of the network, both lanes'
        (`bench.year` runs the client over an in-process one in virtual time); it has
        no certificates, so ``pin_certificate`` pins only the client's own connections."""
        self.config = config
        # lane (True: slow) -> what carries its requests, and the lock that keeps it to one
        self._own = {} if transport is not None else {slow: KeepAlive() for slow in (True, False)}
        self._lanes: dict[bool, Transport] = dict(self._own)
        if transport is not None:
            self._lanes = {slow: transport for slow in (True, False)}
        self._digest: DigestAuth | None = None
        self._locks = {slow: threading.Lock() for slow in (True, False)}
        self._pin_lock = threading.Lock()
        self._parse_info = info_parser
        self._timeout = (config.connect_timeout_s, config.read_timeout_s)
        self._lock_file = None
        if request_lock is not None:
            request_lock.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = request_lock.open("a")
        self._token: str | None = None
        self._scheme: str | None = None if config.scheme == "auto" else config.scheme
        self.last_info: GatewayInfo | None = None
        self._pins: PinStore | None = None
        if config.pin_certificate:
            if pin_store is None:
                raise ValueError(f"{config.name}: pin_certificate needs a state dir for pins")
            self._pins = PinStore(pin_store, config.host)
        self._pinned = False

    # --- public API -------------------------------------------------------------------

    @property
    def scheme(self) -> str | None:
        """ "https" or "http" once known (configured, or decided by `info`)."""
        return self._scheme

    def set_token(self, token: str) -> None:
        """Use ``token`` as the Bearer token from the next request on."""
        self._token = token

    def info(self) -> GatewayInfo:
        """Read /info and settle the scheme and auth from the firmware it reports."""
        configured = self.config.scheme
        if configured != "auto":
            info = self._fetch_info(configured)
        else:
            try:
                info = self._fetch_info("https")
                configured = "https"
            except GatewayUnreachable as https_error:
                # Legacy firmware listens on plain HTTP only.
                try:
                    info = self._fetch_info("http")
                except GatewayHTTPError as http_error:
                    if 300 <= http_error.status < 400:
                        raise https_error from None  # firmware 7 sends http to https
                    raise
                configured = "http"
            # A gateway without web tokens has no use for TLS; one with them needs it.
            configured = "https" if info.web_tokens else "http"
        self._scheme = configured
        self.last_info = info
        if info.web_tokens:
            # After a firmware upgrade a digest header would replace the Bearer token.
            self._digest = None
        else:
            serial = self.config.serial or info.serial
            self._digest = DigestAuth(LEGACY_USER, serial[-6:])
        return info

    def get(self, path: str) -> bytes:
        """The body of a 200 answer to GET ``path``; a typed GatewayError otherwise."""
        if self._scheme is None:
            self.info()
        assert self._scheme is not None
        return self._get(self._scheme, path)

    def fetch(self, path: str, parser: Callable[[bytes], T]) -> T:
        """GET ``path`` and parse it; the parser's ParseError becomes GatewayBadResponse."""
        body = self.get(path)
        try:
            return parser(body)
        except ParseError as error:
            raise GatewayBadResponse(self.config.name, error) from error

    def check_token(self) -> bool:
        """True when the gateway accepts the current token (GET /auth/check_jwt)."""
        try:
            self.get(CHECK_JWT)
        except GatewayAuthError:
            return False
        return True

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------

    def _fetch_info(self, scheme: str) -> GatewayInfo:
        body = self._get(scheme, "/info")
        try:
            return self._parse_info(body)
        except ParseError as error:
            raise GatewayBadResponse(self.config.name, error) from error

    def _get(self, scheme: str, path: str) -> bytes:
        headers = {"Accept": "*/*"}
        if self._token is not None and scheme == "https":
            headers["Authorization"] = f"Bearer {self._token}"
        slow = is_slow(path)
        with self._locks[slow], self._exclusive(path, slow):
            if scheme == "https" and self._pins is not None and not self._pinned:
                with self._pin_lock:  # both lanes may get here first
                    if not self._pinned:
                        self._pin(path)
            answer = self._send(self._lanes[slow], scheme, path, headers)
        status, body = answer.status, answer.body
        if status == 200:
            return body
        if status in (401, 403):
            raise GatewayAuthError(
                self.config.name, path, f"HTTP {status}: the gateway refused our credentials"
            )
        if 300 <= status < 400:
            # Shown so the user sees where it wanted to send us (e.g. http -> https).
            where = answer.headers.get("location", "")
            raise GatewayHTTPError(self.config.name, path, status, f"redirect to {where}".encode())
        raise GatewayHTTPError(self.config.name, path, status, body)

    def _send(self, lane: Transport, scheme: str, path: str, headers: dict[str, str]) -> Answer:
        """One exchange, answering a digest challenge (once) where legacy firmware asks."""
        digest = self._digest
        try:
            if digest is not None and digest.ready:
                headers["Authorization"] = digest.header("GET", path)
            get = Get(scheme, self.config.host, path, headers, self._timeout)
            answer = lane.send(get)
            if (
                digest is not None
                and 400 <= answer.status < 500
                and digest.accept(answer.headers.get("www-authenticate", ""))
            ):
                headers["Authorization"] = digest.header("GET", path)
                answer = lane.send(get)  # the same headers dict, now answering it
        except (OSError, http.client.HTTPException) as exc:
            raise self._classify(path, exc) from exc
        except ValueError:  # http.client refusing a header value: never echo it
            raise GatewayUnreachable(
                self.config.name,
                path,
                "not sent: a header value has a line break or non-Latin-1"
                " character (check the token)",
            ) from None
        return answer

    @contextmanager
    def _exclusive(self, path: str, slow: bool) -> Iterator[None]:
        """For a slow request, hold the gateway's cross-process lock, waiting at most one
        read timeout (the other poller's slow request ends within one)."""
        if self._lock_file is None or not slow:
            yield
            return
        fd = self._lock_file.fileno()
        deadline = time.monotonic() + self.config.read_timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise GatewayTimeout(
                        self.config.name, path, "the other poller's slow request never finished"
                    ) from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _pin(self, path: str) -> None:
        """Trust on first use: load the pinned fingerprint, or pin the current one."""
        assert self._pins is not None
        pinned = self._pins.load()
        if pinned is None:
            split = urlsplit(f"https://{self.config.host}")
            try:
                pinned = peer_fingerprint(
                    split.hostname or self.config.host,
                    split.port or 443,
                    self.config.connect_timeout_s,
                )
            except TimeoutError as exc:
                raise GatewayTimeout(self.config.name, path, "TLS handshake timed out") from exc
            except OSError as exc:
                raise GatewayUnreachable(
                    self.config.name, path, f"cannot read the TLS certificate: {exc}"
                ) from exc
            self._pins.store(pinned)
        for lane in self._own.values():
            lane.fingerprint = pinned
        self._pinned = True

    def _classify(self, path: str, exc: OSError | http.client.HTTPException) -> GatewayError:
        name = self.config.name
        if isinstance(exc, PinMismatch):
            assert self._pins is not None
            return CertificateMismatch(
                name,
                path,
                "the TLS certificate differs from the one pinned on first use; if the "
                f"gateway was replaced or reset, delete {self._pins.path} to pin the new one",
            )
        if isinstance(exc, TimeoutError):
            return GatewayTimeout(name, path, f"no answer within {self._timeout[1]:g} s")
        if isinstance(exc, http.client.IncompleteRead):
            return GatewayUnreachable(name, path, "connection closed in the middle of the body")
        if isinstance(exc, ssl.SSLError):
            return GatewayUnreachable(name, path, f"TLS failed: {_reason(exc)}")
        if isinstance(exc, OSError):
            return GatewayUnreachable(name, path, f"cannot connect: {_reason(exc)}")
        return GatewayUnreachable(name, path, f"not HTTP: {type(exc).__name__}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """The error's short text ("[Errno 111] Connection refused"), never more than 120."""
    return (str(exc) or type(exc).__name__)[:120]
