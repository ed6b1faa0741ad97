"""Shared by the dbt formats: streaming JSON sections, readable Jinja, test wording, entry text.

JSON artifacts (manifest.json, catalog.json) are read in ONE streaming pass with ijson (C backend):
memory stays bounded by the largest single node instead of the whole document (streaming a 103 MB
manifest peaks at 21 MB RSS where `json.loads` peaks at 432 MB), and every object of the document is
still checked for duplicate keys (refused: RFC 8259 leaves them undefined and dbt never writes
them), and nesting deeper than `source.MAX_NESTING` is refused at the line it happens, so a file
is accepted or refused whole. Only when ijson reports
an error is the file decoded again, to name the exact line with the same wording as
`records.load_json` (invalid bytes and NUL through `source.read_text`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import ijson
from ijson.common import ObjectBuilder

from ..builder import describe
from ..entry import CatalogError, canonical_json
from ..source import MAX_NESTING, json_too_deep, read_text

BOM = b"\xef\xbb\xbf"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- locations --------------------------------------------------------------------------------


def member(base: str, key: str | int) -> str:
    """`base["key"]` for a key chosen by the data (ids, names); `base[3]` for an index."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}[{json.dumps(key, ensure_ascii=False)}]"


def json_path(parts: Iterable[str | int]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, str) and _IDENTIFIER.match(part):
            path = f"{path}.{part}" if path else part
        else:
            path = member(path, part)
    return path or "document"


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


# --- streaming JSON ---------------------------------------------------------------------------


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


def schema_version(metadata: dict[str, Any]) -> str:
    value = metadata.get("dbt_schema_version")
    return value if isinstance(value, str) else ""


def sibling(path: Path, display: str, word: str, other: str) -> tuple[Path, str] | None:
    """The file next to `path` whose name has the last `word` replaced by `other` (catalog.json <-> manifest.json)."""
    name = path.name
    at = name.lower().rfind(word)
    if at < 0:
        return None
    other_name = name[:at] + other + name[at + len(word) :]
    return path.with_name(other_name), str(PurePosixPath(display).with_name(other_name))


# --- Jinja made readable ----------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.S)
_STRING = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""")
_LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
_SPACES = re.compile(r"[ \t]{2,}")


def _literals(args: str) -> list[str]:
    return [m.group(1) if m.group(1) is not None else m.group(2) for m in _STRING.finditer(args)]


def words(name: str) -> str:
    return " ".join(name.replace("_", " ").split())


class Readable:
    """Turns dbt Jinja into text: ``{{ doc('x') }}`` becomes the doc block (or "x" in words),
    ``{{ var('n', 'd') }}`` its default, ``ref``/``source`` the relation name; statements and comments go."""

    MAX_DEPTH = 5

    def __init__(self, docs: dict[tuple[str, str], str] | None = None, root_package: str | None = None):
        self.docs = docs or {}
        self.root_package = root_package
        self._by_name: dict[str, str] = {}
        for (_package, name), text in self.docs.items():
            self._by_name.setdefault(name, text)

    def doc(self, args: list[str], package: str | None) -> str:
        if len(args) >= 2:
            found = self.docs.get((args[0], args[1]))
            return found if found is not None else words(args[1])
        if not args:
            return ""
        name = args[0]
        for candidate in (package, self.root_package):
            if candidate and (candidate, name) in self.docs:
                return self.docs[(candidate, name)]
        return self._by_name.get(name, words(name))

    def _expression(self, inner: str, package: str | None, depth: int) -> str:
        call = _CALL.match(inner)
        if call is None:
            return inner.strip()
        func, args = call.group(1), _literals(call.group(2))
        if func == "doc":
            return self.text(self.doc(args, package), package, depth + 1)
        if func == "var":
            return args[1] if len(args) >= 2 else (args[0] if args else "")
        if func in ("ref", "source"):
            return ".".join(args)
        if func == "env_var":
            return args[1] if len(args) >= 2 else words(args[0]) if args else ""
        return inner.strip()

    def text(self, value: Any, package: str | None = None, depth: int = 0) -> str:
        if value is None:
            return ""
        text = value if isinstance(value, str) else str(value)
        if "{" not in text:
            return text.strip()
        if depth >= self.MAX_DEPTH:
            rendered = _TEMPLATE.sub(" ", text)
        else:
            rendered = _TEMPLATE.sub(
                lambda m: self._expression(m.group(1), package, depth) if m.group(1) is not None else "", text
            )
        rendered = _LEFTOVER.sub("", rendered)
        return "\n".join(_SPACES.sub(" ", line).rstrip() for line in rendered.split("\n")).strip()


def has_template(value: Any) -> bool:
    return isinstance(value, str) and bool(_LEFTOVER.search(value))


# --- tests in words ---------------------------------------------------------------------------

# Test arguments that are not what the test checks: bookkeeping, or Jinja dbt adds itself.
NOT_ARGUMENTS = frozenset(
    {"model", "column_name", "config", "severity", "name", "test_name", "description", "meta", "tags"}
)


def argument_text(value: Any, readable: Readable) -> str:
    if isinstance(value, str):
        return readable.text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(argument_text(v, readable) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {argument_text(v, readable)}" for k, v in value.items())
    if value is None:
        return "null"
    return str(value)


def rule_text(test: str, arguments: dict[str, Any], readable: Readable) -> str:
    """One test as a rule: ``unique``, ``accepted_values (values: [new, returning])``."""
    shown = {k: v for k, v in arguments.items() if k not in NOT_ARGUMENTS}
    if not shown:
        return test
    return f"{test} ({', '.join(f'{k}: {argument_text(v, readable)}' for k, v in shown.items())})"


def plain(value: Any, readable: Readable) -> Any:
    """A JSON/YAML value for a payload, its strings made readable (no template text)."""
    if isinstance(value, str):
        return readable.text(value)
    if isinstance(value, list):
        return [plain(v, readable) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, readable) for k, v in value.items()}
    if isinstance(value, Decimal):
        return float(value)
    return value


def args_hash(arguments: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(canonical_json(arguments).encode("utf-8")).hexdigest()[:10]


# --- entry text -------------------------------------------------------------------------------


def meta_text(meta: Any) -> str:
    if not isinstance(meta, dict) or not meta:
        return ""
    return "; ".join(f"{k}: {v if isinstance(v, str) else canonical_json(v)}" for k, v in meta.items())


def compose(kind: str, title: str, fields: dict[str, Any], extras: Iterable[tuple[str, Any]] = ()) -> str:
    """`describe()` (kind, title, type, description, tags, rules, severity...) followed by `Label: value` sentences."""
    text = describe(kind, title, fields)
    more = [f"{label}: {value}" for label, value in extras if value not in (None, "", [], {})]
    if not more:
        return text
    return text[:-1] + ". " + ". ".join(m.rstrip(". ") for m in more) + "."


def tag_list(*values: Any) -> list[str]:
    """Tags from several places (a string or a list each), in order, without repeats."""
    tags: list[str] = []
    for value in values:
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for tag in items:
            if (
                isinstance(tag, (str, int, float))
                and not isinstance(tag, bool)
                and str(tag).strip()
                and str(tag) not in tags
            ):
                tags.append(str(tag).strip())
    return tags


# --- detection --------------------------------------------------------------------------------

_ARTIFACT = re.compile(r'"dbt_schema_version"\s*:\s*"[^"]*/(manifest|catalog)/v\d+\.json"')


def artifact_kind(head: str) -> str | None:
    """`manifest` or `catalog` for the head of a dbt JSON artifact (its metadata comes first), else None."""
    found = _ARTIFACT.search(head)
    return found.group(1) if found else None


def read_head(path: Path, size: int = 65536) -> str:
    with path.open("rb") as handle:
        return handle.read(size).decode("utf-8-sig", errors="replace")
