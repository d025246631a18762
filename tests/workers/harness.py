"""One way to run a worker body in a test: on a thread, with a real Mailbox on real pipes.

A worker process's body is a function of its `Mailbox`; `worker_on_pipes` runs one on a
thread of the test process, so the test talks to it exactly as the supervisor does
(messages in, messages and heartbeats out, `Stop` to end), and sees its logs and state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import NamedTuple

from shared.messages import Stop
from workers.mailbox import Mailbox


class RunningWorker(NamedTuple):
    inbox: Connection  #: the test sends the worker's messages here
    outbox: Connection  #: and receives what the worker sends here
    thread: threading.Thread  #: the body's thread (alive until it returns)


@contextmanager
def worker_on_pipes(
    name: str, body: Callable[[Mailbox], None], heartbeat_s: float = 0.2
) -> Iterator[RunningWorker]:
    """``body(mailbox)`` on a thread; at the end ``Stop`` is sent and the thread joined."""
    to_worker, inbox = Pipe(duplex=False)
    outbox, from_worker = Pipe(duplex=False)
    mailbox = Mailbox(name, to_worker, from_worker, heartbeat_s=heartbeat_s)
    thread = threading.Thread(target=body, args=(mailbox,), name=name, daemon=True)
    thread.start()
    try:
        yield RunningWorker(inbox, outbox, thread)
    finally:
        if thread.is_alive():
            inbox.send(Stop())
            thread.join(timeout=10)
        for conn in (to_worker, inbox, outbox, from_worker):
            conn.close()
