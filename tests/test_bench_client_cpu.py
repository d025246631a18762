"""The client CPU bench runs briefly: a line per path and client, ratios against
http.client, then a summary. Timings are never asserted here (SPEC: bench/ measures)."""

from __future__ import annotations

import json

import pytest

from bench.client_cpu import PATHS, main
from tests.fixtures import require_fixtures


def test_the_client_cpu_bench_measures_every_client_on_every_path_against_http_client(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_fixtures()
    assert main(["--rounds", "5", "--pause", "0"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    *rows, summary = lines
    clients = ["http.client", "urllib3", "requests", "gateway"]
    assert [(r["path"], r["client"]) for r in rows] == [(p, c) for p in PATHS for c in clients]
    assert all(r["requests"] == 5 and r["bytes"] > 0 and r["cpu_p50_ms"] > 0 for r in rows)
    assert {r["ratio"] for r in rows if r["client"] == "http.client"} == {1.0}
    assert summary["gateway_worst_ratio"] == max(
        r["ratio"] for r in rows if r["client"] == "gateway"
    )
