"""The simulated year's verdicts: per fault, was normal service back within its promise
(see `bench.year`)."""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.year_scenario import DAY, POWER_S, SPOOL_MAX_BYTES, START, day_at
from bench.year_site import Site
from shared.config import AccountConfig
from shared.messages import DailyEnergyBatch
from workers.poller import MAX_BACKOFF_S


def first_after(times: list[float], t: float) -> float | None:
    i = bisect.bisect_left(times, t)
    return times[i] if i < len(times) else None


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch without any of ``times`` inside [start, end]."""
    inside = [start, *[t for t in times if start <= t <= end], end]
    return max(b - a for a, b in itertools.pairwise(inside))


def login_bound(account: AccountConfig, seconds: float) -> int:
    """The most logins a refusal of ``seconds`` may see: doubling waits up to the cap,
    then one per cap, plus the first try and the one that succeeds."""
    doublings = math.ceil(math.log2(account.login_backoff_max_s / account.login_backoff_s))
    ramp = sum(
        min(account.login_backoff_s * 2**k, account.login_backoff_max_s) for k in range(doublings)
    )
    rest = max(seconds - ramp, 0.0)
    return 2 + doublings + math.ceil(rest / account.login_backoff_max_s)


@dataclass(frozen=True, slots=True)
class Verdict:
    event: str
    ok: bool
    recovery_s: float | None  #: fault end -> normal service again
    detail: str


def judge(site: Site) -> list[Verdict]:
    rec, f = site.record, site.faults
    out: list[Verdict] = []
    end_s = site.clock.end_s if math.isfinite(site.clock.end_s) else site.clock.true_s

    def service(name: str, times: list[float], extra: str = "", within_caps: bool = True) -> None:
        fault = f[name]
        if fault.end_s > end_s:
            return  # beyond a shortened year
        back = first_after(times, fault.end_s)
        recovery = None if back is None else back - fault.end_s
        ok = within_caps and recovery is not None and recovery <= fault.promise_s
        out.append(
            Verdict(
                name, ok, recovery, f"promised <= {fault.promise_s:g} s ({fault.promise}){extra}"
            )
        )

    service("firmware update HTTP -> HTTPS", rec.ok_polls)
    outage = f["gateway unreachable 72 h"]
    tries = [t for t in rec.requests if outage.start_s <= t < outage.end_s]
    gap = longest_gap(tries, outage.start_s + 600, outage.end_s) if tries else 0.0
    cap = MAX_BACKOFF_S + POWER_S + site._gateway_config.connect_timeout_s
    service(
        "gateway unreachable 72 h",
        rec.ok_polls,
        f"; {len(tries)} tries, longest wait {gap:g} s (cap {cap:g} s)",
        within_caps=gap <= cap,
    )
    service("clock stepped 1 h back", rec.ok_polls)
    service("clock stepped 1 h forward", rec.ok_polls)

    for name, cloud, account in (
        ("installer logins refused 1 week", site.installer_cloud, site.installer_account),
        ("owner logins refused 1 week", site.owner_cloud, site.owner_account),
    ):
        fault = f[name]
        if fault.end_s > end_s:
            continue
        owner = name.startswith("owner")
        issued = rec.owner_tokens if owner else [t for t, _ in rec.installer_held_until]
        success = first_after(issued, fault.start_s)  # the login that worked again
        during = [t for t in cloud.logins if fault.start_s <= t <= (success or end_s)]
        bound = login_bound(account, fault.end_s - fault.start_s)
        waits = longest_gap(during, during[0], during[-1]) if len(during) > 1 else 0.0
        # The owner's readings must not notice; the installer's token comes back.
        back = first_after(rec.ok_polls, fault.end_s) if owner else success
        recovery = None if back is None else max(back - fault.end_s, 0.0)
        lost = sum(1 for t in rec.no_token if fault.start_s <= t <= fault.end_s + DAY)
        ok = (
            len(during) <= bound
            and waits <= account.login_backoff_max_s + 1
            and (recovery is not None and recovery <= fault.promise_s)
            and (lost == 0 or not owner)
        )
        out.append(
            Verdict(
                name,
                ok,
                recovery,
                (
                    f"{len(during)} login attempts (promised <= {bound}), longest wait "
                    f"{waits:g} s, {lost} polls without a token; promised <= "
                    f"{fault.promise_s:g} s ({fault.promise})"
                ),
            )
        )

    db = f["database down 3 days"]
    if db.end_s <= end_s:
        written = site.database.batches
        dropped = site.spool.dropped
        depth = site.spool.depth()[0]
        back = first_after(site.database.ok_writes, db.end_s)
        recovery = None if back is None else back - db.end_s
        ok = (
            rec.put == written + dropped
            and depth == 0
            and dropped > 0
            and recovery is not None
            and recovery <= db.promise_s
        )
        out.append(
            Verdict(
                db.name,
                ok,
                recovery,
                (
                    f"{rec.put} batches spooled = {written} written + {dropped} dropped at the "
                    f"{SPOOL_MAX_BYTES // 1024} KiB cap (counted), {depth} left; "
                    f"promised <= {db.promise_s:g} s ({db.promise})"
                ),
            )
        )

    disk = f["full disk 1 h (sqlite sink crashes)"]
    if disk.end_s <= end_s:
        running = [t for t, state in rec.sink_states if state == "running"]
        fatal = sum(1 for t, state in rec.sink_states if state == "fatal")
        back = first_after(running, disk.end_s)
        recovery = None if back is None else back - disk.end_s
        ok = recovery is not None and recovery <= disk.promise_s
        out.append(
            Verdict(
                disk.name,
                ok,
                recovery,
                (
                    f"{site.sink.restarts_total} restarts, FATAL {fatal} times, running again; "
                    f"promised <= {disk.promise_s:g} s ({disk.promise})"
                ),
            )
        )

    out.extend(daily_verdicts(rec.daily, end_s))
    bugs = rec.errors.get("bug", 0)
    out.append(
        Verdict("no exception escaped", bugs == 0, None, f"{bugs} polls failed unexpectedly")
    )
    return out


def daily_verdicts(rows: list[DailyEnergyBatch], end_s: float) -> list[Verdict]:
    """DST days (23 and 25 h) and the clock-step days get their energy once: like the
    days around them, not doubled or missing an hour of sunshine."""
    production = {
        b.day: e.wh
        for b in rows
        for e in b.entries
        if e.measurement_type == "production" and e.line == "total" and not e.tags
    }
    out = []
    for what, day in (
        ("DST spring forward (23 h day)", date(2027, 3, 28)),
        ("DST fall back (25 h day)", date(2027, 10, 31)),
        ("daily energy on the clock-back day", (datetime.fromtimestamp(day_at(250), UTC).date())),
        (
            "daily energy on the clock-forward day",
            (datetime.fromtimestamp(day_at(260), UTC).date()),
        ),
    ):
        if datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + 2 * DAY > end_s:
            continue
        around = [production.get((day + timedelta(days=k)).isoformat()) for k in (-2, -1, 1, 2)]
        known = [wh for wh in around if wh]
        wh = production.get(day.isoformat())
        ratio = None if wh is None or not known else wh / (sum(known) / len(known))
        ok = ratio is not None and 0.8 <= ratio <= 1.25
        out.append(
            Verdict(
                what,
                ok,
                None,
                f"{day}: {wh and round(wh)} Wh, {ratio and round(ratio, 3)} of the days around it",
            )
        )
    return out


def figures(site: Site, verdicts: list[Verdict], wall_s: float, cpu_s: float) -> dict[str, Any]:
    rec = site.record
    days = (min(site.clock.true_s, START + 365 * DAY) - START) / DAY
    ok_polls = rec.ok_polls
    return {
        "days": round(days, 2),
        "power_s": POWER_S,
        "polls_ok": len(ok_polls),
        "polls_failed": dict(sorted(rec.errors.items())),
        "requests": len(rec.requests),
        "owner_logins": len(site.owner_cloud.logins),
        "owner_tokens": len(site.owner_cloud.tokens),
        "installer_logins": len(site.installer_cloud.logins),
        "installer_tokens": len(site.installer_cloud.tokens),
        "sink_restarts": site.sink.restarts_total,
        "spool_put": rec.put,
        "spool_dropped": site.spool.dropped,
        "db_refused_writes": site.database.refused,
        "daily_rows": len(rec.daily),
        "longest_without_reading_after_fault_s": {
            v.event: v.recovery_s for v in verdicts if v.recovery_s is not None
        },
        "verdicts_failed": [v.event for v in verdicts if not v.ok],
        "real_wall_s": round(wall_s, 1),
        "real_cpu_s": round(cpu_s, 1),
    }
