"""What a chaos run proves: the gateways' record of what they served against the sinks.

For each gateway the simulator kept every data body it answered (`ServedReading`). Each
complete power-tick reading (``/ivp/meters/readings``, or ``/api/v1/production`` on a
gateway without CTs) should have become one poll's rows in every sink, stamped with the
poll's tick (at most a few seconds before the gateway answered); each
inverter report (serial, lastReportDate) one ``inverter`` row at that date. A reading
that did not arrive counts as:

* excused, when a fault on that gateway, a kill of its poller or a stop of the
  supervisor came while it was in flight (it was never handed over: the poll failed or
  its process died with it);
* lost otherwise.

Gaps are stretches with no request at all (a poller down or backing off), from the
gateway's side. Processes: orphans are processes left in a dead supervisor's session;
RSS and open file descriptors are sampled every 10 s per process.

Reads: the SQLite file, VictoriaMetrics' export API, status.json, the supervisor log,
/proc. Writes nothing.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from supervisor.journal import read_journal
from supervisor.launch import JOURNAL_FILE

if TYPE_CHECKING:
    from bench.chaos import Run

IN_FLIGHT_S = 4.0  #: a poll (production + meters) finishes within this after its answer
TICK_SLACK_S = 6.0  #: an answer comes at most this long after its tick (latency faults),
#: beyond the time the gateway takes to answer (`answer_range`)
#: what a power tick reads: the CT readings on metered gateways, else the inverter sum
TICK_ENDPOINTS = ("/ivp/meters/readings", "/api/v1/production")


def tick_endpoint(run: Run, gateway: str) -> str:
    """The endpoint ``gateway``'s power ticks read, as its answers show."""
    served = {r.endpoint for r in run.served.get(gateway, {}).values()}
    return next((e for e in TICK_ENDPOINTS if e in served), TICK_ENDPOINTS[0])


def answer_range(run: Run, gateway: str) -> tuple[float, float]:
    """The least and the most ``gateway`` takes to answer a poll: a reading answered up to
    the most after an event (kill, fault) may have met it in flight; none is answered
    sooner than the least after its tick."""
    return run.gateways[gateway].answer_range_s(tick_endpoint(run, gateway))


@dataclass(frozen=True, slots=True)
class Event:
    at: float  #: epoch seconds
    kind: str
    target: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class ProcessSample:
    at: float
    pid: int
    name: str
    rss_kib: int
    fds: int


# --- processes --------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_of(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[3])


def session_pids(sid: int) -> list[int]:
    """Live processes (not zombies) of session ``sid``."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and session_of(int(entry.name)) == sid
    ]


def sample_process(pid: int, name: str) -> ProcessSample | None:
    import time

    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return None
    rss = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
    )
    return ProcessSample(time.time(), pid, name, rss, fds)


def growth(samples: list[ProcessSample], warm_s: float) -> dict[str, dict[str, float]]:
    """Per process (same pid throughout): RSS growth in % and fd growth, after warm-up."""
    by_pid: dict[int, list[ProcessSample]] = defaultdict(list)
    for sample in samples:
        by_pid[sample.pid].append(sample)
    out: dict[str, dict[str, float]] = {}
    for series in by_pid.values():
        warm = [s for s in series if s.at >= series[0].at + warm_s]
        if len(warm) < 2:
            continue
        first, middle, last = warm[0], warm[len(warm) // 2], warm[-1]
        key = f"{first.name}#{first.pid}"
        out[key] = {
            "minutes": round((last.at - first.at) / 60, 1),
            "rss_mib": round(last.rss_kib / 1024, 1),
            # Caches fill early (SQLite's page cache: 2 MiB); a leak keeps growing late too.
            "rss_growth_2nd_half_pct": round(
                100 * (last.rss_kib - middle.rss_kib) / max(middle.rss_kib, 1), 1
            ),
            "rss_growth_pct": round(
                100 * (last.rss_kib - first.rss_kib) / max(first.rss_kib, 1), 1
            ),
            "fd_growth": last.fds - first.fds,
        }
    return out


# --- readings ---------------------------------------------------------------------------


def excusals(run: Run, gateway: str) -> list[tuple[float, float]]:
    """Windows in which a reading of ``gateway`` may rightly never have been handed over."""
    windows = []
    slow = answer_range(run, gateway)[1]
    for e in run.events:
        if e.kind.startswith("fault:") and e.target.startswith(gateway + "/"):
            windows.append((e.at - IN_FLIGHT_S, e.at + e.duration_s + IN_FLIGHT_S + slow))
        elif e.kind in ("kill", "sigstop") and e.target.split(":")[-1] == gateway:
            windows.append((e.at - IN_FLIGHT_S, e.at + e.duration_s + 1 + slow))
        elif e.kind == "refuse-logins" and run.gateways[gateway].uses_tokens:
            windows.append((e.at, e.at + e.duration_s + IN_FLIGHT_S + slow))
        elif e.kind.startswith("supervisor-") and e.kind != "supervisor-start":
            windows.append((e.at - IN_FLIGHT_S, e.at + 30.0))
    return windows


def _inside(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(start <= t <= end for start, end in windows)


def match_polls(
    answers: list[float],
    rows: list[float],
    interval: float,
    answer_s: tuple[float, float] = (0.0, 0.0),
) -> list[float]:
    """Answer times with no row of their own: each row (a tick) serves one answer after it,
    at least the gateway's least answer time later and at most its most (``answer_s``)
    plus `TICK_SLACK_S`. The least keeps an answer to a killed poller's request, answered
    just after its successor's tick, from taking the row of the successor's answer."""
    least, most = answer_s
    unmatched = []
    j = 0
    for t in sorted(answers):
        while j < len(rows) and rows[j] < t - interval - TICK_SLACK_S - most:
            j += 1
        if j < len(rows) and rows[j] <= t - least:
            j += 1
        else:
            unmatched.append(t)
    return unmatched


def sqlite_ticks(db: Path, envoy: str) -> list[float]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT DISTINCT time FROM power WHERE envoy = ?", (envoy,))
        return sorted(t / 1e9 for (t,) in rows)


def sqlite_reports(db: Path, envoy: str) -> set[tuple[str, int]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT serial, time FROM inverter WHERE envoy = ?", (envoy,))
        return {(serial, t // 10**9) for serial, t in rows}


def sqlite_duplicates(db: Path) -> int:
    keys = {
        "power": "envoy, measurement_type, line, time",
        "energy": "envoy, measurement_type, line, time",
        "inverter": "envoy, serial, time",
        "energy_daily": "envoy, measurement_type, line, serial, time",
    }
    total = 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        for table, key in keys.items():
            try:
                (n,) = conn.execute(
                    f"SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT {key} FROM {table}))"
                    f" FROM {table}"
                ).fetchone()
            except sqlite3.OperationalError:
                n = 0  # a table nothing was written to
            total += n
    return total


def vm_data(vm: Any, envoy: str) -> tuple[list[float], set[tuple[str, int]], int]:
    """(power ticks, inverter reports, duplicate samples) of one gateway in VictoriaMetrics."""
    ticks: set[float] = set()
    duplicates = 0
    for series in vm.export(f'{{__name__=~"power_.*",envoy="{envoy}"}}'):
        stamps = series["timestamps"]
        duplicates += len(stamps) - len(set(stamps))
        ticks.update(ms / 1e3 for ms in stamps)
    reports: set[tuple[str, int]] = set()
    for series in vm.export(f'{{__name__="inverter_p_w",envoy="{envoy}"}}'):
        serial = series["metric"].get("serial", "")
        reports.update((serial, ms // 1000) for ms in series["timestamps"])
    return sorted(ticks), reports, duplicates


def audit_gateway(
    run: Run, name: str, ticks: list[float], reports: set[tuple[str, int]]
) -> dict[str, int]:
    readings = list(run.served.get(name, {}).values())
    windows = excusals(run, name)
    polled = tick_endpoint(run, name)
    answers = [r.time for r in readings if r.endpoint == polled and r.complete]
    missing = match_polls(answers, ticks, run.poll_s, answer_range(run, name))
    lost_polls = [t for t in missing if not _inside(t, windows)]
    served_reports: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in readings:
        if r.endpoint == "/api/v1/production/inverters" and r.complete:
            for key, value in r.values.items():
                serial, _, field = key.rpartition(".")
                if field == "lastReportDate":
                    served_reports[(serial, int(value))].append(r.time)
    lost_reports = [
        key
        for key, times in served_reports.items()
        if key not in reports and not all(_inside(t, windows) for t in times)
    ]
    return {
        "served": len(answers) + len(served_reports),
        "delivered": len(answers) - len(missing) + len(served_reports.keys() & reports),
        "excused": len(missing) - len(lost_polls),
        "lost": len(lost_polls) + len(lost_reports),
    }


def gaps(run: Run, name: str) -> list[dict[str, float]]:
    """Stretches with no power-tick request to this gateway at all."""
    polled = tick_endpoint(run, name)
    times = sorted(r.time for r in run.served.get(name, {}).values() if r.endpoint == polled)
    out = []
    for before, after in itertools.pairwise(times):
        if after - before > 2.5 * run.poll_s:
            out.append(
                {"at_s": round(before - run.started, 1), "s": round(after - before - run.poll_s, 1)}
            )
    return out


# --- the report -------------------------------------------------------------------------


def log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_bytes().splitlines():
        if line.startswith(b"{"):
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return events


def report(run: Run, soak: bool) -> dict[str, Any]:
    db = run.state_dir / "envoy.sqlite3"
    sinks: dict[str, Counter[str]] = {"db": Counter()}
    all_gaps = {}
    for name in run.gateways:
        sinks["db"].update(
            audit_gateway(run, name, sqlite_ticks(db, name), sqlite_reports(db, name))
        )
        if run.vm is not None and run.vm.running:
            ticks, reports, duplicates = vm_data(run.vm, name)
            vm = sinks.setdefault("vm", Counter())
            vm.update(audit_gateway(run, name, ticks, reports))
            vm["duplicated"] += duplicates
        found = gaps(run, name)
        all_gaps[name] = {
            "count": len(found),
            "total_s": round(sum(g["s"] for g in found), 1),
            "longest": sorted(found, key=lambda g: -g["s"])[:5],
        }
    sinks["db"]["duplicated"] = sqlite_duplicates(db)
    events = log_events(run.log)
    restarts = Counter(
        str(e.get("name", "")).split(":")[0]
        for e in events
        if e.get("event") == "worker started" and e.get("restarts", 0) > 0
    )
    final = orjson.loads((run.state_dir / "status.json").read_bytes())
    fatal = [n for n, w in final.get("workers", {}).items() if w.get("state") == "fatal"]
    # One login per token lifetime (the first), plus one per rejected token.
    login_budget = 1 + sum(1 for e in run.events if e.kind == "fault:unauthorized")
    processes = growth(run.samples, warm_s=60.0 if soak else 20.0)
    with (run.workdir / "process-samples.jsonl").open("wb") as out:
        out.writelines(orjson.dumps(sample) + b"\n" for sample in run.samples)
    lost = sum(s["lost"] for s in sinks.values())
    result: dict[str, Any] = {
        "sinks": {name: dict(counts) for name, counts in sinks.items()},
        "gaps": all_gaps,
        "worker_restarts": dict(sorted(restarts.items())),
        "fatal": fatal,
        "max_spool_depth": run.max_spool,
        "undelivered_in_journal": len(read_journal(run.state_dir / JOURNAL_FILE)),
        "orphans": len(run.orphans),
        "supervisor_exit_codes": run.supervisor_exit_codes,
        "cloud_logins": run.cloud.logins,
        "cloud_login_budget": login_budget,
        "chaos": dict(Counter(e.kind for e in run.events)),
        "rss_growth_pct_max": max((p["rss_growth_pct"] for p in processes.values()), default=0),
        "rss_growth_2nd_half_pct_max": max(
            (p["rss_growth_2nd_half_pct"] for p in processes.values()), default=0
        ),
        "fd_growth_max": max((p["fd_growth"] for p in processes.values()), default=0),
        "processes": processes,
        "log_lines": len(events),
    }
    result["ok"] = (
        lost == 0
        and sinks["db"]["duplicated"] == 0
        and not run.orphans
        and run.cloud.logins <= login_budget
        and not fatal
        # Soak: judged on the second half, after bounded caches have filled (the SQLite
        # sink's page cache alone is 2 MiB, ~7 % of its RSS, filling as the file grows).
        and (
            not soak or (result["rss_growth_2nd_half_pct_max"] < 5 and result["fd_growth_max"] <= 0)
        )
    )
    return result
