"""Hostile input: whatever a gateway or a config file says, a clear error or valid data.

A real HTTP listener (the simulator's `BackgroundServer`) answers the data endpoints
with bodies, status codes and headers hypothesis draws: random bytes, random JSON, real
captures with values replaced or keys removed. The real pollers' feed code (`PowerFeed`,
`InverterFeed`) reads them through a real `GatewayClient`; each poll must end in a batch
of sane numbers or a typed `GatewayError`, never any other exception. Random YAML goes to
`load_config`: a `SiteConfig` or a `ConfigError`, nothing else.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import GatewayConfig, SiteConfig
from shared.config_loader import load_config
from shared.errors import ConfigError, GatewayError
from shared.gateway import GatewayClient
from shared.messages import InverterBatch, PollReport, PowerBatch, TokenRejected
from shared.simulator.faults import FaultPlan
from shared.simulator.fixture import info_xml
from shared.simulator.server import BackgroundServer, Request, Response
from tests.fixtures import FIXTURES
from workers.inverters import InverterFeed
from workers.power import PowerFeed, ProductionFetch

CAPTURE = FIXTURES / "7.6.175_with_cts_3phase"
MEASUREMENT_TYPES = {"production", "total-consumption", "net-consumption", "inverters"}


def power_feed(reports: list[PollReport]) -> PowerFeed:
    """The power feed, its production.json fetched in the caller so a test sees it all
    (its reports; a 401 also sends the token worker a TokenRejected, not kept here)."""

    def keep(message: PollReport | TokenRejected) -> None:
        if isinstance(message, PollReport):
            reports.append(message)

    return PowerFeed("hostile", ProductionFetch("hostile", 60.0, keep, threaded=False))


LINES = {"total", "L1", "L2", "L3"}
STATUSES = [200, 200, 200, 200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 429, 500, 502, 503]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class HostileGateway:
    """Answers /info honestly (firmware 5: plain HTTP) and everything else as told."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[str, Response] = {}
        self.server = BackgroundServer(self._app, faults=FaultPlan())

    def answer(self, path: str, response: Response) -> None:
        with self._lock:
            self._answers[path] = response

    def _app(self, request: Request) -> Response:
        if request.path == "/info":
            return Response(200, info_xml("121212121212", "D5.0.62", time_s=0, web_tokens=False))
        with self._lock:
            return self._answers.get(request.path, Response(404, b"not here", "text/html"))


@pytest.fixture(scope="module")
def gateway() -> Iterator[HostileGateway]:
    gw = HostileGateway()
    gw.server.start()
    yield gw
    gw.server.stop()


@pytest.fixture(scope="module")
def client(gateway: HostileGateway) -> Iterator[GatewayClient]:
    config = GatewayConfig(
        name="hostile",
        host=gateway.server.url.split("://")[1],
        serial="121212121212",
        scheme="http",
        connect_timeout_s=2.0,
        read_timeout_s=2.0,
    )
    yield GatewayClient(config, pin_store=None)


# --- strategies -----------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _capture(name: str) -> Any:
    return orjson.loads((CAPTURE / name).read_bytes())


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    """A real capture with some values replaced by random JSON and some keys removed."""
    data = _capture(name)
    for _ in range(draw(st.integers(1, 4))):
        node: Any = data
        path = []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(
                st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node)))
            )
            path.append((node, key))
            node = node[key]
        if not path:
            continue
        parent, key = path[-1]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(json_value)
    return json.dumps(data).encode()  # not orjson: huge integers are hostile input too


def bodies(capture: str) -> st.SearchStrategy[bytes]:
    raw = st.binary(max_size=300)
    random_json = json_value.map(lambda v: json.dumps(v).encode())
    real = _capture(capture) if CAPTURE.is_dir() else {}
    truncated = st.integers(0, 2000).map(lambda n: orjson.dumps(real)[:n])
    strategies = [raw, random_json, truncated]
    if CAPTURE.is_dir():
        strategies.append(mutated(capture))
    return st.one_of(*strategies)


headers = st.fixed_dictionaries(
    {},
    optional={
        "Retry-After": st.sampled_from(["1", "-5", "soon", "99999999999", ""]),
        "WWW-Authenticate": st.sampled_from(
            [
                'Digest realm="x"',  # no nonce
                'Digest nonce="n"',  # no realm
                'Digest realm="x", nonce="n", qop="auth-int"',  # a qop requests cannot do
                'Digest realm="x", nonce="n", algorithm="ROT13"',  # an unknown algorithm
                'Digest realm="enphaseenergy.com", nonce="abc", qop="auth"',  # a fine one
                "Digest",
                "Basic",
                "garbage",
                "",
            ]
        ),
        "Location": st.sampled_from(["/production.json", "/nowhere", ""]),
        "X-Anything": st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)),
    },
)
content_types = st.sampled_from(
    ["application/json", "text/html", "application/xml", "text/plain", "", "x/y; charset=zz"]
)


def response(capture: str) -> st.SearchStrategy[Response]:
    return st.builds(Response, st.sampled_from(STATUSES), bodies(capture), content_types, headers)


def finite(value: float | None) -> bool:
    """A number a sink can write (the encoders write ints as floats), or absent."""
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- the pollers ----------------------------------------------------------------------


@SETTINGS
@given(production=response("production.json"), readings=response("meters_readings.json"))
def test_any_power_answer_gives_sane_samples_or_a_gateway_error(
    gateway: HostileGateway,
    client: GatewayClient,
    production: Response,
    readings: Response,
) -> None:
    gateway.answer("/production.json", production)
    gateway.answer("/api/v1/production", production)
    gateway.answer("/ivp/meters", Response(200, (CAPTURE / "meters.json").read_bytes()))
    gateway.answer("/ivp/meters/readings", readings)
    reports: list[PollReport] = []
    feed = power_feed(reports)
    try:
        info = client.info()
        batch = feed.poll(client, info, tick_ns=1_700_000_000_000_000_000, phase_ns=0)
    except GatewayError as error:
        assert str(error)  # a message a user can read
        return
    finally:
        # production.json's own errors are reported, typed, never a bug
        assert all(r.error_kind != "bug" and (r.ok or r.detail) for r in reports), reports
    assert isinstance(batch, PowerBatch)
    for sample in batch.samples:
        assert sample.measurement_type in MEASUREMENT_TYPES
        assert sample.line in LINES
        assert all(finite(v) for v in sample[2:]), sample
        assert sample.p_w is not None


@SETTINGS
@given(answer=response("inverters.json"))
def test_any_inverter_answer_gives_sane_reports_or_a_gateway_error(
    gateway: HostileGateway, client: GatewayClient, answer: Response
) -> None:
    gateway.answer("/api/v1/production/inverters", answer)
    feed = InverterFeed("hostile", {})
    try:
        info = client.info()
        batch = feed.poll(client, info, tick_ns=1_700_000_000_000_000_000, phase_ns=0)
    except GatewayError as error:
        assert str(error)
        return
    if batch is None:
        return
    assert isinstance(batch, InverterBatch)
    for report in batch.reports:
        assert isinstance(report.serial, str) and report.serial
        assert isinstance(report.report_s, int) and report.report_s >= 0
        assert finite(report.p_w) and finite(report.p_max_w)


# --- the config file ------------------------------------------------------------------

yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
yaml_value = st.recursive(
    yaml_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=15,
)
TOP_KEYS = [
    "state_dir",
    "timezone",
    "accounts",
    "envoys",
    "sinks",
    "supervision",
    "logging",
    "daily",
]
site_like = st.dictionaries(st.sampled_from(TOP_KEYS), yaml_value, max_size=6)
raw_text = st.text(max_size=300)


@SETTINGS
@given(document=st.one_of(site_like.map(yaml.safe_dump), raw_text, st.binary(max_size=200)))
def test_any_yaml_gives_a_config_or_a_config_error_naming_the_file(
    tmp_path: Path, document: str | bytes
) -> None:
    site = tmp_path / "site.yml"
    site.write_bytes(document if isinstance(document, bytes) else document.encode())
    site.chmod(0o600)
    try:
        config = load_config(site, environ={})
    except ConfigError as error:
        assert error.problems
        assert all(str(site) in problem or "site.yml" in problem for problem in error.problems)
        return
    assert isinstance(config, SiteConfig)


# --- a transient HTML page ------------------------------------------------------------


def test_one_html_error_page_costs_the_inverter_sum_for_a_minute_not_until_a_restart(
    gateway: HostileGateway, client: GatewayClient
) -> None:
    real = Response(200, (CAPTURE / "production.json").read_bytes())
    gateway.answer(
        "/api/v1/production", Response(200, (CAPTURE / "api_v1_production.json").read_bytes())
    )
    gateway.answer("/ivp/meters", Response(200, (CAPTURE / "meters.json").read_bytes()))
    gateway.answer(
        "/ivp/meters/readings", Response(200, (CAPTURE / "meters_readings.json").read_bytes())
    )
    gateway.answer(
        "/production.json", Response(200, b"<!DOCTYPE html><html>busy</html>", "text/html")
    )
    reports: list[PollReport] = []
    feed = power_feed(reports)
    info = client.info()
    second = 10**9
    start = 1_700_000_000 * second

    def types(tick_ns: int) -> set[str]:
        return {s.measurement_type for s in feed.poll(client, info, tick_ns, 0).samples}

    # the ticks read the CTs whatever production.json answers
    assert types(start) == {"production", "net-consumption", "total-consumption"}
    assert [r.error_kind for r in reports] == ["malformed"]
    gateway.answer("/production.json", real)  # the gateway is fine again
    assert "inverters" not in types(start + 30 * second)  # not asked again yet
    assert len(reports) == 1
    assert "inverters" in types(start + 60 * second)
    assert reports[-1].ok and reports[-1].endpoint == "/production.json?details=1"
