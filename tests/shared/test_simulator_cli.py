"""``python -m supervisor simulate`` as a real subprocess: it serves, then stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "pyenphase"
TIMEOUT = 10
START_TIMEOUT_S = 60.0

pytestmark = pytest.mark.slow


class Simulator:
    """One ``simulate`` child and the ``key: value`` lines it printed on start."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "simulate", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: dict[str, str] = {}

    def read_banner(self) -> dict[str, str]:
        # Reading blocks: a thread reads, the test waits on it with a bound.
        done = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                key, _, value = line.strip().partition(": ")
                self.lines[key] = value
                if key == "serial":
                    break
            done.set()

        threading.Thread(target=read, daemon=True).start()
        assert done.wait(START_TIMEOUT_S), "simulate printed no banner"
        return self.lines

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode


@pytest.fixture
def start() -> Iterator[type[Simulator]]:
    started: list[Simulator] = []

    class Tracked(Simulator):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for simulator in started:
        simulator.stop()
        for stream in (simulator.process.stdout, simulator.process.stderr):
            if stream is not None:
                stream.close()


def test_simulate_serves_info_and_the_printed_token_then_stops_on_sigterm(
    start: type[Simulator],
) -> None:
    simulator = start("--listen", "127.0.0.1:0", "--phases", "3", "--consumption-cts")
    banner = simulator.read_banner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        info = requests.get(banner["gateway_url"] + "/info", verify=False, timeout=TIMEOUT)
        assert info.status_code == 200
        headers = {"Authorization": f"Bearer {banner['token']}"}
        check = requests.get(
            banner["gateway_url"] + "/auth/check_jwt",
            headers=headers,
            verify=False,
            timeout=TIMEOUT,
        )
        assert check.status_code == 200
    form = {"user[email]": "owner@example.com", "user[password]": "secret"}
    login = requests.post(
        banner["cloud_url"] + "/login/login.json",
        data=form,
        verify=banner["ca_file"],
        timeout=TIMEOUT,
    )
    assert "session_id" in login.json()
    assert simulator.stop() == 0


def test_simulate_serves_a_fixture_with_faults_split_between_gateway_and_cloud(
    start: type[Simulator],
) -> None:
    simulator = start(
        "--fixture",
        str(FIXTURES / "5.0.62"),
        "--faults",
        "/production.json=status:503:times=1,/login/login.json=refuse_logins",
    )
    banner = simulator.read_banner()
    assert banner["gateway_url"].startswith("http://")
    url = banner["gateway_url"] + "/production.json"
    assert requests.get(url, timeout=TIMEOUT).status_code == 503
    assert (
        requests.get(url, timeout=TIMEOUT).content
        == (FIXTURES / "5.0.62" / "production.json").read_bytes()
    )
    login = requests.post(
        banner["cloud_url"] + "/login/login.json",
        data={},
        verify=banner["ca_file"],
        timeout=TIMEOUT,
    )
    assert login.status_code == 429


def test_simulate_refuses_a_bad_fault_spec_with_a_one_line_reason(start: type[Simulator]) -> None:
    simulator = start("--faults", "/info=explode")
    assert simulator.process.wait(timeout=START_TIMEOUT_S) == 2
    assert simulator.process.stderr is not None
    assert "unknown fault kind 'explode'" in simulator.process.stderr.read()


def test_simulate_refuses_a_non_loopback_address(start: type[Simulator]) -> None:
    simulator = start("--listen", "0.0.0.0:0")
    assert simulator.process.wait(timeout=START_TIMEOUT_S) == 2


def test_simulate_takes_a_latency_and_refuses_a_bad_one_with_its_reason(
    start: type[Simulator],
) -> None:
    simulator = start("--fixture", str(FIXTURES / "5.0.62"), "--latency", "instant")
    banner = simulator.read_banner()
    url = banner["gateway_url"] + "/production.json"
    assert requests.get(url, timeout=TIMEOUT).status_code == 200
    assert simulator.stop() == 0
    refused = start("--latency", "slow")
    assert refused.process.wait(timeout=START_TIMEOUT_S) == 2
    assert refused.process.stderr is not None
    assert "latency must be real, instant or a factor" in refused.process.stderr.read()
