"""Named points of the write protocol where faults are injected.

Tests pass handlers that raise (a failure the protocol must handle) or raise `SimulatedCrash`
(a BaseException, so no handler of the protocol runs: the process "dies" there). The crash tests
set ``DQ_FAILPOINT=<point>`` (optionally ``<point>:<n>`` for the n-th time it is reached) to make
the process SIGKILL itself at that point, as a real crash would.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable

POINTS = (
    "locked",            # the catalog lock is held, recovery not yet run
    "journal_written",   # the pending journal row is committed; nothing else happened yet
    "qdrant_batch",      # before each Qdrant upsert batch (info: batch=number); no transaction open
    "qdrant_written",    # every new point is acknowledged; the commit transaction not yet begun
    "pg_flushed",        # inside the commit transaction: fence checked, rows applied, uncommitted
    "before_commit",     # inside it still: the journal row says committed, not yet committed
    "committed",         # the transaction committed; retired points still in Qdrant
    "retired",           # retirement done; the journal row is gone
)


class SimulatedCrash(BaseException):
    """The process 'dies' here: nothing in the protocol catches a BaseException."""


class Hooks:
    def __init__(self, handlers: dict[str, Callable[..., None]] | None = None):
        unknown = set(handlers or {}) - set(POINTS)
        if unknown:
            raise ValueError(f"unknown hook point(s): {sorted(unknown)}")
        self._handlers = dict(handlers or {})
        self._reached: Counter[str] = Counter()
        self._failpoint = os.environ.get("DQ_FAILPOINT", "")

    def __call__(self, point: str, **info: object) -> None:
        self._reached[point] += 1
        if self._failpoint:
            name, _, nth = self._failpoint.partition(":")
            if name == point and self._reached[point] == int(nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)
        handler = self._handlers.get(point)
        if handler is not None:
            handler(**info)


NO_HOOKS = Hooks()
