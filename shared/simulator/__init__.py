"""A faithful stand-in for IQ Gateways and the Enphase cloud, on loopback.

Used by tests, the demo and ``python -m supervisor simulate``. `SimulatedGateway` serves
a fixture folder or generated data with real auth (tokens over HTTPS for firmware >= 7,
digest over HTTP before), `SimulatedCloud` serves Enlighten's login and Entrez's tokens,
and a `FaultPlan` on either makes them misbehave per endpoint. Gateways answer as slowly
as real ones (`shared.simulator.timing`) unless given ``latency=INSTANT``.
"""

from shared.simulator.cloud import SimulatedCloud, TokenSigner
from shared.simulator.faults import Fault, FaultKind, FaultPlan
from shared.simulator.fixture import GatewayInfo, info_xml
from shared.simulator.gateway import SimulatedGateway
from shared.simulator.generator import SiteGenerator
from shared.simulator.served import ServedReading
from shared.simulator.timing import INSTANT, REAL

__all__ = [
    "INSTANT",
    "REAL",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "GatewayInfo",
    "ServedReading",
    "SimulatedCloud",
    "SimulatedGateway",
    "SiteGenerator",
    "TokenSigner",
    "info_xml",
]
