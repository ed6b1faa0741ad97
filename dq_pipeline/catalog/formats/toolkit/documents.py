"""Documents read whole or streamed, refused with the line of what is wrong.

`load_document` parses a JSON or YAML document whole (the open-standard formats: a document is
their unit). `json_sections` streams the top-level sections of a JSON object (the dbt artifacts):
manifest.json and catalog.json are read in ONE pass with ijson (C backend), so memory stays bounded
by the largest single node instead of the whole document (streaming a 103 MB manifest peaks at
21 MB RSS where `json.loads` peaks at 432 MB). Every object of the document is still checked for
duplicate keys (refused: RFC 8259 leaves them undefined and dbt never writes them), and nesting
deeper than `source.MAX_NESTING` is refused at the line it happens, so a file is accepted or
refused whole. Only when ijson reports an error is the file decoded again, to name the exact line
with the same wording as `records.load_json` (invalid bytes and NUL through `source.read_text`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import ijson
from ijson.common import ObjectBuilder

from ...entry import CatalogError
from ...source import MAX_NESTING, json_too_deep, read_text
from ..records import load_json, load_yaml
from .paths import json_path

YAML_SUFFIXES = (".yaml", ".yml")
BOM = b"\xef\xbb\xbf"


# --- whole documents --------------------------------------------------------------------------


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


# --- streamed JSON sections -------------------------------------------------------------------


def _discard(pairs: list[tuple[str, Any]]) -> None:
    return None


def _json_failure(path: Path, display: str, exc: Exception) -> CatalogError:
    """The precise line of a syntax error (ijson gives no position): decode again, parse without keeping objects."""
    text = read_text(path, display)  # raises itself for NUL bytes and invalid UTF-8, naming the line
    try:
        json.loads(text, object_pairs_hook=_discard)
    except json.JSONDecodeError as err:
        reason = f"invalid JSON: {err.msg} (column {err.colno})"
        if err.pos >= len(text.rstrip()):
            reason = f"truncated JSON: {err.msg}"
        return CatalogError.single(display, f"line {err.lineno}", reason)
    except RecursionError:
        return json_too_deep(display, text)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CatalogError.single(display, "document", f"invalid JSON: {first}")


def _too_deep(path: Path, display: str) -> CatalogError:
    """The nesting refusal with its line: the file is read again as text only on this path."""
    return json_too_deep(display, read_text(path, display))


def json_sections(path: Path, display: str, wanted: Iterable[str]) -> Iterator[tuple[str, str | None, Any]]:
    """Stream a JSON object's top-level sections: ``(section, key, value)`` per member of each wanted
    section that is an object, or ``(section, None, value)`` once for a wanted section that is not.

    The whole document is checked while streaming (syntax, duplicate keys in any object, one
    top-level object); sections not wanted are skipped without being built. Raises CatalogError.
    """
    wanted = set(wanted)
    with path.open("rb") as handle:
        if handle.read(3) != BOM:
            handle.seek(0)
        frames: list[Any] = []  # per open container: the keys seen (object) or [next index] (array)
        where: list[Any] = []  # per open container: the current key or index inside it
        builder: ObjectBuilder | None = None
        built_at = 0
        item: tuple[str, str | None] = ("", None)
        seen_top = False
        try:
            for event, value in ijson.basic_parse(handle):
                if event == "map_key":
                    keys = frames[-1]
                    if value in keys:
                        location = json_path(where[:-1])
                        raise CatalogError.single(display, location, f"duplicate key {value!r} in one object")
                    keys.add(value)
                    where[-1] = value
                    if builder is not None:
                        builder.event(event, value)
                    continue
                if event == "end_map" or event == "end_array":
                    frames.pop()
                    where.pop()
                    if builder is not None:
                        builder.event(event, value)
                        if len(frames) == built_at:
                            yield item[0], item[1], builder.value
                            builder = None
                    continue
                depth = len(frames)
                if depth:
                    top = frames[-1]
                    if type(top) is list:
                        where[-1] = top[0]
                        top[0] += 1
                elif seen_top or event != "start_map":
                    raise CatalogError.single(
                        display, "document", "expected one JSON object at the top level"
                    )
                else:
                    seen_top = True
                if event == "number" and type(value) is Decimal:
                    value = float(value)
                if builder is not None:
                    builder.event(event, value)
                elif (depth == 2 and where[0] in wanted) or (
                    depth == 1 and where[0] in wanted and event != "start_map"
                ):
                    builder = ObjectBuilder()
                    builder.event(event, value)
                    built_at = depth
                    item = (where[0], where[1] if depth == 2 else None)
                    if event != "start_map" and event != "start_array":
                        yield item[0], item[1], builder.value
                        builder = None
                if event == "start_map" or event == "start_array":
                    if depth >= MAX_NESTING:
                        raise _too_deep(path, display)
                    frames.append(set() if event == "start_map" else [0])
                    where.append(None)
        except CatalogError:
            raise
        except (ijson.JSONError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _json_failure(path, display, exc) from None
        if not seen_top:
            raise _json_failure(path, display, ValueError("empty JSON document: expected one JSON object"))
