"""Where each message from a worker goes.

Every channel has one writer and one reader, so workers never talk to each other
directly: the supervisor reads every outbox and forwards. This module holds that routing
and the bookkeeping that makes it lossless:

* Batches from pollers (and daily energy from the daily worker) go to every consumer:
  each sink, and the daily worker. Each consumer has its own numbered queue of batches
  sent but not yet acknowledged (`Delivered`, sent after the consumer committed them to
  disk); a consumer that restarts gets all of them again, in order. One slow or dead
  consumer only grows its own queue, bounded by ``max_pending`` (oldest dropped, counted).
* With a `supervisor.journal.Journal`, every batch is written to disk before it is
  forwarded and marked done when the last consumer holding it has acknowledged it (or
  dropped it), so a SIGKILLed supervisor loses nothing it had received: `recover` hands
  the next supervisor's consumers whatever was outstanding.
* Tokens go from the token worker to the pollers of the gateway with that serial; the
  last token per serial is kept for pollers that restart.
* A poller's `TokenRejected` goes to the token worker serving that gateway, and so does
  `GatewayIdentified` (it may not know the serial from the config).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from shared.messages import (
    Batch,
    DailyEnergyBatch,
    Deliver,
    Delivered,
    GatewayIdentified,
    InverterBatch,
    PowerBatch,
    TokenIssued,
    TokenRejected,
)
from supervisor.journal import Journal

# Lazy: binding here would freeze the logging config of import time.
log = structlog.get_logger(worker="supervisor")

Send = Callable[[str, object], None]  #: send(worker name, message)


@dataclass
class Consumer:
    """The unacknowledged batches of one consumer worker."""

    name: str
    takes: tuple[type, ...]  #: batch types it wants
    pending: OrderedDict[int, Batch] = field(default_factory=OrderedDict)
    journal_ids: dict[int, int] = field(default_factory=dict)  #: seq -> journal id
    next_seq: int = 1
    dropped: int = 0  #: batches dropped because pending was full


@dataclass(frozen=True, slots=True)
class Routes:
    """The static wiring, from the plan."""

    sinks: tuple[str, ...]  #: sink worker names
    daily: str | None  #: the daily-energy worker, if any
    pollers: dict[str, tuple[str, ...]]  #: gateway name -> its poller worker names
    token_worker: dict[str, str]  #: gateway name -> token worker serving it
    serials: dict[str, str]  #: gateway name -> serial, where the config gives it
    exporters: tuple[str, ...] = ()  #: sinks that also get `SelfMetrics` (Prometheus, MQTT)


class Router:
    def __init__(
        self,
        routes: Routes,
        send: Send,
        max_pending: int = 100_000,
        journal: Journal | None = None,
    ) -> None:
        self._routes = routes
        self._send = send
        self._max_pending = max_pending
        self._journal = journal
        self._holders: dict[int, int] = {}  # journal id -> consumers still holding it
        self.consumers: dict[str, Consumer] = {}
        for sink in routes.sinks:
            self.consumers[sink] = Consumer(sink, (PowerBatch, InverterBatch, DailyEnergyBatch))
        if routes.daily:
            self.consumers[routes.daily] = Consumer(routes.daily, (PowerBatch, InverterBatch))
        self.serials = dict(routes.serials)
        self._tokens: dict[str, TokenIssued] = {}  # serial -> latest token
        self.token_expiry: dict[str, int] = {}  # gateway name -> exp of its token, epoch s

    def route(self, source: str, message: object) -> bool:
        """Forward one message from worker ``source``; False if it is not routable."""
        match message:
            case PowerBatch() | InverterBatch() | DailyEnergyBatch():
                self._fan_out(message)
            case Delivered(seq=seq):
                self._acknowledged(source, seq)
            case TokenIssued(serial=serial):
                self._tokens[serial] = message
                for gateway in self._gateways_with_serial(serial):
                    self.token_expiry[gateway] = message.expires_s
                    for poller in self._routes.pollers.get(gateway, ()):
                        self._send(poller, message)
            case TokenRejected(envoy=envoy):
                self._to_token_worker(envoy, message)
            case GatewayIdentified(envoy=envoy, info=info):
                self.serials[envoy] = info.serial
                self._to_token_worker(envoy, message)
                token = self._tokens.get(info.serial)
                if token is not None:
                    self._send(source, token)
            case _:
                return False
        return True

    def started(self, name: str) -> None:
        """A worker (re)started with empty channels: give it what it must not miss."""
        consumer = self.consumers.get(name)
        if consumer is not None:
            for seq, batch in consumer.pending.items():
                self._send(name, Deliver(seq, batch))
        for gateway, pollers in self._routes.pollers.items():
            serial = self.serials.get(gateway)
            if name in pollers and serial in self._tokens:
                self._send(name, self._tokens[serial])

    def recover(self) -> int:
        """Queue what a previous supervisor's journal holds for every consumer; a count.

        Call before any worker starts: `started` then delivers them.
        """
        if self._journal is None:
            return 0
        recovered = self._journal.recover()
        for ident, batch in recovered:
            self._fan_out(batch, ident, send=False)
        return len(recovered)

    def to_exporters(self, message: object) -> None:
        for name in self._routes.exporters:
            self._send(name, message)

    def pending(self) -> dict[str, int]:
        """Unacknowledged batches per consumer (for status and shutdown)."""
        return {name: len(c.pending) for name, c in self.consumers.items()}

    def _fan_out(self, batch: Batch, ident: int | None = None, send: bool = True) -> None:
        takers = [c for c in self.consumers.values() if isinstance(batch, c.takes)]
        if self._journal is not None and takers:
            if ident is None:
                ident = self._journal.add(batch)
            self._holders[ident] = len(takers)
        elif self._journal is not None and ident is not None:
            self._journal.done(ident)  # recovered, but nobody takes it any more
        for consumer in takers:
            seq = consumer.next_seq
            consumer.next_seq += 1
            consumer.pending[seq] = batch
            if ident is not None:
                consumer.journal_ids[seq] = ident
            if len(consumer.pending) > self._max_pending:
                self._release(consumer, *consumer.pending.popitem(last=False))
                consumer.dropped += 1
                if consumer.dropped == 1 or consumer.dropped % 1000 == 0:
                    log.warning(
                        "consumer far behind: dropping its oldest batches",
                        consumer=consumer.name,
                        dropped=consumer.dropped,
                    )
            if send:
                self._send(consumer.name, Deliver(seq, batch))

    def _acknowledged(self, name: str, seq: int) -> None:
        consumer = self.consumers.get(name)
        if consumer is None:
            return
        pending = consumer.pending
        while pending and next(iter(pending)) <= seq:
            self._release(consumer, *pending.popitem(last=False))

    def _release(self, consumer: Consumer, seq: int, batch: Batch) -> None:
        """``consumer`` no longer holds batch ``seq``: the journal forgets it after the last."""
        ident = consumer.journal_ids.pop(seq, None)
        if ident is None or self._journal is None:
            return
        left = self._holders[ident] - 1
        if left:
            self._holders[ident] = left
        else:
            del self._holders[ident]
            self._journal.done(ident)

    def _to_token_worker(self, envoy: str, message: object) -> None:
        worker = self._routes.token_worker.get(envoy)
        if worker is not None:
            self._send(worker, message)

    def _gateways_with_serial(self, serial: str) -> Iterable[str]:
        return [gateway for gateway, s in self.serials.items() if s == serial]
