"""The simulated gateway over real HTTP(S) on loopback: fixtures, tokens, digest, /info."""

from __future__ import annotations

import hashlib
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from requests.auth import HTTPDigestAuth
from urllib3.exceptions import InsecureRequestWarning

from shared.simulator import INSTANT, SimulatedCloud, SimulatedGateway, info_xml
from shared.simulator.fixture import DETAILS_FILE, ENDPOINT_FILES, GatewayInfo

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "pyenphase"
FIXTURE_DIRS = sorted(p for p in FIXTURES.iterdir() if (p / "info.xml").is_file())
TIMEOUT = 10


@pytest.fixture(autouse=True)
def _quiet_tls_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


@pytest.fixture(scope="module")
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud() as running:
        yield running


@pytest.fixture
def gateway(cloud: SimulatedCloud) -> Iterator[SimulatedGateway]:
    with SimulatedGateway(FIXTURES / "8.3.5167_3rd-pv", cloud=cloud, latency=INSTANT) as running:
        yield running


def get(gateway: SimulatedGateway, path: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(gateway.url + path, headers=headers, verify=False, timeout=TIMEOUT)


def test_the_fixture_folder_is_found() -> None:
    assert len(FIXTURE_DIRS) >= 30


@pytest.mark.parametrize("folder", FIXTURE_DIRS, ids=lambda p: p.name)
def test_every_fixture_file_is_served_byte_identical(folder: Path) -> None:
    with SimulatedGateway(folder, latency=INSTANT) as gateway, requests.Session() as session:
        # Per request: REQUESTS_CA_BUNDLE in the environment overrides session.verify.
        info = session.get(gateway.url + "/info", verify=False, timeout=TIMEOUT)
        assert info.status_code == 200
        parsed = GatewayInfo.from_xml(info.content)
        assert (parsed.serial, parsed.firmware) == (gateway.serial, gateway.firmware)
        assert gateway.url.startswith("https://" if parsed.uses_tokens else "http://")
        if parsed.uses_tokens:
            session.headers["Authorization"] = f"Bearer {gateway.issue_token()}"
        else:
            session.auth = HTTPDigestAuth("envoy", gateway.serial[-6:])
        for endpoint, name in ENDPOINT_FILES.items():
            response = session.get(gateway.url + endpoint, verify=False, timeout=TIMEOUT)
            if (folder / name).is_file():
                assert response.content == (folder / name).read_bytes(), endpoint
            else:
                assert response.status_code == 404, endpoint
        details = session.get(
            gateway.url + "/production.json?details=1", verify=False, timeout=TIMEOUT
        )
        expected = folder / DETAILS_FILE
        if not expected.is_file():
            expected = folder / "production.json"
        assert details.content == expected.read_bytes()


def test_a_capture_with_status_401_is_served_with_status_401() -> None:
    folder = FIXTURES / "3.9.36_bad_auth"
    with SimulatedGateway(folder, latency=INSTANT) as gateway:
        auth = HTTPDigestAuth("envoy", gateway.serial[-6:])
        response = requests.get(
            gateway.url + "/api/v1/production/inverters", auth=auth, timeout=TIMEOUT
        )
    assert response.status_code == 401
    assert response.content == (folder / "inverters.json").read_bytes()


def test_info_needs_no_token(gateway: SimulatedGateway) -> None:
    assert get(gateway, "/info").status_code == 200


def test_a_token_from_the_cloud_opens_every_endpoint(
    gateway: SimulatedGateway, cloud: SimulatedCloud
) -> None:
    token = cloud.issue_token(gateway.serial)
    check = get(gateway, "/auth/check_jwt", token)
    assert check.status_code == 200
    assert "Valid token" in check.text
    assert get(gateway, "/production.json?details=1", token).status_code == 200
    assert get(gateway, "/ivp/meters/readings", token).status_code == 200


@pytest.mark.parametrize("path", ["/auth/check_jwt", "/production.json", "/ivp/meters"])
def test_requests_without_a_token_get_401(gateway: SimulatedGateway, path: str) -> None:
    assert get(gateway, path).status_code == 401


def test_an_expired_token_gets_401(gateway: SimulatedGateway, cloud: SimulatedCloud) -> None:
    token = cloud.issue_token(gateway.serial, lifetime_s=-1)
    assert get(gateway, "/auth/check_jwt", token).status_code == 401


def test_a_token_for_another_serial_gets_401(
    gateway: SimulatedGateway, cloud: SimulatedCloud
) -> None:
    token = cloud.issue_token("999999999999")
    assert get(gateway, "/production.json", token).status_code == 401


@pytest.mark.parametrize(
    "token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0."], ids=repr
)
def test_garbage_tokens_get_401(gateway: SimulatedGateway, token: str) -> None:
    assert get(gateway, "/auth/check_jwt", token).status_code == 401


def test_a_token_signed_by_another_cloud_gets_401(gateway: SimulatedGateway) -> None:
    other = SimulatedCloud()  # never started: only its signer is used
    try:
        assert get(gateway, "/auth/check_jwt", other.issue_token(gateway.serial)).status_code == 401
    finally:
        other.close()


def test_a_gateway_without_a_cloud_accepts_its_own_tokens_only(cloud: SimulatedCloud) -> None:
    with SimulatedGateway(FIXTURES / "7.6.175_with_cts_3phase", latency=INSTANT) as gateway:
        assert get(gateway, "/auth/check_jwt", gateway.issue_token()).status_code == 200
        foreign = cloud.issue_token(gateway.serial)
        assert get(gateway, "/auth/check_jwt", foreign).status_code == 401


def test_the_token_payload_has_the_fields_clients_read(cloud: SimulatedCloud) -> None:
    import base64
    import json

    token = cloud.issue_token("123456789012", user_type="installer", lifetime_s=3600)
    payload_text = token.split(".")[1]
    payload = json.loads(base64.urlsafe_b64decode(payload_text + "=" * (-len(payload_text) % 4)))
    assert payload["aud"] == "123456789012"
    assert payload["enphaseUser"] == "installer"
    assert payload["iss"] == "Entrez"
    assert payload["exp"] - payload["iat"] == 3600


def test_legacy_firmware_is_plain_http_with_digest_on_inverters() -> None:
    with SimulatedGateway(FIXTURES / "5.0.62", latency=INSTANT) as gateway:
        assert gateway.url.startswith("http://")
        anonymous = requests.get(gateway.url + "/api/v1/production/inverters", timeout=TIMEOUT)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Digest ")
        wrong = HTTPDigestAuth("envoy", "000000")
        assert (
            requests.get(
                gateway.url + "/api/v1/production/inverters", auth=wrong, timeout=TIMEOUT
            ).status_code
            == 401
        )
        right = HTTPDigestAuth("envoy", gateway.serial[-6:])
        with requests.Session() as session:
            session.auth = right
            for _ in range(3):  # the client reuses the nonce with a growing nc
                response = session.get(
                    gateway.url + "/api/v1/production/inverters", timeout=TIMEOUT
                )
                assert response.status_code == 200
        assert requests.get(gateway.url + "/production.json", timeout=TIMEOUT).status_code == 200


def test_set_info_changes_the_firmware_seen_on_info(gateway: SimulatedGateway) -> None:
    gateway.set_info(info_xml(gateway.serial, "D8.3.9999", time_s=0))
    assert "<software>D8.3.9999</software>" in get(gateway, "/info").text
    assert gateway.firmware == "D8.3.9999"


def test_set_info_to_legacy_firmware_switches_to_plain_http_on_the_same_port(
    gateway: SimulatedGateway,
) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    gateway.set_info(info_xml(gateway.serial, "R5.0.62", time_s=0, web_tokens=False))
    assert gateway.url == f"http://127.0.0.1:{port}"
    assert requests.get(gateway.url + "/production.json", timeout=TIMEOUT).status_code == 200


def test_a_given_serial_replaces_the_fixtures_serial(cloud: SimulatedCloud) -> None:
    with SimulatedGateway(
        FIXTURES / "8.3.5167_3rd-pv", serial="555555555555", latency=INSTANT
    ) as gateway:
        assert "<sn>555555555555</sn>" in get(gateway, "/info").text
        assert gateway.serial == "555555555555"


def test_the_certificate_served_is_the_one_exposed_for_pinning(gateway: SimulatedGateway) -> None:
    host, port = gateway.url.removeprefix("https://").rsplit(":", 1)
    served = ssl.get_server_certificate((host, int(port)), timeout=TIMEOUT)
    assert ssl.PEM_cert_to_DER_cert(served) == gateway.certificate_der
    before = hashlib.sha256(gateway.certificate_der).hexdigest()
    gateway.rotate_certificate()
    served = ssl.get_server_certificate((host, int(port)), timeout=TIMEOUT)
    assert hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest() != before


def test_a_stopped_gateway_can_start_again_on_the_same_port(gateway: SimulatedGateway) -> None:
    url = gateway.url
    gateway.stop()
    with pytest.raises(requests.ConnectionError):
        get(gateway, "/info")
    gateway.start()
    assert gateway.url == url
    assert get(gateway, "/info").status_code == 200


def test_served_readings_record_what_the_gateway_answered(
    gateway: SimulatedGateway, cloud: SimulatedCloud
) -> None:
    token = cloud.issue_token(gateway.serial)
    get(gateway, "/production.json?details=1", token)
    get(gateway, "/info")
    [reading] = gateway.served
    assert reading.endpoint == "/production.json"
    assert reading.complete
    assert reading.values["production.total.wNow"] == pytest.approx(5305.189)
    assert reading.values["net-consumption.L1.wNow"] == pytest.approx(-2932.704)


def test_set_fixture_swaps_the_bodies_and_keeps_the_serial(
    gateway: SimulatedGateway, cloud: SimulatedCloud
) -> None:
    token = cloud.issue_token(gateway.serial)
    gateway.set_fixture(FIXTURES / "7.6.175_with_cts_3phase")
    assert gateway.firmware == "D7.6.175"
    assert (
        get(gateway, "/production.json", token).content
        == (FIXTURES / "7.6.175_with_cts_3phase" / "production.json").read_bytes()
    )


def test_request_counts_and_concurrency_are_recorded(
    gateway: SimulatedGateway, cloud: SimulatedCloud
) -> None:
    token = cloud.issue_token(gateway.serial)
    for _ in range(3):
        get(gateway, "/production.json", token)
    get(gateway, "/info")
    assert gateway.request_counts() == {"/production.json": 3, "/info": 1}
    assert gateway.max_in_flight == 1
