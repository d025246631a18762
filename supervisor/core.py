"""The supervisor's main loop: start every worker, watch it, restart it, stop it.

One event queue feeds the loop: messages and end-of-file from every child's outbox
(`supervisor.child` reads them on per-child threads). For each child the loop keeps a
`ChildState` and carries out what `supervisor.policy.decide` returns; it adds the two
inputs the policy cannot see itself: missed heartbeats (-> `Hung`) and due deadlines
(-> `Tick`). Messages other than heartbeats go to `supervisor.router`.

Shutdown (SIGTERM/SIGINT) runs in stages so nothing in flight is lost: producers
(pollers, token workers) stop first; then the daily worker; the sinks last, once
everything upstream has exited and been forwarded. Whatever has not exited when
``grace_s`` is over is killed. Exit code 0.

Batches the router holds for consumers are journalled (`supervisor.journal`): whatever a
consumer had not acknowledged when this process stopped or was SIGKILLed is handed to the
consumers again by the next supervisor, before anything new.
"""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.context import BaseContext
from types import FrameType

import structlog

from shared.config import SupervisionConfig
from shared.messages import (
    GatewayIdentified,
    Heartbeat,
    PollReport,
    SinkStatus,
    Stop,
    WorkerSpec,
)
from supervisor import policy
from supervisor.child import ChannelClosed, Child, Event
from supervisor.journal import Journal
from supervisor.notify import Notifier
from supervisor.policy import Action, ChildState, State
from supervisor.router import Router, Routes
from supervisor.status import StatusBoard

# Lazy: binding here would freeze the logging config of import time.
log = structlog.get_logger(worker="supervisor")

#: shutdown stages: worker kinds stopped together, in this order
STOP_ORDER = (("power", "inverters", "token"), ("daily",), ("sink",))
LOOP_WAKE_S = 0.25  #: the longest the loop sleeps without checking heartbeats and signals
METRICS_EVERY_S = 2.0  #: how often self-metrics go to the exporters and status is refreshed


@dataclass
class Watched:
    """A child with its policy state and liveness."""

    child: Child
    state: ChildState
    last_beat: float = 0.0


class Supervisor:
    def __init__(
        self,
        specs: Sequence[WorkerSpec],
        routes: Routes,
        supervision: SupervisionConfig,
        ctx: BaseContext,
        status: StatusBoard,
        clock: Callable[[], float] = time.monotonic,
        journal: Journal | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._notifier = notifier or Notifier(None)  # systemd READY/WATCHDOG/STOPPING
        self._events: queue.Queue[Event] = queue.Queue()
        self._policy = supervision
        self._clock = clock
        self._watched = {
            spec.name: Watched(Child(spec, ctx, self._events), ChildState()) for spec in specs
        }
        self.router = Router(routes, self._send, journal=journal)
        self._journal = journal
        self.status = status
        self._stop_signal: int | None = None
        self._stage: int | None = None  # index into STOP_ORDER once shutdown began
        self._grace_deadline = 0.0
        self._next_metrics = 0.0

    # --- public -------------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.router.recover()
        for name in self._watched:
            self._apply(name, policy.Start())
        log.info("supervisor started", workers=len(self._watched))
        while not self._finished():
            self._step()
        self.status.publish(force=True)
        log.info("supervisor stopped", signal=self._stop_signal)
        return 0

    def request_stop(self) -> None:
        self._stop_signal = self._stop_signal or signal.SIGTERM

    def children(self) -> dict[str, Watched]:
        return self._watched

    # --- the loop -------------------------------------------------------------------

    def _step(self) -> None:
        try:
            event: Event | None = self._events.get(timeout=self._wake_in())
        except queue.Empty:
            event = None
        while event is not None:
            self._handle(event)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                event = None
        now = self._clock()
        self._check_heartbeats(now)
        for name, watched in self._watched.items():
            deadline = watched.state.deadline
            if deadline is not None and now >= deadline:
                self._apply(name, policy.Tick())
        self._advance_shutdown(now)
        if now >= self._next_metrics:
            self._next_metrics = now + METRICS_EVERY_S
            for name, count in self.router.pending().items():
                self.status.consumer(name, pending_batches=count)
            self.router.to_exporters(self.status.self_metrics(self.router.token_expiry))
            self.status.token_expiry(self.router.token_expiry)
            if self._journal is not None:
                self.status.journal_error = self._journal.storage.error
        self.status.publish()
        # READY once every worker got past starting (running, or already in backoff);
        # the watchdog ping proves this loop still turns.
        started = all(w.state.state is not State.STARTING for w in self._watched.values())
        self._notifier.step(now, started and self._stage is None)

    def _handle(self, event: Event) -> None:
        watched = self._watched.get(event.name)
        if watched is None or event.generation != watched.child.generation:
            return  # a late word from a process already replaced
        if isinstance(event, ChannelClosed):
            code = watched.child.exit_code(timeout=2.0)
            watched.child.forget()
            self._apply(event.name, policy.Exited(code))
            return
        message = event.message
        if isinstance(message, Heartbeat):
            watched.last_beat = self._clock()
            if watched.state.state is State.STARTING:
                self._apply(event.name, policy.Healthy())
                started_at = watched.state.started_at
                if started_at is not None:
                    log.info(
                        "worker running",
                        name=event.name,
                        start_ms=round((watched.last_beat - started_at) * 1e3, 1),
                    )
            return
        if isinstance(message, PollReport):
            self.status.poll_report(message)
            return
        if isinstance(message, GatewayIdentified):
            self.status.identified(message.envoy, message.info)
        if isinstance(message, SinkStatus):
            self.status.consumer(event.name, **asdict(message))
            return
        if not self.router.route(event.name, message):
            log.warning("unroutable message", source=event.name, type=type(message).__name__)

    def _check_heartbeats(self, now: float) -> None:
        limit = self._policy.hang_timeout_s
        for name, watched in self._watched.items():
            if watched.state.state in (State.STARTING, State.RUNNING, State.STOPPING) and (
                now - watched.last_beat > limit
            ):
                log.error(
                    "worker stopped heartbeating: killing it",
                    name=name,
                    silent_s=round(now - watched.last_beat, 1),
                )
                watched.last_beat = now  # one kill per silence; its exit follows
                self._apply(name, policy.Hung())

    def _apply(self, name: str, event: policy.Event) -> None:
        watched = self._watched[name]
        before = watched.state
        watched.state, action = policy.decide(self._policy, before, event, self._clock())
        child = watched.child
        if action is Action.START:
            if self._stage is not None:  # no restarts once shutdown began
                watched.state = ChildState(state=State.EXITED, restarts_total=before.restarts_total)
                return
            child.start()
            watched.last_beat = self._clock()
            self.router.started(name)
            log.info(
                "worker started", name=name, pid=child.pid, restarts=watched.state.restarts_total
            )
        elif action is Action.STOP:
            child.send(Stop())
        elif action is Action.KILL:
            child.kill()
        elif action is Action.GIVE_UP:
            retry_at = watched.state.next_start_at
            log.critical(
                "worker restarted too often: FATAL, left down; the rest keep running",
                name=name,
                max_restarts=self._policy.max_restarts,
                window_s=self._policy.restart_window_s,
                episode=watched.state.fatal_count,
                retry_in_s=None if retry_at is None else round(retry_at - self._clock()),
            )
        if before.state is not watched.state.state and watched.state.state is State.BACKOFF:
            log.warning(
                "worker exited: restarting after backoff",
                name=name,
                code=watched.state.last_exit_code,
                backoff_s=watched.state.backoff_s,
            )
        self.status.worker(name, child.spec.kind, child.pid, watched.state, self._clock())

    def _send(self, name: str, message: object) -> None:
        watched = self._watched.get(name)
        if watched is not None:
            watched.child.send(message)

    def _wake_in(self) -> float:
        deadlines = [w.state.deadline for w in self._watched.values()]
        due = [d - self._clock() for d in deadlines if d is not None]
        return max(0.0, min([LOOP_WAKE_S, *due]))

    # --- shutdown -------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only set a flag: the loop wakes within LOOP_WAKE_S and does the work.
        self._stop_signal = signum

    def _advance_shutdown(self, now: float) -> None:
        if self._stop_signal is None:
            return
        if self._stage is None:
            log.info("stopping", signal=self._stop_signal, grace_s=self._policy.grace_s)
            self._notifier.stopping()
            self._stage = -1
            self._grace_deadline = now + self._policy.grace_s
        while self._stage < len(STOP_ORDER) and self._stage_done(self._stage):
            self._stage += 1
            if self._stage < len(STOP_ORDER):
                for name, watched in self._watched.items():
                    if watched.child.spec.kind in STOP_ORDER[self._stage]:
                        self._apply(name, policy.StopRequested())
        if now >= self._grace_deadline:
            for watched in self._watched.values():
                watched.child.kill()

    def _stage_done(self, stage: int) -> bool:
        if stage < 0:
            return True
        return all(
            not w.child.is_alive() and w.state.state is not State.STOPPING
            for w in self._watched.values()
            if w.child.spec.kind in STOP_ORDER[stage]
        )

    def _finished(self) -> bool:
        if self._stage is None:
            return False
        everything_dead = all(not w.child.is_alive() for w in self._watched.values())
        return self._stage >= len(STOP_ORDER) or (
            everything_dead and self._clock() >= self._grace_deadline
        )
