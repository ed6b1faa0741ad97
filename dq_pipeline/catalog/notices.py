"""Warnings: what a reader tolerated in a file (as the format's own tool does), recorded with file and line.

A reader calls `warn(display, line, reason)` while it parses; `collecting()` gathers the warnings of
one parse (a context variable, so the formats keep their ``parse(path, display)`` signature and
parses in other threads or tasks never mix). Outside `collecting()` a warning is dropped.

Each warning is a `Problem` whose location is ``file:line`` (``file`` alone, or ``file (record
path)``, where no line is known). At most `MAX_WARNINGS` are kept per parse, then one more says how
many were left out, so a million tolerated rows cannot flood the run's output or metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .entry import Problem, short_location

MAX_WARNINGS = 100


class _Warnings:
    def __init__(self, display: str) -> None:
        self.display = display
        self.kept: list[Problem] = []
        self.seen: set[tuple[str, str]] = set()
        self.dropped = 0

    def add(self, problem: Problem) -> None:
        if (problem.location, problem.reason) in self.seen:
            return  # a value read twice is reported once
        self.seen.add((problem.location, problem.reason))
        if len(self.kept) < MAX_WARNINGS:
            self.kept.append(problem)
        else:
            self.dropped += 1

    def result(self) -> list[Problem]:
        if not self.dropped:
            return list(self.kept)
        return [*self.kept, Problem(self.display, f"... and {self.dropped} more warning(s)")]


_current: ContextVar[_Warnings | None] = ContextVar("dq_catalog_warnings", default=None)


def location(display: str, line: int | None = None, path: str | None = None) -> str:
    """``file:line``, else ``file (path)``, else ``file``."""
    if line is not None:
        return f"{display}:{line}"
    if path:
        return f"{display} ({short_location(path)})"
    return display


def warn(display: str, line: int | None, reason: str, path: str | None = None) -> None:
    """Record one tolerated irregularity of the file being parsed (dropped outside `collecting`)."""
    current = _current.get()
    if current is not None:
        current.add(Problem(location(display, line, path), reason))


_LINE = re.compile(r"^line (\d+)(?: \((.*)\))?$", re.S)


def warn_at(display: str, where: str, reason: str) -> None:
    """`warn` for a location written as the readers write problems: ``line 12 (models[0])`` or a record path."""
    found = _LINE.match(where)
    if found:
        reason = f"{reason} ({short_location(found.group(2))})" if found.group(2) else reason
        warn(display, int(found.group(1)), reason)
    else:
        warn(display, None, reason, where)


def tolerated(where: str, reason: str) -> None:
    """`warn_at` for the file being parsed (the one `collecting` was given): for shared helpers that
    see a record path but not the file."""
    current = _current.get()
    if current is not None:
        warn_at(current.display, where, reason)


@contextmanager
def collecting(display: str = "") -> Iterator[list[Problem]]:
    """Collect the warnings raised inside the block (parsing the file `display`); the list is filled
    when the block ends."""
    found: list[Problem] = []
    current = _Warnings(display)
    token = _current.set(current)
    try:
        yield found
    finally:
        _current.reset(token)
        found.extend(current.result())
