"""Fault plans: their text form, and every fault kind as a client on loopback sees it."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.exceptions import InsecureRequestWarning

from shared.simulator import INSTANT, Fault, FaultKind, FaultPlan, SimulatedCloud, SimulatedGateway

TIMEOUT = 10
EMAIL, PASSWORD = "owner@example.com", "secret"


@pytest.fixture(autouse=True)
def _quiet_tls_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


@pytest.fixture
def gateway() -> Iterator[SimulatedGateway]:
    with SimulatedGateway(phases=3, consumption_cts=True, latency=INSTANT) as running:
        yield running


@pytest.fixture
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud(accounts={EMAIL: PASSWORD}) as running:
        yield running


def get(gateway: SimulatedGateway, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", TIMEOUT)
    headers = {"Authorization": f"Bearer {gateway.issue_token()}"}
    return requests.get(gateway.url + path, headers=headers, verify=False, **kwargs)


def login(cloud: SimulatedCloud) -> requests.Response:
    form = {"user[email]": EMAIL, "user[password]": PASSWORD}
    return requests.post(
        cloud.url + "/login/login.json", data=form, verify=str(cloud.ca_file), timeout=TIMEOUT
    )


# --- the text form ----------------------------------------------------------------------


def test_the_documented_spec_parses_into_one_fault_per_path() -> None:
    plan = FaultPlan.parse(
        "/production.json=latency:3,/api/v1/production/inverters=status:503:times=2,/info=html"
    )
    assert plan.snapshot() == {
        "/production.json": Fault(FaultKind.LATENCY, seconds=3),
        "/api/v1/production/inverters": Fault(FaultKind.STATUS, status=503, times=2),
        "/info": Fault(FaultKind.HTML),
    }


def test_refuse_logins_defaults_to_429() -> None:
    assert FaultPlan.parse("/login/login.json=refuse_logins").get("/login/login.json") == Fault(
        FaultKind.REFUSE_LOGINS, status=429
    )


@pytest.mark.parametrize(
    "spec",
    [
        "production.json=html",
        "/info",
        "/info=explode",
        "/info=html:3",
        "/info=status:abc",
        "/info=status:99",
        "/info=latency:-1",
        "/info=reset:times=0",
        "/info=status:500:colour=red",
    ],
)
def test_a_bad_spec_is_refused_naming_the_entry(spec: str) -> None:
    with pytest.raises(ValueError, match="fault entry"):
        FaultPlan.parse(spec)


faults = st.builds(
    Fault,
    kind=st.sampled_from(FaultKind),
    seconds=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    status=st.integers(min_value=100, max_value=599),
    retry_after=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
    times=st.none() | st.integers(min_value=1, max_value=1000),
    for_s=st.none() | st.floats(min_value=0.001, max_value=1e6),
)


@settings(max_examples=200, deadline=None)
@given(faults)
def test_a_faults_spec_parses_back_to_the_same_fault(fault: Fault) -> None:
    parsed = Fault.parse(fault.spec())
    assert parsed.spec() == fault.spec()
    assert (parsed.kind, parsed.times, parsed.for_s) == (fault.kind, fault.times, fault.for_s)


def test_a_fault_with_times_is_used_up_then_the_path_is_healthy() -> None:
    plan = FaultPlan({"/info": Fault(FaultKind.HTML, times=2)})
    assert [plan.take("/info") is not None for _ in range(3)] == [True, True, False]


def test_a_wildcard_fault_applies_to_paths_without_their_own() -> None:
    plan = FaultPlan({"*": Fault(FaultKind.RESET), "/info": Fault(FaultKind.HTML)})
    assert plan.take("/production.json") == Fault(FaultKind.RESET)
    assert plan.take("/info") == Fault(FaultKind.HTML)


# --- every kind, observed over HTTPS ------------------------------------------------------


def test_latency_delays_the_answer_past_a_short_read_timeout(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/production.json", Fault(FaultKind.LATENCY, seconds=3, times=1))
    with pytest.raises(requests.ReadTimeout):
        get(gateway, "/production.json", timeout=(TIMEOUT, 0.5))
    assert get(gateway, "/production.json").status_code == 200


def test_latency_still_answers_a_patient_client(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/production.json", Fault(FaultKind.LATENCY, seconds=0.2))
    assert get(gateway, "/production.json").status_code == 200


def test_timeout_never_answers_until_the_fault_is_cleared(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/ivp/meters/readings", Fault(FaultKind.TIMEOUT))
    for _ in range(2):
        with pytest.raises(requests.ReadTimeout):
            get(gateway, "/ivp/meters/readings", timeout=(TIMEOUT, 0.5))
    gateway.faults.clear("/ivp/meters/readings")
    assert get(gateway, "/ivp/meters/readings").status_code == 200


def test_stopping_the_gateway_releases_a_client_waiting_on_a_timeout(
    gateway: SimulatedGateway,
) -> None:
    gateway.faults.set("/production.json", Fault(FaultKind.TIMEOUT, times=5))
    outcome: list[BaseException] = []

    def poll() -> None:
        try:
            get(gateway, "/production.json", timeout=(TIMEOUT, 60))
        except requests.RequestException as error:
            outcome.append(error)

    poller = threading.Thread(target=poll)
    poller.start()
    arrived = threading.Event()
    for _ in range(200):  # the handler took the fault: the request is hanging now
        fault = gateway.faults.get("/production.json")
        if fault is not None and fault.times == 4:
            break
        arrived.wait(0.05)
    gateway.stop()
    poller.join(timeout=30)
    assert not poller.is_alive()
    assert isinstance(outcome[0], requests.ConnectionError)


def test_reset_closes_the_connection_abruptly(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/api/v1/production/inverters", Fault(FaultKind.RESET, times=1))
    with pytest.raises(requests.ConnectionError):
        get(gateway, "/api/v1/production/inverters")
    assert get(gateway, "/api/v1/production/inverters").status_code == 200


def test_status_answers_the_code_and_retry_after(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/production.json", Fault(FaultKind.STATUS, status=503, retry_after=30))
    response = get(gateway, "/production.json")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"


def test_status_with_times_heals_after_that_many_requests(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/api/v1/production", Fault(FaultKind.STATUS, status=500, times=2))
    codes = [get(gateway, "/api/v1/production").status_code for _ in range(3)]
    assert codes == [500, 500, 200]


def test_html_answers_an_error_page_with_status_200(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/production.json", Fault(FaultKind.HTML))
    response = get(gateway, "/production.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html"
    assert response.text.startswith("<!DOCTYPE html>")


def test_truncate_sends_half_the_body_with_a_matching_length(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/ivp/meters", Fault(FaultKind.TRUNCATE, times=1))
    cut = get(gateway, "/ivp/meters")
    whole = get(gateway, "/ivp/meters")
    assert cut.status_code == 200
    assert whole.content.startswith(cut.content)
    assert len(cut.content) == len(whole.content) // 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)


def test_unauthorized_refuses_a_valid_token(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/auth/check_jwt", Fault(FaultKind.UNAUTHORIZED, times=1))
    assert get(gateway, "/auth/check_jwt").status_code == 401
    assert get(gateway, "/auth/check_jwt").status_code == 200


def test_a_spoiled_body_is_recorded_as_incomplete(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/production.json", Fault(FaultKind.TRUNCATE, times=1))
    get(gateway, "/production.json")
    get(gateway, "/production.json")
    assert [r.complete for r in gateway.served] == [False, True]
    assert gateway.served[1].values["production.total.whLifetime"] > 0


def test_refuse_logins_answers_429_with_retry_after_then_heals(cloud: SimulatedCloud) -> None:
    cloud.faults.set(
        "/login/login.json", Fault(FaultKind.REFUSE_LOGINS, status=429, retry_after=60, times=1)
    )
    refused = login(cloud)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert cloud.logins == 0
    assert "session_id" in login(cloud).json()
    assert cloud.logins == 1


def test_the_tokens_endpoint_can_be_throttled(cloud: SimulatedCloud) -> None:
    session_id = login(cloud).json()["session_id"]
    cloud.faults.set("/tokens", Fault(FaultKind.STATUS, status=429, retry_after=5, times=1))
    body = {"session_id": session_id, "serial_num": "123456789012", "username": EMAIL}
    post = lambda: requests.post(  # noqa: E731
        cloud.url + "/tokens", json=body, verify=str(cloud.ca_file), timeout=TIMEOUT
    )
    assert post().status_code == 429
    assert cloud.token_is_valid(post().text, "123456789012")
    assert cloud.tokens_issued == 1


def test_a_fault_with_for_heals_when_its_time_is_up() -> None:
    now = [100.0]
    plan = FaultPlan.parse("/login/login.json=refuse_logins:429:for=60")
    plan = FaultPlan(plan.snapshot(), clock=lambda: now[0])
    assert plan.take("/login/login.json") == Fault(FaultKind.REFUSE_LOGINS, status=429, for_s=60)
    now[0] += 59
    assert plan.take("/login/login.json") is not None
    now[0] += 2
    assert plan.take("/login/login.json") is None
    assert plan.snapshot() == {}


# --- nightly windows --------------------------------------------------------------------


def test_nightly_defaults_to_the_23_00_outage_of_three_minutes() -> None:
    fault = FaultPlan.parse("*=nightly").get("*")
    assert fault == Fault(FaultKind.NIGHTLY, seconds=180, at=23.0)
    device_data = Fault.parse("nightly:85:at=23.0167")
    assert (device_data.seconds, device_data.at) == (85, 23.0167)
    assert Fault.parse(device_data.spec()) == device_data


def test_a_nightly_fault_acts_only_inside_its_daily_window() -> None:
    eleven_pm = time.mktime((2026, 7, 1, 23, 0, 0, 0, 0, -1))
    now = [eleven_pm - 1]
    plan = FaultPlan({"*": Fault(FaultKind.NIGHTLY, seconds=180)}, wall_clock=lambda: now[0])
    assert plan.take("/production.json") is None
    now[0] = eleven_pm + 60
    taken = plan.take("/production.json")
    assert taken is not None and taken.window_left_s(now[0]) == pytest.approx(120)
    now[0] = eleven_pm + 180
    assert plan.take("/info") is None
    now[0] += 86400 - 180 + 1  # the next night
    assert plan.take("/info") is not None
    assert plan.snapshot() == {"*": Fault(FaultKind.NIGHTLY, seconds=180)}  # never used up


def test_a_nightly_window_may_run_past_midnight() -> None:
    fault = Fault(FaultKind.NIGHTLY, seconds=600, at=23.95)  # 23:57 - 00:07
    after_midnight = time.mktime((2026, 7, 2, 0, 5, 0, 0, 0, -1))
    assert fault.window_left_s(after_midnight) == pytest.approx(120)


def test_inside_the_window_a_request_is_held_then_answered(gateway: SimulatedGateway) -> None:
    gateway.faults.set("/ivp/meters/readings", Fault(FaultKind.NIGHTLY, seconds=2, at=0))
    gateway.faults.wall_clock = lambda: time.mktime((2026, 7, 1, 0, 0, 0, 0, 0, -1))
    with pytest.raises(requests.ReadTimeout):  # the outage, as an impatient client sees it
        get(gateway, "/ivp/meters/readings", timeout=(TIMEOUT, 0.5))
    assert get(gateway, "/ivp/meters/readings").status_code == 200  # held ~2 s, answered
    gateway.faults.wall_clock = lambda: time.mktime((2026, 7, 1, 12, 0, 0, 0, 0, -1))
    assert get(gateway, "/ivp/meters/readings").status_code == 200
