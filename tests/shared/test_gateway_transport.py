"""The gateway client's own connections (`KeepAlive`) and digest answers, on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import GatewayConfig
from shared.digest import DigestAuth, parse_challenge
from shared.errors import GatewayUnreachable
from shared.gateway import GatewayClient
from shared.parsers import parse_production
from shared.simulator.digest import DigestChecker
from shared.simulator.gateway import SimulatedGateway
from shared.simulator.timing import INSTANT

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "pyenphase"
PRODUCTION = "/production.json?details=1"


@pytest.fixture
def gateway() -> Iterator[tuple[SimulatedGateway, GatewayClient]]:
    sim = SimulatedGateway(FIXTURES / "8.3.5169_with_generator", latency=INSTANT)
    sim.start()
    config = GatewayConfig(name="garage", host=sim.url.split("://", 1)[1], read_timeout_s=5.0)
    client = GatewayClient(config, pin_store=None)
    client.set_token(sim.issue_token())
    yield sim, client
    client.close()
    sim.stop()


def test_a_connection_the_gateway_dropped_while_idle_is_opened_again_without_an_error(
    gateway: tuple[SimulatedGateway, GatewayClient],
) -> None:
    sim, client = gateway
    assert client.fetch(PRODUCTION, parse_production).samples
    sim.stop()  # closes every open connection, as a gateway reboot does
    sim.start()  # same port
    assert client.fetch(PRODUCTION, parse_production).samples


def test_a_token_with_a_line_break_is_refused_without_showing_it(
    gateway: tuple[SimulatedGateway, GatewayClient],
) -> None:
    sim, client = gateway
    client.info()  # scheme settled: the failure below is not taken for plain-HTTP firmware
    token = sim.issue_token()
    client.set_token(token + "\r\nX-Injected: 1")
    with pytest.raises(GatewayUnreachable) as caught:
        client.get("/ivp/meters/readings")
    assert "token" in str(caught.value) and token not in str(caught.value)
    client.set_token(token)
    assert client.get("/ivp/meters/readings")


def test_digest_answers_satisfy_a_legacy_gateway_for_many_requests_on_one_challenge() -> None:
    checker = DigestChecker("123456")
    auth = DigestAuth("envoy", "123456")
    assert auth.accept(checker.challenge())
    for uri in ("/production.json?details=1", "/api/v1/production/inverters", "/info"):
        assert checker.check(auth.header("GET", uri), "GET", uri)
    wrong = DigestAuth("envoy", "654321")
    assert wrong.accept(checker.challenge())
    assert not checker.check(wrong.header("GET", "/info"), "GET", "/info")


@pytest.mark.parametrize(
    "header",
    [
        "Basic realm=x",
        'Digest realm="x"',
        'Digest nonce="n"',
        'Digest realm="x", nonce="n", qop="auth-int"',
        'Digest realm="x", nonce="n", algorithm="ROT13"',
        "Digest",
    ],
)
def test_a_challenge_we_cannot_answer_is_left_unanswered(header: str) -> None:
    assert parse_challenge(header) is None
