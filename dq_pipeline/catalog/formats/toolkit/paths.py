"""Record paths in messages: where in a document a problem is, written as the reader would look it up."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

# The open-standard formats' own keys include `$schema`, `@id` and `dcat:keyword`: shown bare, they
# read as the file spells them.
_RECORD_KEY = re.compile(r"^[A-Za-z_$@][A-Za-z0-9_$@:-]*$")
# dbt's messages keep to keys a Python or Jinja reader would write bare.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def at(base: str, key: str | int) -> str:
    """`base[3]` for an index, `base.key` for a plain key, `base["odd key"]` otherwise."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _RECORD_KEY.match(key):
        return f"{base}.{key}" if base else key
    return f"{base}[{json.dumps(key, ensure_ascii=False)}]"


def member(base: str, key: str | int) -> str:
    """`base["key"]` for a key chosen by the data (ids, names); `base[3]` for an index."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}[{json.dumps(key, ensure_ascii=False)}]"


def json_path(parts: Iterable[str | int]) -> str:
    """The path of a streamed JSON value from its keys and indexes (`document` for the root)."""
    path = ""
    for part in parts:
        if isinstance(part, str) and _IDENTIFIER.match(part):
            path = f"{path}.{part}" if path else part
        else:
            path = member(path, part)
    return path or "document"
