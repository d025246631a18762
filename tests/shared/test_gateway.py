"""The gateway client against simulated gateways over real HTTP(S) on loopback."""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared.cloud import EnlightenClient
from shared.config import CloudConfig, GatewayConfig
from shared.errors import (
    CertificateMismatch,
    GatewayAuthError,
    GatewayBadResponse,
    GatewayError,
    GatewayHTTPError,
    GatewayTimeout,
    GatewayUnreachable,
)
from shared.gateway import GatewayClient
from shared.parsers import parse_production
from shared.pinning import fingerprint
from shared.simulator.cloud import SimulatedCloud
from shared.simulator.faults import Fault, FaultKind
from shared.simulator.fixture import info_xml, load_fixture
from shared.simulator.gateway import SimulatedGateway
from shared.simulator.timing import INSTANT

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "pyenphase"
FIRMWARES = sorted(p.name for p in FIXTURES.iterdir() if (p / "info.xml").is_file())
EMAIL, PASSWORD = "owner@example.com", "correct horse battery"
PRODUCTION = "/production.json?details=1"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedCloud]:
    with SimulatedCloud(
        accounts={EMAIL: PASSWORD}, state_dir=tmp_path_factory.mktemp("cloud")
    ) as sim:
        yield sim


@pytest.fixture
def start_gateway(cloud: SimulatedCloud) -> Iterator[Callable[..., SimulatedGateway]]:
    started: list[SimulatedGateway] = []

    def start(fixture: str | None = "7.6.175_with_cts", **kwargs: Any) -> SimulatedGateway:
        sim = SimulatedGateway(
            FIXTURES / fixture if fixture else None, cloud=cloud, latency=INSTANT, **kwargs
        )
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def config_for(sim: SimulatedGateway, **overrides: Any) -> GatewayConfig:
    host = sim.url.split("://", 1)[1]
    base = GatewayConfig(name="garage", host=host, connect_timeout_s=2.0, read_timeout_s=5.0)
    return replace(base, **overrides)


@pytest.fixture
def clients() -> Iterator[Callable[..., GatewayClient]]:
    made: list[GatewayClient] = []

    def make(config: GatewayConfig, pin_store: Path | None = None) -> GatewayClient:
        client = GatewayClient(config, pin_store=pin_store)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def cloud_token(cloud: SimulatedCloud, serial: str) -> str:
    """A token the way the token worker gets one: log in, then ask Entrez."""
    enlighten = EnlightenClient(
        CloudConfig(login_url=cloud.url, token_url=cloud.url, ca_file=cloud.ca_file)
    )
    try:
        return enlighten.fetch_token(enlighten.login(EMAIL, PASSWORD), serial, EMAIL)
    finally:
        enlighten.close()


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_every_fixture_firmware_serves_every_endpoint(
    firmware: str,
    cloud: SimulatedCloud,
    start_gateway: Callable[..., SimulatedGateway],
    clients: Callable[..., GatewayClient],
) -> None:
    sim = start_gateway(firmware)
    client = clients(config_for(sim))
    info = client.info()
    assert info.serial == sim.serial
    assert client.scheme == ("https" if sim.uses_tokens else "http")
    if info.web_tokens:
        assert not client.check_token()
        client.set_token(cloud_token(cloud, info.serial))
        assert client.check_token()
    for path, captured in load_fixture(FIXTURES / firmware).items():
        if path == "/info":
            continue
        if captured.status == 200:
            assert client.get(path) == captured.body, path
        else:  # e.g. 3.9.36_bad_auth captured a 401 for the inverters
            with pytest.raises(GatewayAuthError):
                client.get(path)


def test_legacy_firmware_answers_the_digest_challenge_with_the_serial(
    start_gateway: Callable[..., SimulatedGateway], clients: Callable[..., GatewayClient]
) -> None:
    sim = start_gateway("5.0.62")
    client = clients(config_for(sim))
    assert not client.info().web_tokens
    assert client.get("/api/v1/production/inverters").startswith(b"[")
    assert client.get("/api/v1/production/inverters").startswith(b"[")  # nonce reused


def test_a_wrong_serial_fails_digest_auth(
    start_gateway: Callable[..., SimulatedGateway], clients: Callable[..., GatewayClient]
) -> None:
    sim = start_gateway("5.0.62")
    client = clients(config_for(sim, serial="000000000000", scheme="http"))
    with pytest.raises(GatewayAuthError):
        client.get("/api/v1/production/inverters")


def test_a_configured_scheme_skips_detection(
    start_gateway: Callable[..., SimulatedGateway], clients: Callable[..., GatewayClient]
) -> None:
    sim = start_gateway("7.6.175_with_cts")
    client = clients(config_for(sim, scheme="http"))
    with pytest.raises(GatewayUnreachable):  # plain HTTP to a TLS port
        client.info()


@pytest.fixture
def healthy(
    cloud: SimulatedCloud,
    start_gateway: Callable[..., SimulatedGateway],
    clients: Callable[..., GatewayClient],
) -> tuple[SimulatedGateway, GatewayClient]:
    sim = start_gateway("7.6.175_with_cts")
    client = clients(config_for(sim, read_timeout_s=1.0))
    client.info()
    client.set_token(sim.issue_token())
    return sim, client


FAULTS = [
    (Fault(FaultKind.TIMEOUT, times=1), GatewayTimeout),
    (Fault(FaultKind.LATENCY, seconds=3, times=1), GatewayTimeout),
    (Fault(FaultKind.RESET, times=1), GatewayUnreachable),
    (Fault(FaultKind.STATUS, status=500, times=1), GatewayHTTPError),
    (Fault(FaultKind.STATUS, status=503, retry_after=5, times=1), GatewayHTTPError),
    (Fault(FaultKind.HTML, times=1), GatewayBadResponse),
    (Fault(FaultKind.TRUNCATE, times=1), GatewayBadResponse),
    (Fault(FaultKind.UNAUTHORIZED, times=1), GatewayAuthError),
]


@pytest.mark.parametrize(("fault", "error"), FAULTS, ids=[f.kind.value for f, _ in FAULTS])
def test_each_fault_is_a_typed_error_and_the_next_request_succeeds(
    healthy: tuple[SimulatedGateway, GatewayClient],
    fault: Fault,
    error: type[GatewayError],
) -> None:
    sim, client = healthy
    sim.faults.set("/production.json", fault)
    with pytest.raises(error) as caught:
        client.fetch(PRODUCTION, parse_production)
    assert caught.value.endpoint.startswith("/production.json")
    assert caught.value.envoy == "garage"
    assert client.fetch(PRODUCTION, parse_production).samples


def test_a_slow_answer_within_the_read_timeout_is_no_error(
    healthy: tuple[SimulatedGateway, GatewayClient],
) -> None:
    sim, client = healthy
    sim.faults.set("/production.json", Fault(FaultKind.LATENCY, seconds=0.2, times=1))
    assert client.fetch(PRODUCTION, parse_production).samples


def test_errors_never_contain_the_token(
    healthy: tuple[SimulatedGateway, GatewayClient],
) -> None:
    sim, client = healthy
    token = sim.issue_token()
    client.set_token(token)
    texts = []
    for fault in (
        Fault(FaultKind.UNAUTHORIZED),
        Fault(FaultKind.STATUS, status=500),
        Fault(FaultKind.HTML),
        Fault(FaultKind.RESET),
    ):
        sim.faults.set("*", fault)
        with pytest.raises(GatewayError) as caught:
            client.fetch(PRODUCTION, parse_production)
        texts.append(f"{caught.value} {caught.value!r} {caught.value.__cause__}")
    assert not any(token in text or token[-20:] in text for text in texts)


def test_a_gateway_that_is_off_is_unreachable(clients: Callable[..., GatewayClient]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = clients(GatewayConfig(name="garage", host=f"127.0.0.1:{port}", connect_timeout_s=2.0))
    with pytest.raises(GatewayUnreachable):
        client.info()


def test_a_firmware_upgrade_to_tokens_is_followed_after_reading_info_again(
    cloud: SimulatedCloud,
    start_gateway: Callable[..., SimulatedGateway],
    clients: Callable[..., GatewayClient],
) -> None:
    sim = start_gateway("5.0.62")
    client = clients(config_for(sim))
    assert client.info().web_tokens is False
    client.get("/api/v1/production/inverters")  # the digest nonce is now remembered
    sim.set_info(info_xml(sim.serial, "D7.6.175", time_s=0, web_tokens=True))
    with pytest.raises(GatewayError):
        client.get("/api/v1/production")
    assert client.info().web_tokens
    assert client.scheme == "https"
    client.set_token(cloud_token(cloud, sim.serial))
    assert client.get("/api/v1/production/inverters").startswith(b"[")


def test_pinning_stores_the_fingerprint_privately_on_first_use(
    healthy: tuple[SimulatedGateway, GatewayClient],
    clients: Callable[..., GatewayClient],
    tmp_path: Path,
) -> None:
    sim, _ = healthy
    client = clients(config_for(sim, pin_certificate=True), pin_store=tmp_path)
    client.info()
    (pin,) = tmp_path.iterdir()
    assert pin.read_text().strip() == fingerprint(sim.certificate_der)
    assert stat.S_IMODE(pin.stat().st_mode) == 0o600
    again = clients(config_for(sim, pin_certificate=True), pin_store=tmp_path)
    again.set_token(sim.issue_token())
    assert again.check_token()


def test_a_replaced_gateway_certificate_is_refused_with_how_to_repin(
    cloud: SimulatedCloud,
    start_gateway: Callable[..., SimulatedGateway],
    clients: Callable[..., GatewayClient],
    tmp_path: Path,
) -> None:
    old = start_gateway("7.6.175_with_cts")
    config = config_for(old, pin_certificate=True)
    clients(config, pin_store=tmp_path).info()
    old.stop()
    new = start_gateway("7.6.175_with_cts", port=int(config.host.rsplit(":", 1)[1]))
    client = clients(config, pin_store=tmp_path)
    client.set_token(new.issue_token())
    with pytest.raises(CertificateMismatch) as caught:
        client.info()
    (pin,) = tmp_path.iterdir()
    assert f"delete {pin}" in str(caught.value)
    with pytest.raises(CertificateMismatch):  # and no fallback to plain HTTP either
        client.get("/auth/check_jwt")
    pin.unlink()
    repinned = clients(config, pin_store=tmp_path)
    repinned.set_token(new.issue_token())
    assert repinned.check_token()
