"""Shared by the open-standard formats (frictionless, dcat, openmetadata, datahub, great_expectations).

HTML reduced to text, scalar values cleaned (nulls skipped, YAML dates as ISO text), record paths for
error messages, a structural sniff of a JSON file's head for detection, and the wording of bounds and
value lists used to describe constraints, tests and expectations in words.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import ijson

from ..builder import describe
from ..entry import CatalogError, canonical_json
from ..notices import tolerated
from ..source import nesting_offset, read_text
from .records import load_json, load_yaml

YAML_SUFFIXES = (".yaml", ".yml")
_IDENTIFIER = re.compile(r"^[A-Za-z_$@][A-Za-z0-9_$@:-]*$")


class Bad(Exception):
    """One record cannot become an entry: where, and why (collected with the file's other problems)."""

    def __init__(self, location: str, reason: str):
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


# --- paths and documents ----------------------------------------------------------------------


def at(base: str, key: str | int) -> str:
    """`base[3]` for an index, `base.key` for a plain key, `base["odd key"]` otherwise."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{base}.{key}" if base else key
    return f"{base}[{json.dumps(key, ensure_ascii=False)}]"


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


@dataclass
class Document:
    """A parsed JSON or YAML document; `where` prefixes a record path with its YAML line when known."""

    value: Any
    lines: dict[int, int] = field(default_factory=dict)

    def where(self, obj: Any, path: str) -> str:
        line = self.lines.get(id(obj))
        return f"line {line} ({path})" if line else (path or "document")


def load_document(path: Path, display: str, *, duplicates: str = "refuse", tool: str = "the format's reader") -> Document:
    """JSON (or YAML for .yaml/.yml), refusing truncation and invalid text with their line.

    `duplicates`: "refuse" a key repeated in one object or mapping, or "warn" and keep the last value
    (for formats whose own tool does that, named by `tool`), with a warning naming the line and the key.
    """
    text = read_text(path, display)
    if not text.strip():
        raise CatalogError.single(display, "document", "empty file")
    if path.suffix.lower() in YAML_SUFFIXES:
        value, lines = load_yaml(text, display, duplicates=duplicates)
        return Document(value, lines)
    return Document(load_json(text, display, duplicates=duplicates, tool=tool))


# --- values -----------------------------------------------------------------------------------


def plain(value: Any, where: str, what: str = "text") -> str | None:
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


def text_list(value: Any, where: str) -> list[str]:
    """A list of texts: null is empty, one text is a list of one, blank items are skipped, null items
    are skipped with a warning (no schema of these formats allows them)."""
    if value is None:
        return []
    if not isinstance(value, list):
        single = plain(value, where, "text or a list of texts")
        return [single] if single else []
    found = []
    for i, item in enumerate(value):
        if item is None:
            tolerated(at(where, i), "null list item skipped")
            continue
        text = plain(item, at(where, i))
        if text:
            found.append(text)
    return found


def text_only(value: Any, where: str, what: str = "text") -> str | None:
    """`plain` for a field its schema types as a string (a title, a description): a number or a
    boolean is refused, not turned into text."""
    if value is not None and not isinstance(value, str):
        raise Bad(where, f"expected {what}, found {type_name(value)}")
    return plain(value, where, what)


def mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Bad(where, f"{what} must be an object, found {type_name(value)}")
    return value


def items(value: Any, where: str, what: str, *, required: bool = False) -> list[Any]:
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
    return hashlib.sha256(canonical_json(jsonable(value)).encode("utf-8")).hexdigest()[:size]


def collapse(text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(text.split()) or None


# --- HTML -------------------------------------------------------------------------------------

_HTML_TAGS = frozenset(
    """a abbr acronym address article aside b bdi bdo big blockquote body br caption center cite code col
    colgroup dd del details dfn div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 head header hr
    html i img ins kbd label li main mark nav ol p pre q s samp section small span strike strong sub summary
    sup table tbody td tfoot th thead title tr tt u ul var wbr""".split()
)
_DROPPED = frozenset({"script", "style"})
_LOOKS_LIKE_HTML = re.compile(
    r"</?([A-Za-z][A-Za-z0-9]*)\b[^<>]*>|&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);"
)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.dropping = 0

    def _tag(self, tag: str, raw: str | None) -> None:
        if tag in _HTML_TAGS:
            self.parts.append(" ")  # tags separate words; whitespace is collapsed afterwards
        elif raw and not self.dropping:
            self.parts.append(raw)  # `<column_name>` in prose is text, not markup

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            self.dropping += 1
            return
        self._tag(tag, self.get_starttag_text())

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, self.get_starttag_text())

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED:
            self.dropping = max(0, self.dropping - 1)
            return
        self._tag(tag, f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.parts.append(data)


def html_to_text(text: str | None) -> str | None:
    """Tags stripped (unknown `<words>` kept as text), entities unescaped, whitespace collapsed."""
    if text is None:
        return None
    if not _LOOKS_LIKE_HTML.search(text):
        return collapse(text)
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return collapse("".join(parser.parts))


# --- detection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outline:
    """What a JSON head shows of the document's structure: the root type and each object's keys.

    Prefixes are ijson's: "" is the root, "dataset.item" any item of the root's `dataset` list.
    """

    root: str | None
    keys: frozenset[tuple[str, str]]

    def has(self, prefix: str, *names: str) -> bool:
        return any((prefix, name) in self.keys for name in names)


@lru_cache(maxsize=16)
def outline(head: str) -> Outline:
    """Parse as much of the head as is valid JSON (it is usually cut short) and note the keys seen.

    Only the head up to where it nests deeper than `MAX_NESTING` is sniffed: ijson's prefixes grow
    with the depth, so a 64 KB run of `[` would otherwise cost memory in the square of the depth
    (~10 GB). The parser then refuses such a file by name.
    """
    stripped = head.lstrip()
    if not stripped.startswith(("{", "[")):
        return Outline(None, frozenset())
    root = "object" if stripped.startswith("{") else "array"
    too_deep = nesting_offset(stripped)
    if too_deep is not None:
        stripped = stripped[:too_deep]
    keys: set[tuple[str, str]] = set()
    try:
        for prefix, event, value in ijson.parse(io.BytesIO(stripped.encode("utf-8"))):
            if event == "map_key":
                keys.add((prefix, value))
    except (ijson.JSONError, ValueError, UnicodeError):
        pass  # the head ends mid-document, or the file is broken: what was seen still counts
    return Outline(root, frozenset(keys))


_YAML_TOP_KEY = re.compile(
    r"""^(?:"([^"\n]+)"|'([^'\n]+)'|([^\s#'"\-?:{}\[\],][^:\n]*?))[ \t]*:(?:[ \t]|$)""", re.M
)


def yaml_top_keys(head: str) -> set[str]:
    """Keys written at the start of a line in a YAML head (the document's top-level keys)."""
    return {(a or b or c).strip() for a, b, c in _YAML_TOP_KEY.findall(head.replace("\r\n", "\n"))}


# --- wording ----------------------------------------------------------------------------------

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


def compose(kind: str, name: str, fields: dict[str, Any], extras: Iterable[str] = ()) -> str:
    """`builder.describe` (kind, name, type, description, tags, rules...) followed by extra sentences."""
    text = describe(kind, name, fields)
    extra = [e.rstrip(". ") for e in extras if e and e.strip()]
    if not extra:
        return text
    return text.rstrip(".") + ". " + ". ".join(extra) + "."


def join_text(*parts: str | None) -> str | None:
    """Title and description as one text ('FIFA code. Codes assigned by ...'), skipping blanks and repeats."""
    kept: list[str] = []
    for part in parts:
        if part and part not in kept:
            kept.append(part.rstrip())
    return ". ".join(p.rstrip(". ") if i < len(kept) - 1 else p for i, p in enumerate(kept)) or None
