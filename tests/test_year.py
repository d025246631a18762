"""A simulated year (`bench.year`) runs in CI: every event's verdict is ok.

Run as the bench runs (a subprocess, `python -m bench.year`), so what CI proves is what
an operator reproduces. Takes about 13 minutes of one core for the whole year.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.year_scenario import faults
from tests.supervisor.conftest import REPO

EVENTS = [f.name for f in faults()] + [
    "DST spring forward (23 h day)",
    "DST fall back (25 h day)",
    "daily energy on the clock-back day",
    "daily energy on the clock-forward day",
    "no exception escaped",
]


@pytest.mark.slow
def test_a_year_of_faults_finds_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.year"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=2400,
        stdin=subprocess.DEVNULL,
    )
    lines = result.stdout.splitlines()
    sys.stdout.write(result.stdout)  # the verdicts and figures, in the CI log with -rA/-s
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    verdicts = {line[6:48].strip(): line[:4].strip() for line in lines[:-1]}
    assert verdicts == {event: "ok" for event in EVENTS}
    figures = json.loads(lines[-1])
    assert figures["days"] == 365.0
    assert figures["spool_dropped"] > 0  # the 3-day database outage really hit the cap
    assert figures["polls_failed"].get("bug", 0) == 0
