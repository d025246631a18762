"""The token worker: the process that serves the gateway tokens of one Enlighten account.

Reads from the inbox: `TokenRejected` (a poller got 401/403), `GatewayIdentified` (a
poller learned its gateway's serial from /info), `Stop`. Writes to the outbox:
`TokenIssued`, which the supervisor hands to that gateway's pollers.

What to fetch and when is decided by `workers.token_keeper.TokenKeeper`; this module is
the process body around it: it builds the keeper from the `TokenSettings` the supervisor
hands over, sleeps until the keeper's next wake or a message, and runs each keeper call
(a cloud login can take a minute) on a helper thread while it keeps sending heartbeats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from shared.cloud import EnlightenClient
from shared.config import AccountConfig, GatewayConfig
from shared.logs import register_secrets
from shared.messages import GatewayIdentified, Stop, TokenRejected
from workers.mailbox import Mailbox
from workers.token_keeper import IDLE_WAKE_S, Cloud, Step, TokenKeeper

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """What the supervisor hands a token worker."""

    account: AccountConfig | None  #: None: the gateways all have static tokens
    gateways: tuple[GatewayConfig, ...]  #: the gateways this worker serves
    state_dir: Path


def run(
    settings: TokenSettings,
    mailbox: Mailbox,
    cloud_client: Cloud | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """The token worker process: serve tokens until `Stop`."""
    log = structlog.get_logger().bind(worker=mailbox.worker)
    account = settings.account
    if account is not None:
        register_secrets([account.password, account.email])
        if cloud_client is None:
            cloud_client = EnlightenClient(account.cloud)
    keeper = TokenKeeper(
        account, settings.gateways, settings.state_dir, cloud_client, clock, worker=mailbox.worker
    )
    # Cloud calls can take a minute; they run on a helper thread while this one beats.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloud") as pool:

        def call(handler: Callable[..., Step], *args: object) -> None:
            for issued in _beating(pool, mailbox, handler, *args).issued:
                mailbox.send(issued)

        call(keeper.start)
        while True:
            timeout = min(max(keeper.wake_at_s - clock(), 0.0), IDLE_WAKE_S)
            for message in mailbox.receive(timeout=timeout):
                match message:
                    case Stop():
                        return
                    case TokenRejected():
                        call(keeper.on_rejected, message)
                    case GatewayIdentified():
                        call(keeper.on_identified, message)
                    case _:
                        log.warning("unexpected message", type=type(message).__name__)
            if clock() >= keeper.wake_at_s:
                call(keeper.on_timer)


def _beating(pool: ThreadPoolExecutor, mailbox: Mailbox, fn: Callable[..., T], *args: object) -> T:
    """Run ``fn`` on the pool, sending heartbeats while it works."""
    future: Future[T] = pool.submit(fn, *args)
    while True:
        try:
            return future.result(timeout=0.5)
        except FutureTimeout:
            mailbox.beat()
