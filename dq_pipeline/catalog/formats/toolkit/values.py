"""A record's values, checked and cleaned: scalars as text (nulls skipped, YAML dates as ISO text),
lists and objects checked for their type, payload values in plain JSON types.

A value of the wrong type raises `Bad`, which the format collects with the file's other problems,
so the file is refused whole naming every record (I6).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any

from ...entry import canonical_json
from ...notices import tolerated
from .paths import at


class Bad(Exception):
    """One record cannot become an entry: where, and why (collected with the file's other problems)."""

    def __init__(self, location: str, reason: str):
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


def type_name(value: Any) -> str:
    """A JSON or YAML value's type as a message says it: `an object`, `a list`, `null`..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


def scalar_text(value: Any, where: str, what: str = "text") -> str | None:
    """A scalar as stripped text; null and blank are None; an object or list is refused."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise Bad(where, f"expected {what}, found {type_name(value)}")


def text_only(value: Any, where: str, what: str = "text") -> str | None:
    """`scalar_text` for a field its schema types as a string (a title, a description): a number or
    a boolean is refused, not turned into text."""
    if value is not None and not isinstance(value, str):
        raise Bad(where, f"expected {what}, found {type_name(value)}")
    return scalar_text(value, where, what)


def text_list(value: Any, where: str) -> list[str]:
    """A list of texts: null is empty, one text is a list of one, blank items are skipped, null items
    are skipped with a warning (no schema of these formats allows them)."""
    if value is None:
        return []
    if not isinstance(value, list):
        single = scalar_text(value, where, "text or a list of texts")
        return [single] if single else []
    found = []
    for i, item in enumerate(value):
        if item is None:
            tolerated(at(where, i), "null list item skipped")
            continue
        text = scalar_text(item, at(where, i))
        if text:
            found.append(text)
    return found


def mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    """An object, or {} for null; anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Bad(where, f"{what} must be an object, found {type_name(value)}")
    return value


def items(value: Any, where: str, what: str, *, required: bool = False) -> list[Any]:
    """A list, or [] for null unless `required`; anything else is refused."""
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise Bad(where, f"{what} must be a list, found {type_name(value)}")
    return value


def jsonable(value: Any) -> Any:
    """A payload value in plain JSON types (YAML dates become ISO text, keys become text)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def short_hash(value: Any, size: int = 8) -> str:
    """A short digest of a value's content, for keys of records that have no name of their own."""
    return hashlib.sha256(canonical_json(jsonable(value)).encode("utf-8")).hexdigest()[:size]
