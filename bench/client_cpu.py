"""``python -m bench.client_cpu``: CPU per request of the gateway client against bare clients.

One simulated D8.3.5169 gateway (``--fixture``) runs in a process of its own, answering
instantly over HTTPS (keep-alive), so the figures are CPU spent, not time waited, and the
simulator's own CPU is not ours. In this process, on one keep-alive connection each:

* ``http.client``: a bare `http.client.HTTPSConnection`, the baseline (ratio 1.0);
* ``urllib3``: one `urllib3.HTTPSConnectionPool`;
* ``requests``: one `requests.Session`;
* ``gateway``: `shared.gateway.GatewayClient` itself, its `fetch` with a Bearer token and
  the slow lane's lock file, as the pollers run it (the parser is the identity: parsing
  is `bench.parse`'s business).

Each GETs ``--path`` (default production.json?details=1 and /ivp/meters/readings) with
a token; the clients take turns, one request each per round, ``--pause`` seconds apart
(a poller's requests are paced, so caches are as cold as in production). A request's CPU
is `time.thread_time` around it (the simulator's threads are in another process anyway).
Prints one JSON line per path and client: p50 and p90 in ms and ``ratio`` = p50 over the
``http.client`` p50 of the same path in the same run; then a summary line with the
gateway client's worst ratio against ``TARGET``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import orjson
import requests
import urllib3

from shared.config import GatewayConfig
from shared.gateway import GatewayClient
from shared.pinning import GATEWAY_TLS

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pyenphase"
FIXTURE = FIXTURES / "8.3.5169_with_generator"
PATHS = ("/production.json?details=1", "/ivp/meters/readings")
TARGET = 1.5  #: the gateway client's p50 within this many times a bare http.client request

Request = Callable[[str], bytes]


def serve(fixture: Path, conn: Connection) -> None:
    """Process body: one instant gateway serving ``fixture`` until the pipe closes."""
    from shared.simulator import INSTANT, SimulatedGateway

    with SimulatedGateway(fixture, latency=INSTANT) as gateway:
        conn.send((gateway.url, gateway.issue_token()))
        with contextlib.suppress(EOFError):
            conn.recv()


def bare_http_client(host: str, port: int, token: str) -> Request:
    connection = http.client.HTTPSConnection(host, port, context=GATEWAY_TLS, timeout=20)
    headers = {"Accept": "*/*", "Authorization": f"Bearer {token}"}

    def get(path: str) -> bytes:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status)
        return body

    return get


def urllib3_pool(host: str, port: int, token: str) -> Request:
    pool = urllib3.HTTPSConnectionPool(
        host, port, ssl_context=GATEWAY_TLS, cert_reqs="CERT_NONE", maxsize=1, timeout=20.0
    )
    headers = {"Accept": "*/*", "Authorization": f"Bearer {token}"}

    def get(path: str) -> bytes:
        response = pool.request("GET", path, headers=headers, redirect=False)
        assert response.status == 200, (path, response.status)
        return response.data

    return get


def requests_session(host: str, port: int, token: str) -> Request:
    session = requests.Session()
    session.verify = False
    session.trust_env = False
    headers = {"Accept": "*/*", "Authorization": f"Bearer {token}"}

    def get(path: str) -> bytes:
        response = session.get(f"https://{host}:{port}{path}", headers=headers, timeout=20)
        assert response.status_code == 200, (path, response.status_code)
        return response.content

    return get


def gateway_client(host: str, port: int, token: str, state: Path) -> Request:
    config = GatewayConfig(name="bench", host=f"{host}:{port}", scheme="https")
    client = GatewayClient(config, pin_store=None, request_lock=state / "slow.lock")
    client.set_token(token)

    def get(path: str) -> bytes:
        return client.fetch(path, lambda body: body)

    return get


def measure(
    clients: dict[str, Request], paths: tuple[str, ...], rounds: int, pause_s: float
) -> dict[tuple[str, str], list[float]]:
    """CPU ms of every request, by (path, client); the clients take turns each round."""
    cpu: dict[tuple[str, str], list[float]] = {(p, c): [] for p in paths for c in clients}
    for name, get in clients.items():  # connect and warm up outside the measurement
        for path in paths:
            assert get(path) == clients["http.client"](path), f"{name} got another {path}"
    for _ in range(rounds):
        for path in paths:
            for name, get in clients.items():
                time.sleep(pause_s)
                start = time.thread_time()
                get(path)
                cpu[path, name].append((time.thread_time() - start) * 1e3)
    return cpu


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[q - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_cpu", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200, help="requests per client and path")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between requests")
    parser.add_argument("--fixture", type=Path, default=FIXTURE, metavar="DIR")
    parser.add_argument("--path", action="append", help="a path to GET (repeatable)")
    args = parser.parse_args(argv)
    paths = tuple(args.path or PATHS)

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=serve, args=(args.fixture, theirs), daemon=True)
    process.start()
    theirs.close()
    if not ours.poll(60):
        raise SystemExit("bench.client_cpu: the simulated gateway did not start within 60 s")
    url, token = ours.recv()
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    try:
        with tempfile.TemporaryDirectory() as state, warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            clients = {
                "http.client": bare_http_client(host, int(port), token),
                "urllib3": urllib3_pool(host, int(port), token),
                "requests": requests_session(host, int(port), token),
                "gateway": gateway_client(host, int(port), token, Path(state)),
            }
            sizes = {path: len(clients["http.client"](path)) for path in paths}
            cpu = measure(clients, paths, args.rounds, args.pause)
    finally:
        ours.close()
        process.join(10)
    worst = 0.0
    for path in paths:
        baseline = statistics.median(cpu[path, "http.client"])
        for name in clients:
            p50 = statistics.median(cpu[path, name])
            ratio = p50 / baseline
            if name == "gateway":
                worst = max(worst, ratio)
            p90 = quantile(cpu[path, name], 9)
            line = {"path": path, "bytes": sizes[path], "client": name,
                    "requests": len(cpu[path, name]), "cpu_p50_ms": round(p50, 3),
                    "cpu_p90_ms": round(p90, 3), "ratio": round(ratio, 2)}  # fmt: skip
            print(orjson.dumps(line).decode(), flush=True)
    summary = {"fixture": args.fixture.name, "gateway_worst_ratio": round(worst, 2),
               "target": TARGET, "met": worst <= TARGET}  # fmt: skip
    print(orjson.dumps(summary).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
