"""The simulated IQ Gateway: the local API a poller talks to, with real auth checks.

Owns the endpoint routing, the auth rules of each firmware generation and the record of
served readings. Data comes from a fixture folder (bytes as captured) or, without one,
from `SiteGenerator`. Firmware >= 7 (or ``<web-tokens>true``): HTTPS with a self-signed
certificate made at construction, and every path but ``/info`` needs a Bearer token that
the cloud (or, without a cloud, this gateway's own signer) accepts. Older firmware: plain
HTTP, digest auth on ``/api/v1/production/inverters`` only.

Answers take as long as a real gateway's, slow JSON endpoints one at a time
(`shared.simulator.timing` states the model); ``latency=INSTANT`` answers at once.

Channels: serves loopback HTTP(S); reads fixture files once; reads its `FaultPlan`.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Self

from shared.simulator.cloud import OWNER_LIFETIME_S, SimulatedCloud, TokenSigner
from shared.simulator.digest import DigestChecker, legacy_password
from shared.simulator.faults import Fault, FaultKind, FaultPlan
from shared.simulator.fixture import (
    Captured,
    GatewayInfo,
    info_xml,
    load_fixture,
    replace_serial,
)
from shared.simulator.generator import SiteGenerator
from shared.simulator.served import RECORDED, ServedLog, ServedReading, summarize
from shared.simulator.server import UNAUTHORIZED_BODY, BackgroundServer, Request, Response
from shared.simulator.timing import REAL, Timing, timing_key
from shared.simulator.tls import KeyPair, make_self_signed, server_context

DEFAULT_FIRMWARE = "D8.2.4264"
CHECK_JWT_OK = b"<!DOCTYPE html><h2>Valid token.</h2>\n"
NOT_FOUND = (
    b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not "
    b"Found</h1></center>\r\n<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
)
DIGEST_PATHS = frozenset({"/api/v1/production/inverters"})
# Faults after which the body served is not the real reading.
_SPOILING = frozenset({FaultKind.TRUNCATE, FaultKind.HTML, FaultKind.UNAUTHORIZED})


class SimulatedGateway:
    """One gateway on loopback. See the module docstring for what it serves."""

    def __init__(
        self,
        fixture: Path | None = None,
        *,
        cloud: SimulatedCloud | None = None,
        serial: str | None = None,
        phases: int = 1,
        consumption_cts: bool = False,
        inverters: int = 12,
        battery: bool = False,
        firmware: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        latency: float = REAL,
    ) -> None:
        """``latency`` scales the answer times: `REAL` (1.0), `INSTANT` (0.0) or between."""
        self.faults = FaultPlan()
        self._timing = Timing(latency, seed=seed)
        self._clock = clock
        self._cloud = cloud
        self._signer = TokenSigner(clock)
        self._served = ServedLog()
        self._lock = threading.Lock()
        self._fixture: dict[str, Captured] | None = None
        self._generator: SiteGenerator | None = None
        if fixture is not None:
            self._fixture = load_fixture(Path(fixture))
            body = self._fixture["/info"].body
            if serial is not None:
                body = replace_serial(body, serial)
                self._fixture["/info"] = replace(self._fixture["/info"], body=body)
            self._info_body: bytes | None = body
            self._info = GatewayInfo.from_xml(body)
        else:
            serial = serial or f"1220{seed % 10**8:08d}"
            firmware = firmware or DEFAULT_FIRMWARE
            self._info_body = None  # generated per request, with the current <time>
            legacy = GatewayInfo(serial, firmware, web_tokens=False)
            self._info = GatewayInfo(serial, firmware, web_tokens=legacy.major >= 7)
            self._generator = SiteGenerator(
                serial=serial,
                phases=phases,
                consumption_cts=consumption_cts,
                inverters=inverters,
                battery=battery,
                seed=seed,
                start=clock(),
            )
        self._digest = DigestChecker(legacy_password(self._info.serial))
        self._pair: KeyPair = make_self_signed("envoy")
        self._server = BackgroundServer(
            self._route,
            faults=self.faults,
            host=host,
            port=port,
            tls=self._tls_for(self._info),
            observer=self._observe,
        )

    # --- public API -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def serial(self) -> str:
        return self._info.serial

    @property
    def firmware(self) -> str:
        return self._info.firmware

    @property
    def uses_tokens(self) -> bool:
        return self._info.uses_tokens

    @property
    def served(self) -> list[ServedReading]:
        """The most recent data bodies served (bounded), oldest first."""
        return self._served.snapshot()

    def request_counts(self) -> dict[str, int]:
        """Requests received per path, faulted ones included."""
        return self._server.request_counts()

    @property
    def max_in_flight(self) -> int:
        """The most requests this gateway ever handled at once."""
        return self._server.max_in_flight

    @property
    def max_slow_in_flight(self) -> int:
        """The most slow requests (production.json, inventory.json, /home) it ever handled
        at once: a logger should keep it 1, as they only queue on the gateway's backend."""
        return self._server.max_slow_in_flight

    @property
    def certificate_pem(self) -> bytes:
        return self._pair.cert_pem

    @property
    def certificate_der(self) -> bytes:
        return self._pair.cert_der

    @property
    def generator(self) -> SiteGenerator | None:
        """The synthetic site behind a fixture-less gateway (tests read its truth)."""
        return self._generator

    def answer_range_s(self, key: str) -> tuple[float, float]:
        """The least and the most an answer for ``key`` (``/production.json?details=1``,
        ..) takes once computed, faults and queueing aside: for audits' time windows."""
        return self._timing.range_s(key, self._recorded(key))

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def issue_token(
        self,
        *,
        lifetime_s: float | None = None,
        user_type: str = "owner",
        serial: str | None = None,
    ) -> str:
        """A token this gateway accepts (from its cloud when it has one)."""
        serial = serial or self.serial
        if self._cloud is not None:
            return self._cloud.issue_token(serial, lifetime_s=lifetime_s, user_type=user_type)
        return self._signer.issue(
            serial,
            username="owner@example.com",
            user_type=user_type,
            lifetime_s=OWNER_LIFETIME_S if lifetime_s is None else lifetime_s,
        )

    def token_is_valid(self, token: str) -> bool:
        if self._cloud is not None:
            return self._cloud.token_is_valid(token, self.serial)
        return self._signer.is_valid(token, self.serial)

    def set_info(self, info_xml_body: bytes) -> None:
        """Change ``/info`` at runtime, as a firmware upgrade does.

        Crossing firmware 7 switches HTTP <-> HTTPS: the listener restarts on the same port,
        like a gateway rebooting into the new firmware.
        """
        info = GatewayInfo.from_xml(info_xml_body)
        with self._lock:
            old, self._info, self._info_body = self._info, info, info_xml_body
            if self._fixture is not None:
                self._fixture["/info"] = replace(self._fixture["/info"], body=info_xml_body)
            self._digest = DigestChecker(legacy_password(info.serial))
        if old.uses_tokens != info.uses_tokens:
            running = self._server.running
            self._server.stop()
            self._server.tls = self._tls_for(info)
            if running:
                self._server.start()

    def set_fixture(self, fixture: Path) -> None:
        """Serve another fixture folder from now on, keeping this gateway's serial.

        A firmware upgrade that changes the body shapes; ``/info`` changes as `set_info`.
        """
        data = load_fixture(Path(fixture))
        info_body = replace_serial(data["/info"].body, self.serial)
        data["/info"] = replace(data["/info"], body=info_body)
        with self._lock:
            self._fixture = data
        self.set_info(info_body)

    def rotate_certificate(self) -> None:
        """A new self-signed certificate for new connections (a replaced gateway)."""
        self._pair = make_self_signed("envoy")
        if self._server.tls is not None:
            self._server.tls = server_context(self._pair)

    def answer(self, request: Request) -> Response:
        """What this gateway answers, in this process: for harnesses that run the client
        over an in-process transport in virtual time (`bench.year`; build the gateway with
        ``latency=INSTANT``: answer times and faults are the harness's business there).
        Nothing is recorded in `served`: a year of readings would take a gigabyte."""
        return self._route(request)

    # --- serving ----------------------------------------------------------------------

    def _tls_for(self, info: GatewayInfo) -> ssl.SSLContext | None:
        return server_context(self._pair) if info.uses_tokens else None

    def _route(self, request: Request) -> Response:
        with self._lock:
            info, info_body, digest = self._info, self._info_body, self._digest
        if request.path == "/info":
            if info_body is None:
                info_body = info_xml(
                    info.serial,
                    info.firmware,
                    time_s=int(self._clock()),
                    web_tokens=info.web_tokens,
                )
            self._take_time(request, self._recorded("/info"))
            return Response(200, info_body, "application/xml")
        if info.uses_tokens:
            if not self.token_is_valid(_bearer(request)):
                return Response(401, UNAUTHORIZED_BODY)
            if request.path == "/auth/check_jwt":
                return Response(200, CHECK_JWT_OK, "text/html")
        elif request.path in DIGEST_PATHS and not digest.check(
            request.headers.get("authorization", ""), request.method, request.target
        ):
            return Response(
                401, UNAUTHORIZED_BODY, headers={"WWW-Authenticate": digest.challenge()}
            )
        key = request.path
        if key == "/production.json" and request.query.get("details") == ["1"]:
            key += "?details=1"
        captured = self._body(key)
        if captured is None:
            return Response(404, NOT_FOUND, "text/html")
        self._take_time(request, captured.duration_s)
        return Response(captured.status, captured.body, captured.content_type)

    def _recorded(self, key: str) -> float | None:
        with self._lock:
            captured = None if self._fixture is None else self._fixture.get(key)
        return None if captured is None else captured.duration_s

    def _take_time(self, request: Request, recorded: float | None) -> None:
        """Wait as long as a real gateway takes to answer this (see `Timing`)."""
        key = timing_key(request.path, request.query)
        self._timing.answer(key, recorded, self._server.stopping)

    def _body(self, key: str) -> Captured | None:
        if self._fixture is not None:
            return self._fixture.get(key)
        assert self._generator is not None
        body = self._generator.body(key, self._clock())
        return None if body is None else Captured(200, body)

    def _observe(self, request: Request, response: Response, fault: Fault | None) -> None:
        if request.path not in RECORDED or request.method != "GET":
            return
        complete = response.status == 200 and (fault is None or fault.kind not in _SPOILING)
        values = summarize(request.path, response.body) if complete else {}
        self._served.add(
            ServedReading(request.path, self._clock(), response.status, complete, values)
        )

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


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
