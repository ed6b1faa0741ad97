"""Named points of the write protocol where faults are injected.

Tests pass handlers that raise (a failure the protocol must handle) or raise `SimulatedCrash`
(a BaseException, so no handler of the protocol runs: the process "dies" there). Tests that run a
whole process (the crash tests SIGKILL a `dq-pipeline` child at a named point, as a real crash
would) install a process-wide hook in that child before calling the CLI
(`dq_pipeline_tests/failpoint_cli.py`, benchmarks/crash_test.py). Production code never installs
one and reads no fault setting from the environment: with none installed a point costs a counter.
"""

from __future__ import annotations

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


ProcessHook = Callable[[str, int, dict[str, object]], None]  # (point, n-th time this run reached it, info)
_process_hook: ProcessHook | None = None


def install_process_hook(hook: ProcessHook | None) -> ProcessHook | None:
    """For tests only: call `hook` at every point of every run in this process (before the run's own
    handlers), with the point, how many times that run (that `Hooks`) has reached it and the point's
    info. None removes it. Returns the hook it replaces."""
    global _process_hook
    previous, _process_hook = _process_hook, hook
    return previous


class Hooks:
    def __init__(self, handlers: dict[str, Callable[..., None]] | None = None):
        unknown = set(handlers or {}) - set(POINTS)
        if unknown:
            raise ValueError(f"unknown hook point(s): {sorted(unknown)}")
        self._handlers = dict(handlers or {})
        self._reached: Counter[str] = Counter()

    def __call__(self, point: str, **info: object) -> None:
        self._reached[point] += 1
        if _process_hook is not None:
            _process_hook(point, self._reached[point], info)
        handler = self._handlers.get(point)
        if handler is not None:
            handler(**info)


NO_HOOKS = Hooks()
