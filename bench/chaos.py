"""``python -m bench.chaos``: the real supervisor under a seeded storm of failures.

Starts a simulated cloud and three simulated gateways in this process (a generated
three-phase one with CTs, a captured firmware from ../shared/fixtures, a generated legacy
firmware D5.0.62 on plain HTTP), VictoriaMetrics when its binary is installed, and
``python -m supervisor --config site.yml`` into SQLite (and VictoriaMetrics through the
InfluxDB sink). A schedule drawn from ``--seed`` and scaled to ``--minutes`` then:
SIGKILLs a worker every few seconds (every kind at least once), SIGSTOPs one for longer
than the watchdog allows, injects every gateway fault kind, makes the cloud refuse
logins, stops the database for a while, SIGTERMs the supervisor and starts it again, and
SIGKILLs it and starts it again. ``--no-faults`` is the soak: none of that, just
sampling memory and file descriptors. The gateways answer as slowly as real ones
(``--latency``, default real: `shared.simulator.timing`).

Afterwards `bench.chaos_audit` compares the gateways' own record of what they served
with what reached each sink. The last line printed is one JSON object; the exit code is
1 when a target is missed (loss, SQLite duplicates, orphans, excess logins, FATAL).

Only processes this run started are signalled: workers are looked up in status.json and
checked to be in the supervisor's session before any kill.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import chaos_audit as audit
from shared.simulator import SimulatedCloud, SimulatedGateway
from shared.simulator.faults import Fault, FaultKind
from shared.simulator.served import ServedReading
from shared.simulator.timing import add_latency_option

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "pyenphase" / "7.6.175_with_cts_3phase"
EMAIL = "owner@example.com"
PASSWORD = "chaos-cloud-password-7f3a"  # the simulated cloud's; tests grep logs for it
INFLUX_TOKEN = "chaos-influx-token-91c2"  # VictoriaMetrics ignores it; tests grep for it
SUPERVISION = {
    "heartbeat_s": 0.5,
    "hang_timeout_s": 5,
    "backoff_initial_s": 0.2,
    "backoff_max_s": 2,
    "max_restarts": 10,
    "restart_window_s": 60,
    "grace_s": 10,
}
KINDS = ("token", "power", "inverters", "daily", "sink")
DATA_PATHS = ("/production.json", "/ivp/meters/readings", "/api/v1/production/inverters")
GATEWAY_FAULTS = (
    Fault(FaultKind.LATENCY, seconds=1.5),
    Fault(FaultKind.TIMEOUT),
    Fault(FaultKind.RESET),
    Fault(FaultKind.STATUS, status=503, retry_after=1),
    Fault(FaultKind.HTML),
    Fault(FaultKind.TRUNCATE),
    Fault(FaultKind.UNAUTHORIZED),
)


@dataclass
class Run:
    """Everything one chaos run started and saw."""

    workdir: Path
    poll_s: float
    cloud: SimulatedCloud
    gateways: dict[str, SimulatedGateway]
    vm: Any = None  # tests.servers.VictoriaMetrics when installed
    supervisor: subprocess.Popen[bytes] | None = None
    started: float = field(default_factory=time.time)
    served: dict[str, dict[tuple[str, float, int], ServedReading]] = field(default_factory=dict)
    events: list[audit.Event] = field(default_factory=list)
    samples: list[audit.ProcessSample] = field(default_factory=list)
    max_spool: int = 0
    orphans: list[int] = field(default_factory=list)
    supervisor_exit_codes: list[int] = field(default_factory=list)
    timers: list[threading.Timer] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def log(self) -> Path:
        return self.workdir / "supervisor.log"

    def note(self, kind: str, target: str = "", duration_s: float = 0.0) -> None:
        self.events.append(audit.Event(time.time(), kind, target, duration_s))

    def later(self, seconds: float, heal: Callable[[], None]) -> None:
        """Undo a long fault on a timer, so the schedule keeps its pace meanwhile."""
        timer = threading.Timer(seconds, heal)
        timer.start()
        self.timers.append(timer)

    def wait_healed(self) -> None:
        for timer in self.timers:
            timer.join(120)


# --- the world --------------------------------------------------------------------------


def build_world(workdir: Path, poll_s: float, with_db: bool, latency: float) -> Run:
    cloud = SimulatedCloud(accounts={EMAIL: PASSWORD}, state_dir=workdir / "cloud")
    cloud.start()
    gateways = {
        "gw1": SimulatedGateway(
            cloud=cloud, seed=1, phases=3, consumption_cts=True, latency=latency
        ),
        "gw2": SimulatedGateway(FIXTURE, cloud=cloud, seed=2, latency=latency)
        if FIXTURE.is_dir()
        else SimulatedGateway(cloud=cloud, seed=2, phases=1, latency=latency),
        "gw3": SimulatedGateway(seed=3, firmware="D5.0.62", inverters=8, latency=latency),
    }
    for gw in gateways.values():
        gw.start()
    run = Run(workdir, poll_s, cloud, gateways)
    if with_db and shutil.which("victoria-metrics"):
        from tests.servers import VictoriaMetrics

        (workdir / "vm").mkdir(exist_ok=True)
        run.vm = VictoriaMetrics(workdir / "vm")
        run.vm.start()
    (workdir / "site.yml").write_text(site_yaml(run))
    (workdir / "site.yml").chmod(0o600)
    return run


def site_yaml(run: Run) -> str:
    lines = [
        f"state_dir: {run.state_dir}",
        "timezone: Europe/Amsterdam",
        "accounts:",
        f"  - {{name: home, email: {EMAIL}, password: {PASSWORD},",
        f"     cloud: {{login_url: '{run.cloud.url}', token_url: '{run.cloud.url}',",
        f"             ca_file: '{run.cloud.ca_file}'}}}}",
        "envoys:",
    ]
    for name, gw in run.gateways.items():
        scheme, host = gw.url.split("://")
        account = "account: home, " if gw.uses_tokens else ""
        lines.append(
            f"  - {{name: {name}, host: '{host}', scheme: {scheme}, serial: '{gw.serial}', "
            f"{account}poll: {{power_s: {run.poll_s}, inverters_s: {2 * run.poll_s}}}}}"
        )
    lines += ["sinks:", "  - {type: sqlite, name: db}"]
    if run.vm is not None:
        lines.append(
            f"  - {{type: influxdb, name: vm, url: '{run.vm.url}', version: 2, org: chaos, "
            f"bucket: envoy, bucket_daily: envoy_daily, token: {INFLUX_TOKEN}, timeout_s: 3}}"
        )
    lines += ["supervision:", *[f"  {k}: {v}" for k, v in SUPERVISION.items()]]
    lines += ["logging: {level: info, format: json}"]
    return "\n".join(lines) + "\n"


def start_supervisor(run: Run) -> None:
    with run.log.open("ab") as log:
        run.supervisor = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--config", str(run.workdir / "site.yml")],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run.note("supervisor-start")


def stop_supervisor(run: Run, how: signal.Signals) -> None:
    """Signal the supervisor, wait for it and its session to end; orphans are recorded."""
    proc = run.supervisor
    assert proc is not None
    sid = proc.pid
    run.note("supervisor-" + how.name.lower())
    proc.send_signal(how)
    try:
        code = proc.wait(SUPERVISION["grace_s"] + 20)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait(10)
    run.supervisor_exit_codes.append(code)
    # Workers must notice their parent is gone on their own: give them a few seconds.
    deadline = time.monotonic() + 15
    while audit.session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = audit.session_pids(sid)
    run.orphans += left
    for pid in left:  # ours, by session: clean up so the next run starts fresh
        os.kill(pid, signal.SIGKILL)
    run.supervisor = None


def status(run: Run) -> dict[str, Any]:
    try:
        data: dict[str, Any] = orjson.loads((run.state_dir / "status.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data


def worker_pids(run: Run) -> dict[str, int]:
    """Running workers of the current supervisor, checked to be in its session."""
    if run.supervisor is None:
        return {}
    ours = set(audit.session_pids(run.supervisor.pid))
    return {
        name: w["pid"]
        for name, w in status(run).get("workers", {}).items()
        if w.get("state") == "running" and w.get("pid") in ours
    }


# --- the schedule -----------------------------------------------------------------------

#: does one thing to the run; False: not possible right now (say, the worker it wants is
#: restarting), try again in a second
Action = Callable[[Run], bool]


def kill_worker(kind: str, rng: random.Random) -> Action:
    def act(run: Run) -> bool:
        pids = {n: p for n, p in worker_pids(run).items() if n.split(":")[0] == kind}
        if not pids:
            return False
        name = rng.choice(sorted(pids))
        os.kill(pids[name], signal.SIGKILL)
        run.note("kill", name)
        return True

    return act


def stop_worker(kind: str, seconds: float, rng: random.Random) -> Action:
    def act(run: Run) -> bool:
        pids = {n: p for n, p in worker_pids(run).items() if n.split(":")[0] == kind}
        if not pids:
            return False
        name = rng.choice(sorted(pids))
        pid = pids[name]
        os.kill(pid, signal.SIGSTOP)
        run.note("sigstop", name, seconds)

        def resume() -> None:  # the watchdog kills it meanwhile; CONT frees it if not
            if run.supervisor is not None and audit.session_of(pid) == run.supervisor.pid:
                os.kill(pid, signal.SIGCONT)

        run.later(seconds, resume)
        return True

    return act


def gateway_fault(gateway: str, paths: tuple[str, ...], fault: Fault, seconds: float) -> Action:
    def act(run: Run) -> bool:
        for path in paths:
            run.gateways[gateway].faults.set(path, Fault(**{**_fields(fault), "for_s": seconds}))
        run.note("fault:" + fault.kind.value, gateway + ",".join(paths), seconds)
        return True

    return act


def refuse_logins(seconds: float) -> Action:
    def act(run: Run) -> bool:
        fault = Fault(FaultKind.REFUSE_LOGINS, status=429, for_s=seconds)
        run.cloud.faults.set("/login/login.json", fault)
        run.note("refuse-logins", "cloud", seconds)
        return True

    return act


def database_outage(seconds: float) -> Action:
    def act(run: Run) -> bool:
        if run.vm is None:
            return True  # SQLite only: there is no database server to stop
        run.vm.stop()
        run.note("database-down", "vm", seconds)
        run.later(seconds, run.vm.start)
        return True

    return act


def restart_supervisor(how: signal.Signals) -> Action:
    def act(run: Run) -> bool:
        stop_supervisor(run, how)
        start_supervisor(run)
        return True

    return act


def schedule(seed: int, duration_s: float, run: Run) -> list[tuple[float, Action]]:
    """(seconds from start, action), drawn from ``seed``, scaled to ``duration_s``."""
    rng = random.Random(seed)
    plan: list[tuple[float, Action]] = []
    start, end = 15.0, duration_s - 25.0
    kinds = list(KINDS)
    rng.shuffle(kinds)
    at = start
    while at < end:
        kind = kinds.pop() if kinds else rng.choice(KINDS)
        plan.append((at, kill_worker(kind, rng)))
        at += rng.uniform(2.0, 5.0)
    hang = SUPERVISION["hang_timeout_s"] + 3
    plan.append((0.2 * duration_s, stop_worker(rng.choice(KINDS[1:]), hang, rng)))
    token_gateways = [n for n, g in run.gateways.items() if g.uses_tokens]
    spacing = (end - start) / (len(GATEWAY_FAULTS) + 1)
    for i, fault in enumerate(GATEWAY_FAULTS, start=1):
        at = start + i * spacing
        unauthorized = fault.kind is FaultKind.UNAUTHORIZED
        gateway = rng.choice(token_gateways if unauthorized else sorted(run.gateways))
        # A 401 on the power tick's request (whichever of the two it reads) is what makes
        # a poller report the token rejected.
        paths = audit.TICK_ENDPOINTS if unauthorized else (rng.choice(DATA_PATHS),)
        plan.append((at, gateway_fault(gateway, paths, fault, min(8.0, spacing / 2))))
        if unauthorized:  # a re-login is due now: refuse it for a while
            plan.append((at - 1.0, refuse_logins(min(20.0, spacing))))
    plan.append((0.35 * duration_s, database_outage(min(60.0, 0.1 * duration_s))))
    plan.append((0.55 * duration_s, restart_supervisor(signal.SIGTERM)))
    plan.append((0.75 * duration_s, restart_supervisor(signal.SIGKILL)))
    return sorted(plan, key=lambda item: item[0])


def _fields(fault: Fault) -> dict[str, Any]:
    return {name: getattr(fault, name) for name in Fault.__dataclass_fields__}


# --- running ----------------------------------------------------------------------------


def observe(run: Run, processes: bool) -> None:
    for name, gw in run.gateways.items():
        seen = run.served.setdefault(name, {})
        for reading in gw.served:
            seen[(reading.endpoint, reading.time, reading.status)] = reading
    current = status(run)
    for consumer in current.get("consumers", {}).values():
        run.max_spool = max(run.max_spool, int(consumer.get("spool_items") or 0))
    if processes and run.supervisor is not None:
        names = {w.get("pid"): n for n, w in current.get("workers", {}).items()}
        for pid in audit.session_pids(run.supervisor.pid):
            name = "supervisor" if pid == run.supervisor.pid else names.get(pid, "helper")
            sample = audit.sample_process(pid, name)
            if sample is not None:
                run.samples.append(sample)


def drive(run: Run, duration_s: float, plan: list[tuple[float, Action]]) -> None:
    start_supervisor(run)
    began = time.monotonic()
    next_sample = 0.0
    while (elapsed := time.monotonic() - began) < duration_s:
        while plan and plan[0][0] <= elapsed:
            _, action = plan.pop(0)
            if not action(run) and elapsed < duration_s - 20:
                plan.append((elapsed + 1.0, action))
                plan.sort(key=lambda item: item[0])
        observe(run, processes=elapsed >= next_sample)
        if elapsed >= next_sample:
            next_sample = elapsed + 10.0
        time.sleep(1.0)
    run.wait_healed()
    stop_supervisor(run, signal.SIGTERM)
    observe(run, processes=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-faults", action="store_true", help="soak: no faults at all")
    parser.add_argument("--poll-s", type=float, default=1.0, help="power poll interval")
    parser.add_argument("--no-db", action="store_true", help="SQLite only, no VictoriaMetrics")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: temp)")
    add_latency_option(parser)
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="envoy-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    duration_s = args.minutes * 60
    run = build_world(workdir, args.poll_s, with_db=not args.no_db, latency=args.latency)
    try:
        plan = [] if args.no_faults else schedule(args.seed, duration_s, run)
        drive(run, duration_s, plan)
        result = audit.report(run, soak=args.no_faults)
    finally:
        if run.supervisor is not None:
            stop_supervisor(run, signal.SIGKILL)
        for gw in run.gateways.values():
            gw.stop()
        run.cloud.close()
        if run.vm is not None:
            run.vm.stop()
    result = {"minutes": args.minutes, "seed": args.seed, "workdir": str(workdir), **result}
    print(orjson.dumps(result).decode(), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
