"""The restart policy, driven with a fake clock: backoff, reset, intensity limit, stop."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config import SupervisionConfig
from supervisor.policy import (
    Action,
    ChildState,
    Event,
    Exited,
    Healthy,
    Hung,
    Start,
    State,
    StopRequested,
    Tick,
    decide,
)

POLICY = SupervisionConfig(
    backoff_initial_s=0.5, backoff_max_s=8.0, max_restarts=100, restart_window_s=60.0, grace_s=10.0
)


def running(policy: SupervisionConfig = POLICY, now: float = 0.0) -> ChildState:
    child, action = decide(policy, ChildState(), Start(), now)
    assert action is Action.START
    child, _ = decide(policy, child, Healthy(), now)
    assert child.state is State.RUNNING
    return child


def crash_and_restart(
    child: ChildState, now: float, policy: SupervisionConfig = POLICY
) -> tuple[ChildState, float]:
    """Exit the child at `now`, restart it when its backoff is due; return it and the time."""
    child, action = decide(policy, child, Exited(1), now)
    assert (child.state, action) == (State.BACKOFF, Action.NOTHING)
    assert child.next_start_at is not None
    now = child.next_start_at
    child, action = decide(policy, child, Tick(), now)
    assert (child.state, action) == (State.STARTING, Action.START)
    return child, now


def test_a_new_child_is_started_on_request() -> None:
    child, action = decide(POLICY, ChildState(), Start(), 5.0)
    assert action is Action.START
    assert child.state is State.STARTING
    assert child.started_at == 5.0


def test_the_first_heartbeat_makes_a_starting_child_running() -> None:
    child, _ = decide(POLICY, ChildState(), Start(), 0.0)
    child, action = decide(POLICY, child, Healthy(), 1.0)
    assert (child.state, action) == (State.RUNNING, Action.NOTHING)


def test_a_crash_waits_the_initial_backoff_before_restarting() -> None:
    child, action = decide(POLICY, running(), Exited(-9), 3.0)
    assert child.state is State.BACKOFF
    assert action is Action.NOTHING
    assert child.next_start_at == 3.5
    assert child.deadline == 3.5
    assert child.last_exit_code == -9


def test_a_tick_before_the_backoff_has_passed_does_not_restart() -> None:
    child, _ = decide(POLICY, running(), Exited(1), 3.0)
    same, action = decide(POLICY, child, Tick(), 3.4)
    assert (same, action) == (child, Action.NOTHING)


def test_backoff_doubles_per_consecutive_crash_up_to_the_cap() -> None:
    child, now = running(), 0.0
    delays = []
    for _ in range(7):
        child, now = crash_and_restart(child, now)
        delays.append(child.backoff_s)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert child.restarts_total == 7


def test_a_child_that_ran_healthily_longer_than_the_cap_starts_a_new_streak() -> None:
    child, now = running(), 0.0
    for _ in range(5):
        child, now = crash_and_restart(child, now)
    assert child.backoff_s == 8.0
    child, _ = decide(POLICY, child, Healthy(), now)
    child, _ = decide(POLICY, child, Exited(1), now + POLICY.backoff_max_s + 1)
    assert child.backoff_s == 0.5
    assert child.consecutive_failures == 1


def test_a_heartbeat_after_a_long_healthy_run_ends_the_failure_streak() -> None:
    child, now = running(), 0.0
    child, now = crash_and_restart(child, now)
    child, _ = decide(POLICY, child, Healthy(), now)
    child, _ = decide(POLICY, child, Healthy(), now + POLICY.backoff_max_s)
    assert child.consecutive_failures == 0
    assert child.backoff_s == 0.0


def test_a_child_that_crashes_before_its_first_heartbeat_keeps_its_streak() -> None:
    child, now = running(), 0.0
    for _ in range(3):
        child, now = crash_and_restart(child, now + 100.0)  # long gaps, but never healthy
    assert child.consecutive_failures == 3
    assert child.backoff_s == 2.0


def test_too_many_restarts_within_the_window_make_the_child_fatal() -> None:
    policy = SupervisionConfig(
        backoff_initial_s=0.1, backoff_max_s=0.1, max_restarts=3, restart_window_s=60.0
    )
    child, now = running(policy), 0.0
    for _ in range(3):
        child, now = crash_and_restart(child, now, policy)
    child, action = decide(policy, child, Exited(1), now)
    assert (child.state, action) == (State.FATAL, Action.GIVE_UP)
    assert child.deadline == now + policy.fatal_cooldown_s


def go_fatal(child: ChildState, now: float, policy: SupervisionConfig) -> tuple[ChildState, float]:
    """Crash a started child until it is FATAL; return it and the time."""
    while True:
        child, action = decide(policy, child, Exited(1), now)
        if action is Action.GIVE_UP:
            return child, now
        assert child.next_start_at is not None
        now = child.next_start_at
        child, _ = decide(policy, child, Tick(), now)


COOLING = SupervisionConfig(
    backoff_initial_s=1.0,
    backoff_max_s=4.0,
    max_restarts=2,
    restart_window_s=60.0,
    fatal_cooldown_s=600.0,
    fatal_cooldown_max_s=2000.0,
)


def test_a_fatal_child_is_started_again_after_a_cool_down_that_doubles_to_its_cap() -> None:
    child, now = running(COOLING), 0.0
    cooldowns = []
    for episode in range(1, 6):
        child, now = go_fatal(child, now, COOLING)
        assert (child.state, child.fatal_count) == (State.FATAL, episode)
        assert child.next_start_at is not None
        # Nothing wakes it early: not a Tick before the time, not a heartbeat.
        assert decide(COOLING, child, Tick(), child.next_start_at - 0.1) == (child, Action.NOTHING)
        cooldowns.append(child.next_start_at - now)
        now = child.next_start_at
        child, action = decide(COOLING, child, Tick(), now)
        assert (child.state, action) == (State.STARTING, Action.START)
        assert child.restarts == ()  # a fresh window: it gets its restarts again
    assert cooldowns == [600.0, 1200.0, 2000.0, 2000.0, 2000.0]
    assert child.fatal_count == 5


def test_a_fatal_child_that_then_runs_stably_starts_its_next_cool_down_afresh() -> None:
    child, now = running(COOLING), 0.0
    child, now = go_fatal(child, now, COOLING)
    child, now = go_fatal(decide(COOLING, child, Tick(), now + 600)[0], now + 600, COOLING)
    assert child.fatal_count == 2
    now = child.next_start_at or 0.0
    child, _ = decide(COOLING, child, Tick(), now)
    child, _ = decide(COOLING, child, Healthy(), now + 1)
    child, _ = decide(COOLING, child, Healthy(), now + 1 + COOLING.backoff_max_s)
    assert child.fatal_count == 0
    child, now = go_fatal(child, now + 100, COOLING)
    assert child.next_start_at == now + COOLING.fatal_cooldown_s


def test_stopping_the_supervisor_cancels_a_fatal_childs_cool_down() -> None:
    child, now = go_fatal(running(COOLING), 0.0, COOLING)
    child, action = decide(COOLING, child, StopRequested(), now + 1)
    assert (child.state, action, child.deadline) == (State.EXITED, Action.NOTHING, None)


def test_restarts_spread_wider_than_the_window_never_make_the_child_fatal() -> None:
    policy = SupervisionConfig(
        backoff_initial_s=0.1, backoff_max_s=0.1, max_restarts=2, restart_window_s=60.0
    )
    child, now = running(policy), 0.0
    for _ in range(20):
        child, now = crash_and_restart(child, now + 31.0, policy)
    assert child.state is State.STARTING


def test_a_fatal_child_stays_down_until_started_deliberately_when_asked_to() -> None:
    policy = SupervisionConfig(max_restarts=1, restart_window_s=60.0, fatal_forever=True)
    child, now = running(policy), 0.0
    child, now = crash_and_restart(child, now, policy)
    child, action = decide(policy, child, Exited(1), now)
    assert action is Action.GIVE_UP
    assert child.deadline is None
    for event in (Tick(), Exited(1), Healthy(), Hung()):
        assert decide(policy, child, event, now + 10**9) == (child, Action.NOTHING)
    child, action = decide(policy, child, Start(), now + 1000)
    assert (child.state, action) == (State.STARTING, Action.START)
    assert child.restarts == ()
    assert child.consecutive_failures == 0


def test_a_hung_child_is_killed_and_its_exit_restarts_it() -> None:
    child, action = decide(POLICY, running(), Hung(), 30.0)
    assert action is Action.KILL
    child, action = decide(POLICY, child, Exited(-9), 30.1)
    assert (child.state, action) == (State.BACKOFF, Action.NOTHING)


def test_a_stop_request_asks_the_child_to_stop_and_its_exit_is_not_restarted() -> None:
    child, action = decide(POLICY, running(), StopRequested(), 10.0)
    assert (child.state, action) == (State.STOPPING, Action.STOP)
    assert child.deadline == 20.0
    child, action = decide(POLICY, child, Exited(0), 11.0)
    assert (child.state, action) == (State.EXITED, Action.NOTHING)
    assert decide(POLICY, child, Tick(), 100.0) == (child, Action.NOTHING)


def test_a_child_that_outlives_its_grace_period_is_killed_once() -> None:
    child, _ = decide(POLICY, running(), StopRequested(), 10.0)
    assert decide(POLICY, child, Tick(), 19.0) == (child, Action.NOTHING)
    child, action = decide(POLICY, child, Tick(), 20.0)
    assert action is Action.KILL
    assert decide(POLICY, child, Tick(), 21.0)[1] is Action.NOTHING
    child, action = decide(POLICY, child, Exited(-9), 21.0)
    assert (child.state, action) == (State.EXITED, Action.NOTHING)


def test_a_stop_request_during_backoff_cancels_the_restart() -> None:
    child, _ = decide(POLICY, running(), Exited(1), 1.0)
    child, action = decide(POLICY, child, StopRequested(), 1.1)
    assert (child.state, action) == (State.EXITED, Action.NOTHING)
    assert decide(POLICY, child, Tick(), 100.0)[1] is Action.NOTHING


# --- properties over arbitrary event sequences --------------------------------------------

EVENTS = st.sampled_from(
    [Start(), Healthy(), Exited(1), Exited(-9), Hung(), StopRequested(), Tick()]
)
POLICIES = st.builds(
    SupervisionConfig,
    backoff_initial_s=st.floats(min_value=0.01, max_value=10.0),
    backoff_max_s=st.floats(min_value=0.01, max_value=100.0),
    max_restarts=st.integers(min_value=1, max_value=6),
    restart_window_s=st.floats(min_value=1.0, max_value=500.0),
    grace_s=st.floats(min_value=0.1, max_value=30.0),
    fatal_cooldown_s=st.floats(min_value=0.1, max_value=200.0),
    fatal_cooldown_max_s=st.floats(min_value=0.1, max_value=400.0),
    fatal_forever=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    policy=POLICIES,
    steps=st.lists(
        st.tuples(EVENTS, st.floats(min_value=0.0, max_value=50.0)), min_size=1, max_size=80
    ),
)
def test_any_event_sequence_keeps_the_policy_sound(
    policy: SupervisionConfig, steps: list[tuple[Event, float]]
) -> None:
    child, now = ChildState(), 0.0
    crash_times: list[float] = []  # our own model of restart intensity
    for event, gap in steps:
        now += gap
        before = child
        child, action = decide(policy, before, event, now)

        # Always a valid state, with the deadline it needs.
        assert isinstance(child.state, State)
        assert child.consecutive_failures >= 0
        pending = child.state is State.BACKOFF or (
            child.state is State.FATAL and not policy.fatal_forever
        )
        assert pending == (child.next_start_at is not None)
        assert 0.0 <= child.backoff_s <= policy.backoff_max_s
        if child.state is State.BACKOFF and before.state is not State.BACKOFF:
            assert child.next_start_at == now + child.backoff_s

        crashed = before.state in (State.STARTING, State.RUNNING) and isinstance(event, Exited)
        if isinstance(event, Start) and before.state in (State.EXITED, State.FATAL):
            crash_times = []
        if isinstance(event, Tick) and before.state is State.FATAL and action is Action.START:
            # The cool-down is over: due, and a fresh window.
            assert before.next_start_at is not None and now >= before.next_start_at
            crash_times = []
        if child.state is State.FATAL and before.state is not State.FATAL:
            cooldown = child.deadline
            assert cooldown is None or 0 < cooldown - now <= policy.fatal_cooldown_max_s
        if crashed:
            crash_times.append(now)
            # Backoff never decreases within a streak.
            if child.consecutive_failures > 1:
                assert child.state is State.FATAL or child.backoff_s >= before.backoff_s

        # FATAL exactly when the restart limit really was exceeded.
        in_window = [t for t in crash_times if now - policy.restart_window_s < t <= now]
        if child.state is State.FATAL and before.state is not State.FATAL:
            assert crashed
            assert len(in_window) > policy.max_restarts
            assert action is Action.GIVE_UP
        if crashed and child.state is not State.FATAL:
            assert len(in_window) <= policy.max_restarts

        # Only a stopping child's exit ends without a restart or a give-up.
        if before.state is State.STOPPING and isinstance(event, Exited):
            assert child.state is State.EXITED
        if action is Action.START:
            assert child.state is State.STARTING
