"""The simulated gateway answers as slowly as a real one, slow JSON endpoints one at a time.

Real gateways, real HTTPS requests. Timing is only ever bounded from below (an answer
takes at least its time minus the jitter), or checked as an order of events.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

from shared.simulator import INSTANT, REAL, SimulatedGateway
from shared.simulator.fixture import load_fixture
from shared.simulator.timing import (
    DEFAULT_S,
    JITTER,
    SLOW,
    Timing,
    default_s,
    parse_latency,
    timing_key,
)

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "pyenphase"
TIMED = FIXTURES / "8.3.5169_with_generator"  # its capture logs hold duration_seconds
SCALE = 0.2  # a fifth of real: the queueing shows in about two seconds
TIMEOUT = 60


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


def fetch(gateway: SimulatedGateway, path: str, timeout: float = TIMEOUT) -> requests.Response:
    headers = {"Authorization": f"Bearer {gateway.issue_token()}"}
    return requests.get(gateway.url + path, headers=headers, verify=False, timeout=timeout)


def at_least(seconds: float) -> float:
    """The least time an answer of nominal ``seconds`` can take."""
    return seconds * (1 - JITTER)


def test_the_capture_logs_durations_are_loaded_with_the_bodies() -> None:
    served = load_fixture(TIMED)
    assert served["/production.json"].duration_s == 5.041
    assert served["/production.json?details=1"].duration_s == 5.413
    assert served["/api/v1/production"].duration_s == 0.366
    assert served["/ivp/meters/readings"].duration_s is None  # no capture log


def test_details_served_from_the_plain_body_do_not_borrow_its_time(tmp_path: Path) -> None:
    for name in ("info.xml", "production.json", "production.capture_log.json"):
        (tmp_path / name).write_bytes((TIMED / name).read_bytes())
    served = load_fixture(tmp_path)
    assert served["/production.json"].duration_s == 5.041
    assert served["/production.json?details=1"].body == served["/production.json"].body
    assert served["/production.json?details=1"].duration_s is None  # the table's 5.41 s


def test_a_recorded_duration_wins_over_the_table_within_the_jitter() -> None:
    timing = Timing(REAL, seed=3)
    for _ in range(50):
        seconds = timing.seconds("/production.json", recorded=0.679)
        assert at_least(0.679) <= seconds <= 0.679 * (1 + JITTER)
        table = timing.seconds("/production.json")
        assert at_least(DEFAULT_S["/production.json"]) <= table
    assert Timing(0.5).seconds("/info", recorded=1.0) <= 0.5 * (1 + JITTER)


def test_the_jitter_is_seeded() -> None:
    first, second = Timing(REAL, seed=7), Timing(REAL, seed=7)
    assert [first.seconds("/home") for _ in range(5)] == [second.seconds("/home") for _ in range(5)]


def test_endpoints_outside_the_table_are_timed_like_the_fast_ones() -> None:
    assert default_s("/ivp/ensemble/inventory") == pytest.approx(0.26)
    assert default_s("/auth/check_jwt") < 1
    assert {"/production.json", "/production", "/inventory.json", "/home"} <= SLOW
    assert not any(key.startswith(("/ivp/", "/api/v1/", "/info")) for key in SLOW)


def test_the_query_that_costs_time_is_part_of_the_key() -> None:
    assert timing_key("/production.json", {"details": ["1"]}) == "/production.json?details=1"
    assert timing_key("/inventory.json", {"deleted": ["1"]}) == "/inventory.json?deleted=1"
    assert timing_key("/production.json", {}) == "/production.json"


@pytest.mark.parametrize(
    ("text", "scale"), [("real", REAL), ("instant", INSTANT), ("0.1", 0.1), (" REAL ", REAL)]
)
def test_latency_is_parsed_from_its_text_form(text: str, scale: float) -> None:
    assert parse_latency(text) == scale


@pytest.mark.parametrize("text", ["slow", "-1", "inf", ""])
def test_a_bad_latency_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_latency(text)


def test_a_slow_endpoint_takes_its_recorded_time() -> None:
    with SimulatedGateway(TIMED, latency=SCALE) as gateway:
        started = time.monotonic()
        response = fetch(gateway, "/production.json?details=1")
        took = time.monotonic() - started
    assert response.status_code == 200
    assert took >= at_least(5.413 * SCALE)


def test_a_generated_gateway_takes_the_tables_time() -> None:
    with SimulatedGateway(seed=1, latency=SCALE) as gateway:
        started = time.monotonic()
        assert fetch(gateway, "/production.json?details=1").status_code == 200
        took = time.monotonic() - started
    assert took >= at_least(DEFAULT_S["/production.json?details=1"] * SCALE)


def test_two_slow_requests_queue_behind_each_other() -> None:
    finished: dict[str, float] = {}
    with SimulatedGateway(TIMED, latency=SCALE) as gateway:

        def get(path: str) -> None:
            assert fetch(gateway, path).status_code == 200
            finished[path] = time.monotonic()

        threads = [
            threading.Thread(target=get, args=(path,))
            for path in ("/production.json", "/inventory.json")
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
    assert len(finished) == 2
    assert max(finished.values()) - started >= at_least((5.041 + 5.791) * SCALE)


def test_a_fast_endpoint_answers_while_a_slow_one_is_computed() -> None:
    order: list[str] = []
    with SimulatedGateway(TIMED, latency=SCALE) as gateway:

        def slow() -> None:
            assert fetch(gateway, "/production.json?details=1").status_code == 200
            order.append("production.json")

        thread = threading.Thread(target=slow)
        thread.start()
        while gateway.request_counts().get("/production.json", 0) == 0:
            time.sleep(0.01)  # the slow request is in the gateway's hands
        for path in ("/ivp/meters/readings", "/api/v1/production", "/info"):
            assert fetch(gateway, path).status_code == 200
            order.append(path)
        thread.join(TIMEOUT)
    assert order[-1] == "production.json", order
    assert gateway.max_in_flight == 2


def test_an_instant_gateway_answers_before_a_real_one_that_was_asked_first() -> None:
    order: list[str] = []
    with (
        SimulatedGateway(TIMED, latency=REAL) as real,
        SimulatedGateway(TIMED, latency=INSTANT) as instant,
    ):

        def ask_real() -> None:
            assert fetch(real, "/production.json").status_code == 200
            order.append("real")

        thread = threading.Thread(target=ask_real)
        thread.start()
        while real.request_counts().get("/production.json", 0) == 0:
            time.sleep(0.01)
        for _ in range(3):  # two slow ones among them: instant never queues either
            assert fetch(instant, "/production.json").status_code == 200
            assert fetch(instant, "/inventory.json").status_code == 200
        order.append("instant")
        thread.join(TIMEOUT)
    assert order == ["instant", "real"]


def test_stopping_releases_requests_waiting_for_the_backend() -> None:
    gateway = SimulatedGateway(TIMED, latency=20.0)  # 100 s per answer, 300 s of queue
    gateway.start()
    outcomes: list[str] = []

    def get() -> None:
        try:
            fetch(gateway, "/production.json", timeout=600)
            outcomes.append("answered")
        except requests.RequestException:
            outcomes.append("dropped")

    threads = [threading.Thread(target=get) for _ in range(3)]
    for thread in threads:
        thread.start()
    while gateway.request_counts().get("/production.json", 0) < 3:
        time.sleep(0.01)
    gateway.stop()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 3


def test_the_answer_range_is_the_recorded_or_table_time_and_the_jitter() -> None:
    with (
        SimulatedGateway(TIMED, latency=SCALE) as timed,
        SimulatedGateway(seed=1, latency=REAL) as generated,
        SimulatedGateway(seed=1, latency=INSTANT) as instant,
    ):
        least, most = timed.answer_range_s("/production.json")
        assert (least, most) == pytest.approx(
            (5.041 * SCALE * (1 - JITTER), 5.041 * SCALE * (1 + JITTER))
        )
        assert generated.answer_range_s("/home")[1] == pytest.approx(9.3 * (1 + JITTER))
        assert instant.answer_range_s("/production.json?details=1") == (0, 0)
