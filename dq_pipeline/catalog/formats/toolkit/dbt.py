"""What only the dbt formats share: Jinja made readable, tests written as rules, payload values
rendered, and the artifacts' metadata and companion files (manifest.json <-> catalog.json)."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from ...entry import canonical_json

# --- artifacts ------------------------------------------------------------------------------


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


def readable_payload(value: Any, readable: Readable) -> Any:
    """A JSON/YAML value for a payload, its strings made readable (no template text)."""
    if isinstance(value, str):
        return readable.text(value)
    if isinstance(value, list):
        return [readable_payload(v, readable) for v in value]
    if isinstance(value, dict):
        return {str(k): readable_payload(v, readable) for k, v in value.items()}
    if isinstance(value, Decimal):
        return float(value)
    return value


def args_hash(arguments: dict[str, Any]) -> str:
    """A test's arguments as a short digest, for the key of a test that has no name. Not
    `values.short_hash`: that one writes YAML datetimes in ISO form, and the keys already in the
    record were made from `canonical_json`'s spelling."""
    return hashlib.sha256(canonical_json(arguments).encode("utf-8")).hexdigest()[:10]


# --- entry text -----------------------------------------------------------------------------


def meta_text(meta: Any) -> str:
    if not isinstance(meta, dict) or not meta:
        return ""
    return "; ".join(f"{k}: {v if isinstance(v, str) else canonical_json(v)}" for k, v in meta.items())


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
