"""The restart policy: what the supervisor does next with one child, given what happened.

`decide(policy, child, event, now)` is a pure function of the child's state, an event
and the time: it never reads the clock, never touches a process and never logs. The
supervisor owns the processes; it feeds each child's events in here and carries out the
returned `Action` (start the process, ask it to stop, kill it, or log that it gave up).
Tests drive it with fake times.

Children are permanent (Erlang/OTP's one-for-one, Supervisor's autorestart=true): any
exit that was not asked for is restarted after an exponential backoff, until the child
restarts more than ``max_restarts`` times within ``restart_window_s`` (see
`supervisor.flapping`); then it is FATAL: it stays down while the others keep running,
and is started again after a cool-down (``fatal_cooldown_s``, doubling per FATAL episode
up to ``fatal_cooldown_max_s``), because what made it crash (a full disk, a database
server being upgraded) usually passes and nobody may be there to restart the service.
With ``fatal_forever`` it stays down until started deliberately. A child that then runs
stably for ``backoff_max_s`` has recovered: both streaks start over.

Time-based transitions (a backoff that ran out, a stop grace period that ran out) happen
on a `Tick`: the supervisor sends one whenever ``child.deadline`` has passed. No channels.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from shared.backoff import Backoff
from shared.config import SupervisionConfig
from supervisor.flapping import Flapping


class State(enum.Enum):
    STARTING = "starting"  #: spawned, no heartbeat yet
    RUNNING = "running"  #: has sent a heartbeat
    BACKOFF = "backoff"  #: exited unasked; waiting until next_start_at to restart
    STOPPING = "stopping"  #: asked to stop; its exit will not be restarted
    EXITED = "exited"  #: not running and not due to run (never started, or stopped)
    FATAL = "fatal"  #: restarted too often within the window: down until next_start_at


class Action(enum.Enum):
    NOTHING = "nothing"
    START = "start"  #: spawn the process (with fresh channels)
    STOP = "stop"  #: send it `Stop` so it drains and exits on its own
    KILL = "kill"  #: SIGKILL it; its exit arrives later as `Exited`
    GIVE_UP = "give_up"  #: it went FATAL: log it loudly, leave it down for the cool-down


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Run this child: the first start, or an operator's restart of a FATAL child."""


@dataclass(frozen=True, slots=True)
class Healthy:
    """The child sent a heartbeat: its loop is turning."""


@dataclass(frozen=True, slots=True)
class Exited:
    """The child's process ended (or could not be spawned)."""

    code: int | None = None  #: exit code; negative for a signal; None if unknown


@dataclass(frozen=True, slots=True)
class Hung:
    """No heartbeat for ``hang_timeout_s``: the child is stuck and must be killed."""


@dataclass(frozen=True, slots=True)
class StopRequested:
    """The supervisor is shutting down (or removing this child)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed; act on a deadline that is due (backoff or stop grace)."""


Event = Start | Healthy | Exited | Hung | StopRequested | Tick


# --- state ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildState:
    """Everything the policy remembers about one child. Times are the caller's clock."""

    state: State = State.EXITED
    restarts: tuple[float, ...] = ()  #: times of recent restarts (for the intensity limit)
    consecutive_failures: int = 0  #: exits in the current failure streak
    backoff_s: float = 0.0  #: the delay before the latest restart; 0 outside a streak
    next_start_at: float | None = None  #: BACKOFF, FATAL: when to start it again
    fatal_count: int = 0  #: FATAL episodes since it last ran stably
    stop_deadline: float | None = None  #: STOPPING: when to kill it if it has not exited
    started_at: float | None = None  #: when the current process was spawned
    healthy_since: float | None = None  #: its first heartbeat
    last_exit_code: int | None = None
    restarts_total: int = 0  #: since the supervisor started, for metrics and status

    @property
    def deadline(self) -> float | None:
        """When the supervisor must send a `Tick`, if anything is pending."""
        if self.state in (State.BACKOFF, State.FATAL):
            return self.next_start_at
        if self.state is State.STOPPING:
            return self.stop_deadline
        return None


def _spawned(child: ChildState, now: float) -> ChildState:
    return replace(
        child,
        state=State.STARTING,
        next_start_at=None,
        stop_deadline=None,
        started_at=now,
        healthy_since=None,
    )


def _ran_stably(policy: SupervisionConfig, child: ChildState, now: float) -> bool:
    # A child that stayed healthy longer than the longest backoff has recovered: its next
    # crash starts a new streak at backoff_initial_s instead of waiting backoff_max_s.
    return child.healthy_since is not None and now - child.healthy_since >= policy.backoff_max_s


def _fatal(policy: SupervisionConfig, child: ChildState, now: float) -> ChildState:
    count = child.fatal_count + 1
    cooldown = Backoff(policy.fatal_cooldown_s, policy.fatal_cooldown_max_s).after(count)
    retry_at = None if policy.fatal_forever else now + cooldown
    return replace(child, state=State.FATAL, next_start_at=retry_at, fatal_count=count)


def _crashed(
    policy: SupervisionConfig, child: ChildState, code: int | None, now: float
) -> tuple[ChildState, Action]:
    if _ran_stably(policy, child, now):
        child = replace(child, consecutive_failures=0, backoff_s=0.0, fatal_count=0)
    flapping = Flapping(policy.max_restarts, policy.restart_window_s, child.restarts).record(now)
    child = replace(
        child,
        restarts=flapping.times,
        consecutive_failures=child.consecutive_failures + 1,
        started_at=None,
        healthy_since=None,
        last_exit_code=code,
    )
    if flapping.exceeded(now):
        # STARTING/RUNNING -> FATAL: the restart this exit calls for would exceed the limit.
        return _fatal(policy, child, now), Action.GIVE_UP
    # STARTING/RUNNING -> BACKOFF: restart once the (growing) delay has passed.
    backoff = Backoff(policy.backoff_initial_s, policy.backoff_max_s).after(
        child.consecutive_failures
    )
    return (
        replace(child, state=State.BACKOFF, backoff_s=backoff, next_start_at=now + backoff),
        Action.NOTHING,
    )


def decide(
    policy: SupervisionConfig, child: ChildState, event: Event, now: float
) -> tuple[ChildState, Action]:
    """The child's next state and what the supervisor must do about it.

    Events that make no sense in the current state (a heartbeat from a child being
    stopped, a second exit) leave the state as it is and return `Action.NOTHING`.
    """
    state = child.state
    match event:
        case Start():
            if state in (State.EXITED, State.FATAL):
                # EXITED/FATAL -> STARTING: a deliberate start forgets the old failures.
                fresh = ChildState(restarts_total=child.restarts_total)
                return _spawned(fresh, now), Action.START
        case Healthy():
            if state is State.STARTING:
                # STARTING -> RUNNING: the first heartbeat proves the loop turns.
                return replace(child, state=State.RUNNING, healthy_since=now), Action.NOTHING
            if (
                state is State.RUNNING
                and (child.consecutive_failures or child.fatal_count)
                and _ran_stably(policy, child, now)
            ):
                # RUNNING, long enough: the failure streak is over.
                recovered = replace(child, consecutive_failures=0, backoff_s=0.0, fatal_count=0)
                return recovered, Action.NOTHING
        case Exited(code=code):
            if state in (State.STARTING, State.RUNNING):
                return _crashed(policy, child, code, now)
            if state is State.STOPPING:
                # STOPPING -> EXITED: the exit we asked for; no restart.
                return (
                    replace(
                        child,
                        state=State.EXITED,
                        stop_deadline=None,
                        started_at=None,
                        healthy_since=None,
                        last_exit_code=code,
                    ),
                    Action.NOTHING,
                )
        case Hung():
            if state in (State.STARTING, State.RUNNING, State.STOPPING):
                # Stays put until its exit arrives: the exit decides about the restart.
                return child, Action.KILL
        case StopRequested():
            if state in (State.STARTING, State.RUNNING):
                # STARTING/RUNNING -> STOPPING: let it drain, kill it after grace_s.
                stopping = replace(child, state=State.STOPPING, stop_deadline=now + policy.grace_s)
                return stopping, Action.STOP
            if state in (State.BACKOFF, State.FATAL):
                # BACKOFF/FATAL -> EXITED: nothing runs, so cancel the pending restart.
                return replace(child, state=State.EXITED, next_start_at=None), Action.NOTHING
        case Tick():
            if (
                state is State.BACKOFF
                and child.next_start_at is not None
                and now >= child.next_start_at
            ):
                # BACKOFF -> STARTING: the delay has passed.
                restarted = replace(child, restarts_total=child.restarts_total + 1)
                return _spawned(restarted, now), Action.START
            if (
                state is State.FATAL
                and child.next_start_at is not None
                and now >= child.next_start_at
            ):
                # FATAL -> STARTING: the cool-down is over; a fresh window and streak, but
                # the FATAL count stays, so a child that keeps failing cools down longer.
                retried = ChildState(
                    restarts_total=child.restarts_total + 1,
                    fatal_count=child.fatal_count,
                    last_exit_code=child.last_exit_code,
                )
                return _spawned(retried, now), Action.START
            if (
                state is State.STOPPING
                and child.stop_deadline is not None
                and now >= child.stop_deadline
            ):
                # Grace is over; kill once (stop_deadline cleared), then wait for its exit.
                return replace(child, stop_deadline=None), Action.KILL
    return child, Action.NOTHING
