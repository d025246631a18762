"""``python -m bench.scale``: what N gateways cost the supervisor, for several N.

For each N it starts N simulated gateways in processes of their own (``--per-simulator``
per process, default 1: a simulator serving several gateways queues their simultaneous
requests behind its GIL, which real gateways do not; their CPU is counted apart from
the supervisor's). All share one account: every process's simulated cloud signs tokens
with one secret. The gateways answer as slowly as real ones (``--latency``, default
real: `shared.simulator.timing`); ``--fixture DIR`` makes every one serve that capture
(each with its own serial) instead of the demo's generated shapes; ``--fixture all``
gives gateway i setup i of the captures (``--envoys all``: one of each). It writes a
site.yml (power every ``--power-s``, 1 s; inverters every ``--inverters-s``, 60 s;
production.json at its default 60 s; SQLite and Prometheus sinks) and runs the real
supervisor on it as ``python -m supervisor --config``. After every power feed has polled
once and a warm-up, it measures for ``--seconds``:

* missed ticks: per feed, ticks between the first and last good poll of the window
  minus good polls in it (skips and errors are listed by kind as well); and
  ``power_ticks``: good power polls in the window (each writes a reading) against the
  ticks that fell due in it, summed over the gateways; ``power_misses`` names each
  gateway (and its capture) that wrote fewer, and ``never_polled`` those whose power
  feed never had a good poll (a capture with nothing the logger can read);
* tick jitter of the power polls within the window (how late each poll started after
  it was due: its tick plus the gateway's phase, `supervisor.plan.stagger`), exactly:
  status.json keeps a cumulative per-feed histogram (1 ms buckets), and the difference
  of the two snapshots gives every poll of the window; p50/p99 pooled over all gateways,
  and the worst single gateway's p99 beside them (bucket upper bounds: "p99 <= X ms");
* poll duration from status.json (p50: median of the feeds' p50s; p99: the worst feed's
  p99; status keeps the last 1000 polls per feed, so short runs reach back to start-up);
* poll-to-commit latency: commit time minus when the poll was due, per sink, from
  status.json (`SinkStatus.commit_lag_*`, measured by each sink over its last 1000 batches:
  at small N that window too reaches back to start-up);
* the machine's own wake-up lateness over the same window, as a baseline: a probe
  process that does nothing but sleep to each 1/25 s boundary (``wake_probe_ms``, same
  1 ms buckets), and the CPU time stolen by the hypervisor (``cpu_steal_percent`` of one
  CPU, from /proc/stat). On a shared VM steal delays every wake-up, ours and the
  probe's alike; ``jitter_p99_vs_probe`` is what our pollers add beyond it;
* CPU seconds per gateway-hour of the supervisor's whole process tree (supervisor, fork
  server, resource tracker, workers: utime + stime from /proc/PID/stat), also by kind;
* unique memory (USS, `bench.supervise.uss_kib`) of the tree, of the pollers per gateway,
  and file descriptors of the tree.

One JSON line per N, then a summary line: each cost as ``a + b*N`` fitted over the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import yaml

from bench.parse import FIXTURES
from bench.supervise import child_map, read_status, uss_kib
from shared.simulator.timing import add_latency_option
from supervisor.demo import EMAIL, PASSWORD, free_port, gateway_shape

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Cadence(NamedTuple):
    """How often each gateway's feeds are polled (production.json: its default, 60 s)."""

    power_s: float = 1.0
    inverters_s: float = 60.0


# --- simulators -------------------------------------------------------------------------


class Served(NamedTuple):
    """What the simulated gateways serve, and how fast."""

    fixtures: tuple[Path, ...]  #: gateway i serves capture folder i (cycled); (): demo shapes
    latency: float  #: `shared.simulator.timing` scale: 1.0 real, 0.0 instant

    def fixture(self, index: int) -> Path | None:
        return self.fixtures[index % len(self.fixtures)] if self.fixtures else None

    def label(self, name: str) -> str:
        """``gw-003 (7.3.130_no_consumption)``: a gateway's name and what it serves."""
        fixture = self.fixture(int(name.removeprefix("gw-")) - 1)
        return f"{name} ({fixture.name if fixture else 'demo'})"


def make_gateway(index: int, served: Served, cloud: Any) -> Any:
    from shared.simulator import SimulatedGateway

    fixture = served.fixture(index)
    if fixture is None:
        shape = gateway_shape(index)
        return SimulatedGateway(
            cloud=cloud,
            seed=index + 1,
            latency=served.latency,
            **shape,  # type: ignore[arg-type]
        )
    return SimulatedGateway(
        fixture,
        cloud=cloud,
        serial=f"{900000000001 + index}",
        seed=index + 1,
        latency=served.latency,
    )


def host_group(first: int, count: int, secret: bytes, served: Served, conn: Connection) -> None:
    """Process body: gateways number first..first+count-1 and a cloud, until EOF.

    Every group's cloud signs with one secret, so the first group's cloud issues tokens
    that every gateway accepts: one account, one token worker, as on a real site.
    """
    from shared.simulator import SimulatedCloud

    with SimulatedCloud(accounts={EMAIL: PASSWORD}, token_secret=secret) as cloud:
        gateways = [make_gateway(i, served, cloud) for i in range(first, first + count)]
        for gateway in gateways:
            gateway.start()
        conn.send((cloud.url, str(cloud.ca_file), [(g.url, g.serial) for g in gateways]))
        with contextlib.suppress(EOFError):
            conn.recv()  # blocks until the bench is done with this group (or gone)
        for gateway in gateways:
            gateway.stop()


def start_simulators(
    envoys: int, per: int, served: Served
) -> tuple[list[Any], list[Connection], list[Any]]:
    ctx = multiprocessing.get_context("spawn")
    processes, pipes, groups = [], [], []
    secret = secrets.token_bytes(32)
    for first in range(0, envoys, per):
        ours, theirs = ctx.Pipe()
        process = ctx.Process(
            target=host_group,
            args=(first, min(per, envoys - first), secret, served, theirs),
            daemon=True,
        )
        process.start()
        theirs.close()
        processes.append(process)
        pipes.append(ours)
    for pipe in pipes:
        if not pipe.poll(120):
            raise SystemExit("bench: the simulated gateways did not start within 120 s")
        groups.append(pipe.recv())
    return processes, pipes, groups


# --- the machine's baseline -------------------------------------------------------------

PROBE_HZ = 25  #: the probe's wake-ups per second, evenly spaced like staggered polls


def wake_probe(seconds: float, conn: Connection) -> None:
    """Process body: sleep to each 1/PROBE_HZ s boundary for ``seconds``, then send how
    late (ms) each wake-up was."""
    step = 1 / PROBE_HZ
    due = (math.floor(time.time() / step) + 1) * step
    late = []
    for _ in range(round(seconds * PROBE_HZ)):
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        late.append((time.time() - due) * 1e3)
        due += step
    conn.send(late)


def start_probe(seconds: float) -> tuple[Any, Connection]:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=wake_probe, args=(seconds, theirs), daemon=True)
    process.start()
    theirs.close()
    return process, ours


def probe_result(process: Any, conn: Connection, timeout: float) -> dict[str, float | None]:
    late = conn.recv() if conn.poll(timeout) else []
    process.join(5)
    histogram = Counter(int(ms) for ms in late)
    return {
        "p50": histogram_percentile(histogram, 0.50),
        "p99": histogram_percentile(histogram, 0.99),
    }


def steal_s() -> float:
    """CPU time the hypervisor gave to other guests so far, all CPUs (/proc/stat)."""
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[8]) / CLK_TCK


def gateway_name(index: int) -> str:
    return f"gw-{index + 1:03d}"


def site_file(state_dir: Path, groups: list[Any], cadence: Cadence) -> Path:
    cloud_url, ca_file, _ = groups[0]
    cloud = {"login_url": cloud_url, "token_url": cloud_url, "ca_file": ca_file}
    accounts = [{"name": "sim", "email": EMAIL, "password": PASSWORD, "cloud": cloud}]
    envoys: list[dict[str, Any]] = []
    for _, _, gateways in groups:
        for url, serial in gateways:
            scheme, host = url.split("://")
            entry = {
                "name": gateway_name(len(envoys)),
                "host": host,
                "serial": serial,
                "scheme": scheme,
                "poll": {"power_s": cadence.power_s, "inverters_s": cadence.inverters_s},
            }
            if scheme == "https":
                entry["account"] = "sim"
            envoys.append(entry)
    site = {
        "state_dir": str(state_dir),
        "accounts": accounts,
        "envoys": envoys,
        "sinks": [{"type": "sqlite"}, {"type": "prometheus", "port": free_port()}],
        "logging": {"format": "json"},
    }
    path = state_dir / "site.yml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


# --- /proc ------------------------------------------------------------------------------


def tree(root: int) -> list[int]:
    """``root`` and all its descendants, from one scan of /proc."""
    kids = child_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(kids.get(pid, ()))
    return found


def cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def kinds(root: int, status: dict[str, Any]) -> dict[int, str]:
    """pid -> what it is: a worker's kind (sinks by name), else supervisor or helper."""
    named = {}
    for name, worker in status.get("workers", {}).items():
        if worker.get("pid"):
            named[worker["pid"]] = name if worker["kind"] == "sink" else worker["kind"]
    return {
        pid: named.get(pid, "supervisor" if pid == root else "forkserver+tracker")
        for pid in tree(root)
    }


# --- one run ----------------------------------------------------------------------------


def feed_counts(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    counts = {}
    for envoy, feeds in status.get("feeds", {}).items():
        for feed, s in feeds.items():
            counts[f"{envoy}/{feed}"] = {
                "ok": s["polls"] - sum(s["errors"].values()),
                "errors": Counter(s["errors"]),
                "last_ok_ns": s["last_ok_ns"],
                "jitter_ms": s["jitter_ms"],
                "jitter_histogram": Counter(
                    {int(ms): n for ms, n in s.get("jitter_histogram_ms", {}).items()}
                ),
                "duration_ms": s["duration_ms"],
                "interval_s": s.get("interval_s") or 0.0,  #: the feed's own cadence
            }
    return counts


def wait_polling(
    state_dir: Path, envoys: int, supervisor: subprocess.Popen[bytes], deadline: float
) -> list[str]:
    """Wait for every power feed's first good poll; return the gateways that had none
    by ``deadline`` (a capture the logger cannot read; all of them: exit)."""
    names = {gateway_name(i) for i in range(envoys)}
    polled: set[str] = set()
    while time.monotonic() < deadline and polled != names:
        if supervisor.poll() is not None:
            raise SystemExit(f"bench: the supervisor exited with {supervisor.returncode}")
        counts = feed_counts(read_status(state_dir))
        polled = {
            k.split("/")[0] for k, c in counts.items() if k.endswith("/power") and c["last_ok_ns"]
        }
        time.sleep(0.5)
    if not polled:
        raise SystemExit("bench: no gateway was polled within the start-up time")
    return sorted(names - polled)


def histogram_percentile(histogram: Counter[int], q: float) -> float | None:
    """The upper bound (ms) of the 1 ms bucket holding the q-quantile, or None if empty."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= q * total:
            return float(bucket + 1)
    return float(max(histogram) + 1)


def window_jitter(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """Jitter of the power polls between two snapshots: pooled, and the worst gateway."""
    pooled: Counter[int] = Counter()
    worst: float | None = None
    for key, end in last.items():
        if not key.endswith("/power"):
            continue
        start = first.get(key, {}).get("jitter_histogram", Counter())
        window = end["jitter_histogram"] - start
        pooled += window
        p99 = histogram_percentile(window, 0.99)
        if p99 is not None:
            worst = p99 if worst is None else max(worst, p99)
    return {
        "p50": histogram_percentile(pooled, 0.50),
        "p99": histogram_percentile(pooled, 0.99),
        "worst_gateway_p99": worst,
        "polls": sum(pooled.values()),
    }


def spread(values: list[dict[str, float] | None]) -> dict[str, float | None]:
    present = [v for v in values if v]
    if not present:
        return {"p50": None, "p99": None}
    return {
        "p50": round(statistics.median(v["p50"] for v in present), 2),
        "p99": round(max(v["p99"] for v in present), 2),
    }


def measure(
    envoys: int,
    seconds: float,
    warmup: float,
    per: int,
    keep: bool,
    served: Served,
    cadence: Cadence,
) -> dict[str, Any]:
    state_dir = Path(tempfile.mkdtemp(prefix=f"bench-scale-{envoys}-"))
    processes, pipes, groups = start_simulators(envoys, per, served)
    log = (state_dir / "supervisor.log").open("wb")
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor",
            "--config",
            str(site_file(state_dir, groups, cadence)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    try:
        never_polled = wait_polling(
            state_dir, envoys, supervisor, time.monotonic() + 60 + 2 * envoys
        )
        time.sleep(warmup)
        before = read_status(state_dir)
        cpu_before = {pid: cpu_s(pid) for pid in tree(supervisor.pid)}
        sim_before = sum(cpu_s(p.pid) for p in processes)
        probe = start_probe(seconds)
        steal_before = steal_s()
        started = time.monotonic()
        time.sleep(seconds)
        after = read_status(state_dir)
        elapsed = time.monotonic() - started
        stolen = steal_s() - steal_before
        baseline = probe_result(*probe, timeout=30)
        pids = kinds(supervisor.pid, after)
        cpu_after = {pid: cpu_s(pid) for pid in pids}
        sim_cpu = sum(cpu_s(p.pid) for p in processes) - sim_before
        memory = {pid: uss_kib(pid) for pid in pids}
        fds = {pid: fd_count(pid) for pid in pids}
        load = os.getloadavg()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(30)
        except subprocess.TimeoutExpired:
            supervisor.kill()
        for pipe in pipes:
            pipe.close()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        log.close()

    cpu_by_kind: defaultdict[str, float] = defaultdict(float)
    for pid, kind in pids.items():
        cpu_by_kind[kind] += cpu_after[pid] - cpu_before.get(pid, 0.0)
    cpu_total = sum(cpu_by_kind.values())
    uss_by_kind: Counter[str] = Counter()
    for pid, kind in pids.items():
        uss_by_kind[kind] += memory[pid]
    pollers_kib = uss_by_kind["power"] + uss_by_kind["inverters"]

    first, last = feed_counts(before), feed_counts(after)
    missed, errors = 0, Counter[str]()
    power_written, power_due = 0, 0
    power_misses: dict[str, dict[str, Any]] = {}  #: gateway (its capture) -> what it missed
    for key, end in last.items():
        start = first.get(key)
        if start is None or start["last_ok_ns"] is None or end["last_ok_ns"] is None:
            continue
        # each feed at its own cadence (production.json's is production_s, not inverters_s)
        interval_s = end["interval_s"] or (
            cadence.power_s if key.endswith("/power") else cadence.inverters_s
        )
        interval_ns = int(interval_s * 1e9)
        expected = (end["last_ok_ns"] - start["last_ok_ns"]) // interval_ns
        missed += max(expected - (end["ok"] - start["ok"]), 0)
        errors.update(end["errors"] - start["errors"])
        if key.endswith("/power"):
            written, due = end["ok"] - start["ok"], math.floor(elapsed / cadence.power_s)
            power_written += written
            power_due += due
            if written < due:
                power_misses[served.label(key.split("/")[0])] = {
                    "missed": due - written,
                    "errors": dict(end["errors"] - start["errors"]),
                }
    jitter = window_jitter(first, last)
    consumers = after.get("consumers", {})
    restarts = sum(w["restarts"] for w in after.get("workers", {}).values())
    result: dict[str, Any] = {
        "envoys": envoys,
        "fixtures": [f.name for f in served.fixtures[:2]]
        + [f"+{len(served.fixtures) - 2}"] * (len(served.fixtures) > 2),
        "latency": served.latency,
        "power_s": cadence.power_s,
        "inverters_s": cadence.inverters_s,
        "seconds": round(elapsed, 1),
        "power_ticks": {"written": power_written, "due": power_due},
        "power_misses": power_misses,
        "never_polled": [served.label(name) for name in never_polled],
        "missed_ticks": missed,
        "poll_errors": dict(errors),
        "restarts": restarts,
        "jitter_ms": jitter,
        "wake_probe_ms": baseline,
        "jitter_p99_vs_probe": (
            round(jitter["p99"] / baseline["p99"], 2) if jitter["p99"] and baseline["p99"] else None
        ),
        "cpu_steal_percent": round(stolen / elapsed * 100, 1),
        "poll_ms": spread([c["duration_ms"] for k, c in last.items() if k.endswith("/power")]),
        "commit_lag_ms": {
            name.removeprefix("sink:"): {
                "p50": facts.get("commit_lag_p50_ms"),
                "p99": facts.get("commit_lag_p99_ms"),
            }
            for name, facts in sorted(consumers.items())
            if name.startswith("sink:")
        },
        "cpu_s_per_gateway_hour": round(cpu_total / elapsed * 3600 / envoys, 1),
        "cpu_percent_tree": round(cpu_total / elapsed * 100, 1),
        "cpu_percent_by_kind": {
            k: round(v / elapsed * 100, 1) for k, v in sorted(cpu_by_kind.items())
        },
        "cpu_percent_simulators": round(sim_cpu / elapsed * 100, 1),
        "uss_tree_mib": round(sum(memory.values()) / 1024, 1),
        "uss_per_gateway_mib": round(pollers_kib / envoys / 1024, 2),
        "uss_by_kind_mib": {k: round(v / 1024, 1) for k, v in sorted(uss_by_kind.items())},
        "processes": len(pids),
        "fds_tree": sum(fds.values()),
        "load_avg_1m": round(load[0], 2),
    }
    if keep:
        result["state_dir"] = str(state_dir)
    return result


# --- the summary ------------------------------------------------------------------------


def fit(points: list[tuple[int, float]]) -> dict[str, float] | None:
    """Least-squares ``a + b*N`` over (N, cost) pairs: b is the cost of one more gateway."""
    points = [(n, v) for n, v in points if v is not None and math.isfinite(v)]
    if len(points) < 2 or len({n for n, _ in points}) < 2:
        return None
    mean_n = statistics.fmean(n for n, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    slope = sum((n - mean_n) * (v - mean_v) for n, v in points) / sum(
        (n - mean_n) ** 2 for n, _ in points
    )
    return {"fixed": round(mean_v - slope * mean_n, 2), "per_gateway": round(slope, 3)}


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    def costs(pick: Any) -> list[tuple[int, float]]:
        return [(r["envoys"], pick(r)) for r in results]

    growth = {
        "cpu_percent_tree": fit(costs(lambda r: r["cpu_percent_tree"])),
        "uss_tree_mib": fit(costs(lambda r: r["uss_tree_mib"])),
        "fds_tree": fit(costs(lambda r: r["fds_tree"])),
        "processes": fit(costs(lambda r: r["processes"])),
        "jitter_p99_ms": fit(costs(lambda r: r["jitter_ms"]["p99"])),
        "sqlite_commit_lag_p99_ms": fit(
            costs(lambda r: r["commit_lag_ms"].get("sqlite", {}).get("p99"))
        ),
    }
    uss = growth["uss_tree_mib"]
    return {
        "summary": "cost = fixed + per_gateway * N (least squares over the runs)",
        "growth": growth,
        "uss_for_10_gateways_mib": (
            round(uss["fixed"] + 10 * uss["per_gateway"], 1) if uss else None
        ),
        "missed_ticks_total": sum(r["missed_ticks"] for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument(
        "--envoys", default="1,5,10,25", help="comma-separated N values; 'all' with --fixture all"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time per N")
    parser.add_argument("--warmup", type=float, default=10.0, help="after every gateway polled")
    parser.add_argument("--per-simulator", type=int, default=1, help="gateways per simulator")
    parser.add_argument("--keep", action="store_true", help="print each run's state dir")
    parser.add_argument(
        "--fixture",
        metavar="DIR|all",
        help="every gateway serves this capture folder; 'all': gateway i serves setup i",
    )
    parser.add_argument("--power-s", type=float, default=Cadence().power_s, help="power cadence")
    parser.add_argument(
        "--inverters-s", type=float, default=Cadence().inverters_s, help="inverter cadence"
    )
    add_latency_option(parser)
    args = parser.parse_args(argv)
    fixtures: tuple[Path, ...] = ()
    if args.fixture == "all":
        fixtures = tuple(d for d in sorted(FIXTURES.iterdir()) if (d / "info.xml").is_file())
    elif args.fixture is not None:
        fixtures = (Path(args.fixture),)
        if not (fixtures[0] / "info.xml").is_file():
            parser.error(f"{args.fixture}: not a fixture folder (no info.xml)")
    served = Served(fixtures, args.latency)
    cadence = Cadence(args.power_s, args.inverters_s)
    counts = [len(fixtures)] if args.envoys == "all" else [int(n) for n in args.envoys.split(",")]
    results = []
    for envoys in counts:
        result = measure(
            envoys, args.seconds, args.warmup, args.per_simulator, args.keep, served, cadence
        )
        results.append(result)
        print(orjson.dumps(result).decode(), flush=True)
    print(orjson.dumps(summary(results)).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
