"""What a gateway serves: captured fixture files, and the facts read from ``/info``.

Owns the mapping from endpoint paths to the file names of a fixture folder in
``../shared/fixtures/pyenphase/<firmware>/`` and reads those files once, at load.
Bodies are served byte for byte; a capture log (``<name>.capture_log.json``) that
recorded another status than 200 (e.g. ``3.9.36_bad_auth``: 401) sets the status, and
one that recorded ``duration_seconds`` how long the answer takes (`shared.simulator.timing`).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

# Endpoint path -> fixture file stem. ``?details=1`` prefers ``production_details``.
ENDPOINT_FILES: dict[str, str] = {
    "/info": "info.xml",
    "/production.json": "production.json",
    "/ivp/meters": "meters.json",
    "/ivp/meters/readings": "meters_readings.json",
    "/api/v1/production": "api_v1_production.json",
    "/api/v1/production/inverters": "inverters.json",
    "/inventory.json": "inventory.json",
    "/ivp/pdm/device_data": "device_data.json",
}
DETAILS_FILE = "production_details.json"


@dataclass(frozen=True, slots=True)
class Captured:
    """One fixture body, the status it was captured with and how long it took."""

    status: int
    body: bytes
    duration_s: float | None = None  #: the capture log's duration_seconds, if recorded

    @property
    def content_type(self) -> str:
        head = self.body.lstrip()[:5]
        if head.startswith(b"<?xml"):
            return "application/xml"
        return "text/html" if head.startswith(b"<") else "application/json"


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    """The facts a client reads from ``/info``."""

    serial: str
    firmware: str  #: as in ``device/software``, e.g. "D8.2.4264"
    web_tokens: bool  #: ``<web-tokens>true`` present

    @property
    def major(self) -> int:
        match = re.search(r"\d+", self.firmware)
        return int(match.group()) if match else 0

    @property
    def uses_tokens(self) -> bool:
        """HTTPS + Bearer tokens (firmware >= 7), rather than HTTP + digest."""
        return self.web_tokens or self.major >= 7

    @classmethod
    def from_xml(cls, body: bytes) -> GatewayInfo:
        root = ET.fromstring(body)
        serial = (root.findtext("device/sn") or "").strip()
        firmware = (root.findtext("device/software") or "").strip()
        if not serial or not firmware:
            raise ValueError("info.xml: device/sn and device/software are required")
        web_tokens = (root.findtext("web-tokens") or "").strip().lower() == "true"
        return cls(serial, firmware, web_tokens)


def info_xml(serial: str, firmware: str, *, time_s: int, web_tokens: bool = True) -> bytes:
    """A minimal ``/info`` body like firmware 8's, for generated gateways and set_info."""
    tokens = "\n  <web-tokens>true</web-tokens>" if web_tokens else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<envoy_info>\n'
        f"  <time>{time_s}</time>\n  <device>\n    <sn>{serial}</sn>\n"
        f"    <pn>800-00654-r08</pn>\n    <software>{firmware}</software>\n"
        "    <euaid>4c8675</euaid>\n    <seqnum>0</seqnum>\n    <apiver>1</apiver>\n"
        f"    <imeter>true</imeter>\n  </device>{tokens}\n"
        '  <package name="app">\n    <pn>500-00002-r01</pn>\n'
        f"    <version>{firmware.lstrip('RDM')}</version>\n    <build>5c3a00</build>\n"
        "  </package>\n</envoy_info>\n"
    ).encode()


def replace_serial(info_body: bytes, serial: str) -> bytes:
    """``info_body`` with ``device/sn`` set to ``serial`` (same bytes otherwise)."""
    return re.sub(rb"<sn>[^<]*</sn>", b"<sn>" + serial.encode() + b"</sn>", info_body, count=1)


def _captured(folder: Path, name: str) -> Captured | None:
    path = folder / name
    if not path.is_file():
        return None
    status, duration_s = 200, None
    log = folder / (name.rsplit(".", 1)[0] + ".capture_log.json")
    if log.is_file():
        try:
            facts = json.loads(log.read_bytes())
            status = int(facts.get("code") or 200)
            recorded = facts.get("duration_seconds")
            if isinstance(recorded, int | float) and recorded >= 0:
                duration_s = float(recorded)
        except (ValueError, AttributeError):
            pass  # an unreadable log says nothing about the status or the time
    return Captured(status, path.read_bytes(), duration_s)


def load_fixture(folder: Path) -> dict[str, Captured]:
    """Endpoint path -> captured body for every file the fixture folder has.

    ``/production.json?details=1`` is stored under the key ``/production.json?details=1``.
    """
    if not (folder / "info.xml").is_file():
        raise FileNotFoundError(f"{folder}: not a fixture folder (no info.xml)")
    served: dict[str, Captured] = {}
    for endpoint, name in ENDPOINT_FILES.items():
        captured = _captured(folder, name)
        if captured is not None:
            served[endpoint] = captured
    details = _captured(folder, DETAILS_FILE)
    if details is None and "/production.json" in served:
        # The plain body stands in; its time does not: details take longer to compute.
        details = replace(served["/production.json"], duration_s=None)
    if details is not None:
        served["/production.json?details=1"] = details
    return served
