"""``python -m supervisor simulate``: one simulated gateway and the cloud, until SIGINT/SIGTERM.

Prints one ``key: value`` line each for the gateway URL, the cloud URL, the cloud's CA
file and a ready-made token the gateway accepts (the simulator's own, not a secret),
then serves until told to stop. Faults given with ``--faults`` on ``/login/login.json``
or ``/tokens`` go to the cloud, every other path to the gateway. The gateway answers as
slowly as a real one unless ``--latency instant`` (or a factor: 0.1 is ten times faster).
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

CLOUD_PATHS = frozenset({"/login/login.json", "/tokens"})


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _faults(text: str) -> Any:
    from shared.simulator.faults import FaultPlan

    try:
        return FaultPlan.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _latency(text: str) -> float:
    from shared.simulator.timing import latency_argument  # the CLI starts without the simulator

    return latency_argument(text)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "simulate",
        help="run a simulated gateway and Enphase cloud on loopback",
        description="Run one simulated IQ Gateway and the two cloud endpoints until "
        "SIGINT/SIGTERM. The cloud account is owner@example.com / secret.",
    )
    parser.add_argument(
        "--listen",
        type=_address,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="gateway address (default 127.0.0.1:0)",
    )
    parser.add_argument(
        "--cloud-listen",
        type=_address,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="cloud address (default 127.0.0.1:0)",
    )
    parser.add_argument(
        "--fixture",
        type=Path,
        metavar="DIR",
        help="serve a captured fixture folder instead of generated data",
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        metavar="SPEC",
        help="e.g. /production.json=latency:3,/tokens=status:429:times=2",
    )
    parser.add_argument(
        "--latency",
        type=_latency,
        default="real",
        metavar="real|instant|FACTOR",
        help="answer times: a real gateway's (default, from the fixture's capture logs "
        "or a per-endpoint table), instant, or a factor of real such as 0.1",
    )
    parser.add_argument("--phases", type=int, choices=(1, 2, 3), default=1)
    parser.add_argument(
        "--consumption-cts",
        action="store_true",
        help="generated data: a net-consumption CT is installed",
    )
    parser.add_argument("--inverters", type=int, default=12)
    parser.add_argument("--battery", action="store_true", help="generated data: one AC battery")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="keep the cloud CA here (default: a temp dir)"
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow listening on a non-loopback address"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from shared.simulator import FaultPlan, SimulatedCloud, SimulatedGateway

    for host, _ in (args.listen, args.cloud_listen):
        if not args.allow_remote and not _is_loopback(host):
            print(
                f"simulate: {host} is not a loopback address (add --allow-remote)", file=sys.stderr
            )
            return 2
    if args.fixture is not None and not (args.fixture / "info.xml").is_file():
        print(f"simulate: {args.fixture}: not a fixture folder (no info.xml)", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cloud = SimulatedCloud(
        host=args.cloud_listen[0], port=args.cloud_listen[1], state_dir=args.state_dir
    )
    gateway = SimulatedGateway(
        args.fixture,
        cloud=cloud,
        phases=args.phases,
        consumption_cts=args.consumption_cts,
        inverters=args.inverters,
        battery=args.battery,
        seed=args.seed,
        latency=args.latency,
        host=args.listen[0],
        port=args.listen[1],
    )
    plan: FaultPlan = args.faults or FaultPlan()
    for path, fault in plan.snapshot().items():
        (cloud.faults if path in CLOUD_PATHS else gateway.faults).set(path, fault)
    with cloud, gateway:
        print(f"gateway_url: {gateway.url}")
        print(f"cloud_url: {cloud.url}")
        print(f"ca_file: {cloud.ca_file}")
        print(f"token: {gateway.issue_token()}")
        print(f"serial: {gateway.serial} firmware: {gateway.firmware}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0
