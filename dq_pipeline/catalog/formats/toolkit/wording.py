"""Entries and constraints in words: the embedded text is what a searcher reads and what a model
embeds, so bounds, value lists and extra facts are written as sentences, not as JSON."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ...builder import describe
from ...entry import canonical_json
from .values import jsonable

LIST_LIMIT = 25


def show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return listing(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (int, float, Decimal)):
        return json.dumps(value) if not isinstance(value, Decimal) else str(value)
    return canonical_json(jsonable(value))


def listing(values: Iterable[Any], limit: int = LIST_LIMIT) -> str:
    values = list(values)
    shown = ", ".join(show(v) for v in values[:limit])
    more = len(values) - limit
    return shown + (f", … ({more} more)" if more > 0 else "")


def bounds(low: Any, high: Any, *, strict_low: bool = False, strict_high: bool = False) -> str:
    """'between 1 and 5', 'at least 0', 'less than 3', 'exactly 10' or 'unbounded (no limits set)'."""
    if low is None and high is None:
        return "unbounded (no limits set)"
    if low is not None and high is not None:
        if low == high and not (strict_low or strict_high):
            return f"exactly {show(low)}"
        text = f"between {show(low)} and {show(high)}"
        if strict_low or strict_high:
            text += (
                " ("
                + ", ".join(
                    f"{which} excluded"
                    for which, strict in (("lower bound", strict_low), ("upper bound", strict_high))
                    if strict
                )
                + ")"
            )
        return text
    if low is not None:
        return f"{'greater than' if strict_low else 'at least'} {show(low)}"
    return f"{'less than' if strict_high else 'at most'} {show(high)}"


def compose_text(kind: str, name: str, fields: dict[str, Any], sentences: Iterable[str] = ()) -> str:
    """`builder.describe` (kind, name, type, description, tags, rules...) followed by extra sentences."""
    text = describe(kind, name, fields)
    extra = [e.rstrip(". ") for e in sentences if e and e.strip()]
    if not extra:
        return text
    return text.rstrip(".") + ". " + ". ".join(extra) + "."


def labelled(pairs: Iterable[tuple[str, Any]]) -> list[str]:
    """`Label: value` sentences for `compose_text`, leaving out the labels whose value is empty."""
    return [f"{label}: {value}" for label, value in pairs if value not in (None, "", [], {})]


def join_text(*parts: str | None) -> str | None:
    """Title and description as one text ('FIFA code. Codes assigned by ...'), skipping blanks and repeats."""
    kept: list[str] = []
    for part in parts:
        if part and part not in kept:
            kept.append(part.rstrip())
    return ". ".join(p.rstrip(". ") if i < len(kept) - 1 else p for i, p in enumerate(kept)) or None
