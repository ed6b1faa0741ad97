"""Test-only launcher: the real `dq-pipeline` command, SIGKILLed at a named protocol point.

    python -m dq_pipeline_tests.failpoint_cli <point>[:<n>] -- <dq-pipeline arguments>

installs a process-wide hook (`dq_pipeline.sync.write.hooks.install_process_hook`) that kills this process
with SIGKILL the n-th time (default 1) one run reaches `<point>` (a name of `hooks.POINTS`), as a real
crash would there, then runs `dq_pipeline.cli.main`. `sync` runs its Dagster job in this process
(`execute_in_process`), so the hook reaches every step. The fault is injected here, by the test:
the package reads no fault setting from the environment.
"""

from __future__ import annotations

import os
import signal
import sys

from dq_pipeline.sync.write import hooks


def parse(spec: str) -> tuple[str, int]:
    """`<point>[:<n>]` -> (point, n); an unknown point is an error, not a kill that never comes."""
    point, _, nth = spec.partition(":")
    if point not in hooks.POINTS:
        raise SystemExit(f"failpoint_cli: unknown point {point!r}: one of {', '.join(hooks.POINTS)}")
    return point, int(nth or 1)


def kill_at(point: str, nth: int = 1) -> hooks.ProcessHook:
    """A process hook that SIGKILLs this process the `nth` time a run reaches `point`."""

    def hook(reached: str, count: int, info: dict[str, object]) -> None:
        if reached == point and count == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[1] != "--":
        raise SystemExit("usage: python -m dq_pipeline_tests.failpoint_cli <point>[:<n>] -- <dq-pipeline arguments>")
    hooks.install_process_hook(kill_at(*parse(args[0])))
    from dq_pipeline.cli import main as cli_main

    sys.argv = ["dq-pipeline", *args[2:]]
    cli_main()


if __name__ == "__main__":
    main()
