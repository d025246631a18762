"""``python -m supervisor parse`` run for real, as a subprocess, over every gateway capture.

About 170 runs of the command: the sweeps over every capture carry the ``slow`` marker
(they still run by default and in CI). The expected numbers are read straight from each
capture's JSON or XML here, not through the parsers, so a parser or mapping mistake shows
up as a wrong number.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fixtures import (
    INFO,
    INVERTERS,
    METERS_READINGS,
    PRODUCTION,
    SUMMARY,
    body_format,
    capture_id,
    captures,
)
from tests.shared.lp_reader import parse as read_lp

REPO = Path(__file__).resolve().parents[2]
ENDPOINT_ARG = {
    PRODUCTION: "production",
    INVERTERS: "inverters",
    METERS_READINGS: "meters-readings",
    SUMMARY: "summary",
    INFO: "info",
}
Key = tuple[str, ...]


def parse_command(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "parse", *args],
        cwd=REPO, input=stdin, capture_output=True, timeout=60, check=False,
    )  # fmt: skip


@cache
def run_all(endpoint: str, fmt: str) -> dict[Path, subprocess.CompletedProcess[bytes]]:
    """The command over every capture of one endpoint, a few at a time (it is I/O bound)."""
    paths = captures(endpoint)
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = pool.map(
            lambda p: parse_command(str(p), "--endpoint", ENDPOINT_ARG[endpoint], "--format", fmt),
            paths,
        )
        return dict(zip(paths, done, strict=True))


def json_points(stdout: bytes) -> dict[Key, dict[str, Any]]:
    """Points by (measurement, measurement_type or serial, line): {"fields", "time", "tags"}."""
    out = {}
    for line in stdout.decode().splitlines():
        point = orjson.loads(line)
        tags = point["tags"]
        key = (point["measurement"], tags.get("measurement_type", tags.get("serial")),
               tags.get("line", ""))  # fmt: skip
        assert key not in out, f"two points for {key}"
        out[key] = point
    return out


def assert_points(got: dict[Key, dict[str, Any]], expected: dict[Key, dict[str, float]]) -> None:
    assert set(got) == set(expected)
    for key, fields in expected.items():
        assert got[key]["fields"] == pytest.approx(fields, rel=0, abs=0), key
        assert all(type(v) is float for v in got[key]["fields"].values())


def ids(paths: Iterable[Path]) -> list[str]:
    return [capture_id(p) for p in paths]


def must_fail(path: Path) -> bool:
    return body_format(path) != "json" or b'"error"' in path.read_bytes()[:200]


# --- /production.json -----------------------------------------------------------------

EIM = {"p_w": "wNow", "q_var": "reactPwr", "s_va": "apprntPwr", "i_a": "rmsCurrent",
       "v_v": "rmsVoltage", "pf": "pwrFactor"}  # fmt: skip
KNOWN_TYPES = {"production", "total-consumption", "net-consumption"}


def expected_production(doc: dict[str, Any]) -> dict[Key, dict[str, float]]:
    expected: dict[Key, dict[str, float]] = {}
    for section in ("production", "consumption"):
        for entry in doc.get(section, []):
            if entry["type"] == "inverters":
                expected["power", "inverters", "total"] = {"p_w": entry["wNow"]}
                expected["energy", "inverters", "total"] = {"wh_lifetime": entry["whLifetime"]}
            if entry["type"] != "eim" or entry["activeCount"] == 0:
                continue
            mt = entry.get("measurementType", "production" if section == "production" else None)
            if mt not in KNOWN_TYPES:
                continue
            phases = [
                p
                for p in entry.get("lines", [])
                if any(p[k] for k in (*EIM.values(), "whLifetime"))
            ]
            for line, values in [("total", entry), *zip(("L1", "L2", "L3"), phases, strict=False)]:
                expected["power", mt, line] = {f: values[k] for f, k in EIM.items()}
                expected["energy", mt, line] = {"wh_lifetime": values["whLifetime"]}
    return expected


@pytest.mark.slow
@pytest.mark.parametrize("path", captures(PRODUCTION), ids=ids(captures(PRODUCTION)))
def test_production_captures_print_the_numbers_the_gateway_sent(path: Path) -> None:
    result = run_all(PRODUCTION, "json")[path]
    if must_fail(path):
        return  # see test_malformed_bodies_exit_1_with_one_line_naming_the_file
    assert result.returncode == 0, result.stderr
    doc = orjson.loads(path.read_bytes())
    got = json_points(result.stdout)
    expected = expected_production(doc)
    if "8.3.5433" in path.parent.name:  # total-consumption is corrected: checked below
        got = {k: v for k, v in got.items() if k[1] != "total-consumption"}
        expected = {k: v for k, v in expected.items() if k[1] != "total-consumption"}
    assert_points(got, expected)
    sections = ("production", "consumption", "storage")
    stamps = [e.get("readingTime", 0) for s in sections for e in doc.get(s, [])]
    if max(stamps, default=0) > 0:  # the capture's own time, so the output is reproducible
        assert {p["time"] for p in got.values()} == {max(stamps) * 10**9}
    else:  # 4.2.33 sends no readingTime: stamped with the time of the run
        (stamp,) = {p["time"] for p in got.values()}
        assert stamp > 1_700_000_000 * 10**9
    assert {p["tags"]["envoy"] for p in got.values()} == {"envoy"}


QUIRK = [p for p in captures(PRODUCTION) if "8.3.5433" in p.parent.name]


@pytest.mark.parametrize("path", QUIRK, ids=ids(QUIRK))
def test_the_total_is_net_quirk_is_corrected_and_noted_on_stderr(path: Path) -> None:
    result = run_all(PRODUCTION, "json")[path]
    got = json_points(result.stdout)
    production = got["power", "production", "total"]["fields"]["p_w"]
    net = got["power", "net-consumption", "total"]["fields"]["p_w"]
    total = got["power", "total-consumption", "total"]["fields"]["p_w"]
    assert total == pytest.approx(production + net)
    (note,) = result.stderr.decode().splitlines()
    assert note.startswith(f"{path}: note: ") and "8.3.5433" in note


# three-phase, the 8.3.5433 quirk, no readingTime, no CTs, and an HTML page
SAMPLE_SETUPS = {
    "8.3.5167_3rd-pv",
    "8.3.5433_tot_is_net_cons",
    "4.2.33",
    "7.6.114_without_cts",
    "3.9.36",
}
SAMPLES = [p for p in captures(PRODUCTION) if p.parent.name in SAMPLE_SETUPS]


@pytest.mark.parametrize("path", SAMPLES, ids=ids(SAMPLES))
def test_line_protocol_output_says_the_same_as_the_json_output(path: Path) -> None:
    lp = parse_command(str(path), "--format", "lp")
    js = run_all(PRODUCTION, "json")[path]
    assert lp.returncode == js.returncode
    as_json = [orjson.loads(line) for line in js.stdout.decode().splitlines()]
    assert [(p.measurement, p.tags, p.fields, p.time) for p in read_lp(lp.stdout)] == [
        (p["measurement"], p["tags"], p["fields"], p["time"]) for p in as_json
    ]


# --- the other endpoints ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("path", captures(INVERTERS), ids=ids(captures(INVERTERS)))
def test_inverter_captures_print_each_solar_inverter_at_its_report_time(path: Path) -> None:
    result = run_all(INVERTERS, "json")[path]
    if must_fail(path):
        return
    assert result.returncode == 0, result.stderr
    solar = [e for e in orjson.loads(path.read_bytes()) if e.get("devType", 1) != 11]
    got = json_points(result.stdout)
    assert_points(got, {("inverter", e["serialNumber"], ""): {
        "p_w": e["lastReportWatts"], "p_max_w": e["maxReportWatts"]} for e in solar})  # fmt: skip
    for e in solar:
        assert got["inverter", e["serialNumber"], ""]["time"] == e["lastReportDate"] * 10**9


READING = {"p_w": "activePower", "q_var": "reactivePower", "s_va": "apparentPower",
           "i_a": "current", "v_v": "voltage", "pf": "pwrFactor",
           "freq_hz": "freq"}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("path", captures(METERS_READINGS), ids=ids(captures(METERS_READINGS)))
def test_meters_readings_print_power_and_the_import_export_counters(path: Path) -> None:
    result = run_all(METERS_READINGS, "json")[path]
    meters_file = path.with_name("meters.json")
    if must_fail(path) or must_fail(meters_file):
        assert result.returncode == 1
        return
    assert result.returncode == 0, result.stderr
    meters = {
        m["eid"]: m for m in orjson.loads(meters_file.read_bytes()) if m["state"] == "enabled"
    }
    expected: dict[Key, dict[str, float]] = {}
    for reading in orjson.loads(path.read_bytes()):
        meter = meters.get(reading["eid"])
        if meter is None:
            continue
        channels = reading["channels"][: meter["phaseCount"]]
        rows = [("total", reading), *zip(("L1", "L2", "L3"), channels, strict=False)]
        for line, values in rows:
            # an unused phase is all zeros but its frequency
            keys = (*(k for k in READING.values() if k != "freq"), "actEnergyDlvd", "actEnergyRcvd")
            if line != "total" and not any(values[k] for k in keys):
                continue
            mt = meter["measurementType"]
            expected["power", mt, line] = {f: values[k] for f, k in READING.items()}
            expected["energy", mt, line] = {"wh_delivered": values["actEnergyDlvd"],
                                            "wh_received": values["actEnergyRcvd"]}  # fmt: skip
    assert_points(json_points(result.stdout), expected)


@pytest.mark.slow
@pytest.mark.parametrize("path", captures(SUMMARY), ids=ids(captures(SUMMARY)))
def test_summary_captures_print_the_inverter_total(path: Path) -> None:
    result = run_all(SUMMARY, "json")[path]
    doc = orjson.loads(path.read_bytes())
    assert result.returncode == 0, result.stderr
    assert_points(json_points(result.stdout), {
        ("power", "inverters", "total"): {"p_w": doc["wattsNow"]},
        ("energy", "inverters", "total"): {"wh_lifetime": doc["wattHoursLifetime"]},
    })  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("path", captures(INFO), ids=ids(captures(INFO)))
def test_info_prints_who_the_gateway_is(path: Path) -> None:
    result = run_all(INFO, "json")[path]
    assert result.returncode == 0, result.stderr
    device = ET.fromstring(path.read_bytes()).find("device")
    assert device is not None
    info = orjson.loads(result.stdout)
    assert info["serial"] == device.findtext("sn")
    assert info["software"] == device.findtext("software")
    assert ".".join(map(str, info["version"])) in info["software"]
    assert set(info) == {"serial", "software", "version", "web_tokens", "metered"}


# --- failures and options -----------------------------------------------------------

BAD = [
    (endpoint, p)
    for endpoint in (PRODUCTION, INVERTERS)
    for p in captures(endpoint)
    if must_fail(p)
]


@pytest.mark.parametrize(("endpoint", "path"), BAD, ids=ids(p for _, p in BAD))
def test_malformed_bodies_exit_1_with_one_line_naming_the_file(endpoint: str, path: Path) -> None:
    result = run_all(endpoint, "json")[path]
    assert result.returncode == 1
    assert result.stdout == b""
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(f"{path}: {endpoint}: ")
    assert "Traceback" not in line


def test_stdin_and_the_envoy_name_are_taken_from_the_options() -> None:
    path = next(p for p in captures(PRODUCTION) if "8.3.5167" in p.parent.name)
    result = parse_command("-", "--envoy", "garage roof", stdin=path.read_bytes())
    assert result.returncode == 0, result.stderr
    points = read_lp(result.stdout)
    assert points and {p.tags["envoy"] for p in points} == {"garage roof"}


def test_meters_readings_without_a_meter_list_exit_1_saying_what_is_missing(tmp_path: Path) -> None:
    readings = tmp_path / "readings.json"
    readings.write_bytes(b"[]")
    result = parse_command(str(readings), "--endpoint", "meters-readings")
    assert result.returncode == 1
    (line,) = result.stderr.decode().splitlines()
    assert "--meters" in line and str(readings) in line


def test_an_unreadable_file_exits_1_with_one_line(tmp_path: Path) -> None:
    result = parse_command(str(tmp_path / "missing.json"))
    assert result.returncode == 1
    (line,) = result.stderr.decode().splitlines()
    assert "missing.json" in line and "cannot read" in line


def test_an_envoy_name_line_protocol_cannot_hold_exits_1_with_one_line() -> None:
    path = next(p for p in captures(SUMMARY))
    result = parse_command(str(path), "--endpoint", "summary", "--envoy", "a\nb")
    assert result.returncode == 1
    assert len(result.stderr.decode().splitlines()) == 1
